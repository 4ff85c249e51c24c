"""``v2gtool isolation-check``: the IEC 61851-23 cable check (insulation test) with its trace.

v2gtool isolation-check                          # sim, 2023 edition
v2gtool isolation-check --edition 2014 --scenario low_iso.toml
v2gtool isolation-check --plot trace.png --json
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from v2gtool.cli.hw_common import HwSession, Interrupts, check_not_stuck, hw_options, open_session, run_seconds
from v2gtool.cli.params import FiniteFloatRange
from v2gtool.errors import ConfigError
from v2gtool.hw.cablecheck import (
    CableCheckReport,
    CableCheckSettings,
    open_contactors,
    opened_on_error,
    run_cable_check,
)
from v2gtool.hw.errors import IsolationFaultError
from v2gtool.hw.isolation import Edition, IsolationVerdict, cable_check_voltage
from v2gtool.hw.sequence import check_diode

#: Exit code of a pass with a warning (2014 edition only).
EXIT_WARNING = 7

EXIT_CODES = """\b
Exit codes:
  0  pass
  1  hardware error
  2  bad option, config or scenario; the backend has no IMD / power module
  3  the interlock refused to close (the message names the rule)
  4  Contactor Stuck
  5  the interlock opened the contactors during the check (CP left C/D, e-stop)
  6  isolation fault, or the check could not be completed (self-test, ramp)
  7  warning: below 500 Ohm/V (2014 edition only)
  130  interrupted (SIGINT or SIGTERM), after the output ramped below 60 V and the contactors opened
"""

INTERRUPT_NOTE = """\b
SIGINT (Ctrl-C) or SIGTERM does not end the check at once: it stops at the next control tick, the
output ramps down below 60 V, the contactors open through the interlock at zero current
(InterlockTripped SESSION_STOP, ContactorsOpening, ContactorsOpened), the partial trace is shown
(failure "interrupted"), then it exits 130 (4 if a contact stuck). An error during the check
ramps down and opens them the same way first, best effort.
"""


def _plot_available() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def _write_plot(report: CableCheckReport, path: Path) -> None:
    # Imported by name: matplotlib is optional and has no stubs where it is missing.
    importlib.import_module("matplotlib").use("Agg")
    plt: Any = importlib.import_module("matplotlib.pyplot")

    t = [s.t - report.started_at for s in report.trace]
    fig, volts_ax = plt.subplots(figsize=(8, 4))
    volts_ax.plot(t, [s.voltage_v for s in report.trace], color="tab:blue")
    volts_ax.set_xlabel("time (s)")
    volts_ax.set_ylabel("output voltage (V)", color="tab:blue")
    ohm_ax = volts_ax.twinx()
    valid = [
        (x, s.resistance_ohm) for x, s in zip(t, report.trace, strict=True) if s.resistance_ohm is not None
    ]
    ohm_ax.semilogy([x for x, _ in valid], [r for _, r in valid], color="tab:red")
    ohm_ax.axhline(report.profile.fault_threshold_ohm, color="tab:red", linestyle="--", label="fault")
    if report.profile.warning_threshold_ohm is not None:
        ohm_ax.axhline(
            report.profile.warning_threshold_ohm, color="tab:orange", linestyle="--", label="warning"
        )
    ohm_ax.set_ylabel("insulation resistance (Ohm)", color="tab:red")
    ohm_ax.legend(loc="lower right")
    fig.suptitle(f"IEC 61851-23:{report.profile.edition.value} cable check, {report.test_voltage_v:.0f} V")
    fig.tight_layout()
    try:
        fig.savefig(path)
    except OSError as exc:
        raise ConfigError(f"cannot write plot {path}: {exc.strerror}") from None
    finally:
        plt.close(fig)


def _record(report: CableCheckReport) -> dict[str, Any]:
    result = report.result
    return {
        "edition": report.profile.edition.value,
        "test_voltage_v": report.test_voltage_v,
        "self_test_passed": report.self_test_passed,
        "verdict": result.verdict.value if result else "failed",
        "resistance_ohm": result.resistance_ohm if result else None,
        "fault_threshold_ohm": report.profile.fault_threshold_ohm,
        "warning_threshold_ohm": report.profile.warning_threshold_ohm,
        "failure": report.failure,
        "ramp_down_s": report.ramp_down_s,
        "duration_s": None if report.finished_at is None else report.finished_at - report.started_at,
        "trace": [
            {
                "t": round(s.t - report.started_at, 4),
                "phase": s.phase.value,
                "voltage_v": round(s.voltage_v, 2),
                "resistance_ohm": s.resistance_ohm,
                "sampled": s.sampled,
            }
            for s in report.trace
        ],
    }


def _show(session: HwSession, report: CableCheckReport, record: dict[str, Any]) -> None:
    table = Table(title=f"cable check trace (IEC 61851-23:{record['edition']})")
    for column in ("t (s)", "phase", "voltage (V)", "R_iso (kOhm)", ""):
        table.add_column(
            column, justify="right" if column in ("t (s)", "voltage (V)", "R_iso (kOhm)") else "left"
        )
    for row in record["trace"]:
        ohm = row["resistance_ohm"]
        table.add_row(
            f"{row['t']:.2f}",
            row["phase"],
            f"{row['voltage_v']:.1f}",
            "-" if ohm is None else f"{ohm / 1000:.1f}",
            "sample" if row["sampled"] else "",
        )
    console = session.app.console
    console.print(table)
    warning = record["warning_threshold_ohm"]
    limits = f"fault < {record['fault_threshold_ohm'] / 1000:.0f} kOhm" + (
        f", warning < {warning / 1000:.0f} kOhm" if warning is not None else ""
    )
    console.print(f"test voltage {record['test_voltage_v']:.0f} V (Formula CC.1); {limits}", highlight=False)
    if report.result is not None:
        console.print(
            f"verdict: [bold]{report.result.verdict.value.upper()}[/] at "
            f"{report.result.resistance_ohm / 1000:.1f} kOhm (lowest sample); ramp-down below 60 V in "
            f"{report.ramp_down_s or 0:.2f} s"
        )
    elif report.failure is not None:
        console.print(escape(f"no verdict: {report.failure}"), highlight=False)


@click.command(
    "isolation-check",
    short_help="Run the IEC 61851-23 cable check (IMD self-test, Formula CC.1 test voltage) and give its verdict.",
    epilog=INTERRUPT_NOTE + "\n" + EXIT_CODES,
)
@click.option("--edition", type=click.Choice([e.value for e in Edition]), help="IEC 61851-23 edition [2023].")
@click.option(
    "--ev-max-voltage", type=FiniteFloatRange(min=1.0), help="EVMaximumVoltage [sim: the vehicle's]."
)
@click.option(
    "--evse-max-voltage", type=FiniteFloatRange(min=1.0), help="EVSE maximum [config rated_voltage_v]."
)
@click.option("--samples", type=click.IntRange(min=1), default=10, show_default=True, help="IMD samples.")
@click.option(
    "--interval", type=FiniteFloatRange(min=0.01), default=1.0, show_default=True, help="Seconds apart."
)
@click.option(
    "--settle", type=run_seconds(), default=2.0, show_default=True, help="Grace (s) after ramp."
)
@click.option(
    "--trace-interval",
    type=FiniteFloatRange(min=0.01),
    default=0.5,
    show_default=True,
    help="Trace step (s).",
)
@click.option(
    "--at", "at_s", type=run_seconds(), default=0.0, help="sim: start at this simulated time."
)
@click.option(
    "--plot", type=click.Path(dir_okay=False, path_type=Path), help="Write the trace as PNG (matplotlib)."
)
@click.option("--on-fault-exec", help='Command run on a fault, e.g. "systemctl stop evse-charging".')
@hw_options
@click.pass_context
def isolation_check(
    ctx: click.Context,
    edition: str | None,
    ev_max_voltage: float | None,
    evse_max_voltage: float | None,
    samples: int,
    interval: float,
    settle: float,
    trace_interval: float,
    at_s: float,
    plot: Path | None,
    on_fault_exec: str | None,
    backend: str | None,
    scenario: Path | None,
    json_out: bool,
) -> None:
    """Run the IEC 61851-23 cable check: CP 5 % and diode check -> close -> IMD self-test -> ramp to
    the Formula CC.1 test voltage -> settle -> sample -> ramp down below 60 V -> verdict (2023: fault < 100 kOhm;
    2014: fault < 100 Ohm/V, warning < 500 Ohm/V of the rated voltage). The contactors are opened
    afterwards. On an isolation fault the stop action runs (session stop, plus --on-fault-exec).
    """
    if plot is not None and not _plot_available():
        raise ConfigError("--plot needs matplotlib, which is not installed (pip install matplotlib)")
    session = open_session(
        ctx,
        backend,
        scenario,
        json_out,
        edition=Edition(edition) if edition else None,
        on_fault_exec=on_fault_exec,
    )
    station = session.station
    with Interrupts() as interrupted:
        station.wait_for(interrupted, at_s)
        if interrupted():  # during --at: nothing was closed
            raise click.Abort()
        if ev_max_voltage is None:
            if session.sim is None:
                raise click.UsageError("--ev-max-voltage is needed on real hardware")
            ev_max_voltage = session.sim.vehicle.max_voltage()
        settings = CableCheckSettings(
            ev_max_voltage_v=ev_max_voltage,
            evse_max_voltage_v=evse_max_voltage or session.rated_voltage_v,
            samples=samples,
            sample_interval_s=interval,
            settle_s=settle,
            trace_interval_s=trace_interval,
        )
        cable_check_voltage(settings.ev_max_voltage_v, settings.evse_max_voltage_v)  # validate before closing
        check_diode(station)  # the pilot at 5 %, as in a session: the interlock closes after a passed check
        try:
            with opened_on_error(station):
                report = run_cable_check(station, settings, interrupted)
                open_contactors(station)  # a pass leaves them closed for precharge: not here
        finally:
            station.finish()
    record = _record(report)
    session.render.record("isolation-check", record)
    if not session.json:
        _show(session, report, record)
    check_not_stuck(station)
    if interrupted():  # the check, or the wait for its stop action after it
        raise click.Abort()
    if plot is not None:
        _write_plot(report, plot)
    if report.failure is not None:
        raise IsolationFaultError(f"cable check failed: {report.failure}")
    assert report.result is not None
    if report.result.verdict is IsolationVerdict.FAULT:
        raise IsolationFaultError(
            f"isolation fault: {report.result.resistance_ohm / 1000:.1f} kOhm < "
            f"{report.result.fault_threshold_ohm / 1000:.1f} kOhm"
        )
    if report.result.verdict is IsolationVerdict.WARNING:
        ctx.exit(EXIT_WARNING)
