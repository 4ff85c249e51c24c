"""``v2gtool cp-duty``: the Control Pilot PWM and state (IEC 61851-1 Annex A).

    v2gtool cp-duty set 5                # 5 %: digital communication required (DC, ISO 15118)
    v2gtool cp-duty current 32           # 32 A -> 53.3 %, and set it
    v2gtool cp-duty current 32 --no-apply
    v2gtool cp-duty read --at 2.5 --scenario unplug.toml
    v2gtool cp-duty watch --duration 10

On ``sim`` each invocation starts a fresh simulation: the scenario (default: a vehicle in state C)
is replayed in simulated time up to ``--at`` before the command acts, and ``watch`` runs it for
``--duration`` seconds of simulated time (at once, not in real time).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from v2gtool.cli.context import app_context
from v2gtool.cli.hw_common import EventRenderer, HwSession, Interrupts, hw_options, open_session, run_seconds
from v2gtool.cli.output import use_json
from v2gtool.cli.params import FiniteFloat, FiniteFloatRange
from v2gtool.hw.cp import CpReading, current_from_duty, duty_from_current
from v2gtool.hw.events import CpStateChanged

#: Time the pilot gets to settle after a duty change before it is read (a few PWM periods).
_SETTLE_S = 0.01


EXIT_CODES = """\b
Exit codes:
  0  done
  1  hardware error (device missing, unplugged, timeout)
  2  bad option, config or scenario; the backend has no Control Pilot
  130  interrupted (SIGINT or SIGTERM)
"""


@click.group("cp-duty", epilog=EXIT_CODES)
def cp_duty() -> None:
    """Set and read the Control Pilot PWM; show the CP state (IEC 61851-1 Annex A)."""


def _at_option(func: Any) -> Any:
    return click.option(
        "--at",
        "at_s",
        type=run_seconds(),
        default=0.0,
        show_default=True,
        help="sim: simulated time (s) in the scenario at which to act.",
    )(func)


def _duty_record(duty_percent: float) -> dict[str, Any]:
    """The duty cycle and what it tells the vehicle (IEC 61851-1 Table A.7, standards.md 6.2), both
    rounded to 3 decimals: a current computed back from its duty is off by float rounding
    (50 A -> 83.33 % -> 50.00000000000001 A)."""
    meaning = current_from_duty(duty_percent)
    return {
        "duty_percent": round(duty_percent, 3),
        "meaning": meaning.meaning.name,
        "current_a": None if meaning.current_a is None else round(meaning.current_a, 3),
    }


def _reading_record(reading: CpReading) -> dict[str, Any]:
    return {
        **_duty_record(reading.duty_percent),
        "state": reading.state.name if reading.state else None,
        "high_v": reading.high_v,
        "low_v": reading.low_v,
        "diode_ok": reading.diode_ok,
    }


def _show(session: HwSession, title: str, record: dict[str, Any]) -> None:
    session.render.record("cp-duty", record)
    if session.json:
        return
    table = Table(title=title, show_header=False)
    meaning = current_from_duty(record["duty_percent"])
    table.add_row("duty", f"{record['duty_percent']:.2f} % ({meaning.meaning.value})")
    if meaning.current_a is not None:
        table.add_row("advertised current", f"{meaning.current_a:.1f} A")
    state = record["state"] or "invalid (no band / diode check failed)"
    table.add_row("CP state", state)
    table.add_row("levels", f"{record['high_v']:+.2f} V / {record['low_v']:+.2f} V")
    table.add_row("diode check", "ok" if record["diode_ok"] else "FAILED")
    session.app.console.print(table)


def _set_and_read(session: HwSession, at_s: float, duty: float) -> dict[str, Any]:
    station = session.station
    pilot = station.part(station.hw.control_pilot, "Control Pilot")
    station.run(at_s)
    pilot.set_duty(duty)
    station.run(_SETTLE_S)
    return _reading_record(pilot.read())


@cp_duty.command("set")
@click.argument("percent", type=FiniteFloatRange(0.0, 100.0))
@_at_option
@hw_options
@click.pass_context
def set_duty(
    ctx: click.Context,
    percent: float,
    at_s: float,
    backend: str | None,
    scenario: Path | None,
    json_out: bool,
) -> None:
    """Generate the PWM at PERCENT duty (5 = digital communication required; 100 = oscillator off)."""
    session = open_session(ctx, backend, scenario, json_out, only=())
    _show(session, f"CP after setting {percent:g} %", _set_and_read(session, at_s, percent))


@cp_duty.command("current")
@click.argument("amps", type=FiniteFloat())
@click.option("--no-apply", is_flag=True, help="Only compute the duty cycle; touch no hardware.")
@_at_option
@hw_options
@click.pass_context
def current(
    ctx: click.Context,
    amps: float,
    no_apply: bool,
    at_s: float,
    backend: str | None,
    scenario: Path | None,
    json_out: bool,
) -> None:
    """Advertise at most AMPS (6..80 A): the IEC 61851-1 duty for it, and what the vehicle reads back."""
    duty = duty_from_current(amps)
    if no_apply:
        render = EventRenderer(app_context(ctx), use_json(ctx, json_out))
        record = {"requested_a": amps, **_duty_record(duty)}
        render.record("cp-duty", record)
        if not render.json:
            render.app.console.print(
                f"{amps:g} A -> duty {duty:.2f} % -> the vehicle reads {record['current_a']:.1f} A",
                highlight=False,
            )
        return
    session = open_session(ctx, backend, scenario, json_out, only=())
    record = _set_and_read(session, at_s, duty)
    _show(session, f"CP advertising {amps:g} A", {"requested_a": amps, **record})


@cp_duty.command("read")
@_at_option
@hw_options
@click.pass_context
def read(ctx: click.Context, at_s: float, backend: str | None, scenario: Path | None, json_out: bool) -> None:
    """Show the CP state, the measured plateau levels and the duty being generated."""
    session = open_session(ctx, backend, scenario, json_out, only=())
    pilot = session.station.part(session.station.hw.control_pilot, "Control Pilot")
    session.station.run(at_s)
    _show(session, "CP", _reading_record(pilot.read()))


@cp_duty.command("watch")
@click.option(
    "--duration",
    type=run_seconds(),
    help="Seconds to watch [sim: the scenario's length + 1 s; hardware: until Ctrl-C].",
)
@click.option("--duty", type=FiniteFloatRange(0.0, 100.0), help="Set this duty first (e.g. 5).")
@hw_options
@click.pass_context
def watch(
    ctx: click.Context,
    duration: float | None,
    duty: float | None,
    backend: str | None,
    scenario: Path | None,
    json_out: bool,
) -> None:
    """Print every CP state transition with its timestamp, as it happens."""
    session = open_session(ctx, backend, scenario, json_out, only=(CpStateChanged,))
    pilot = session.station.part(session.station.hw.control_pilot, "Control Pilot")
    if duty is not None:
        pilot.set_duty(duty)
    if duration is None and session.sim is not None:
        duration = session.sim.scenario.duration_s + 1.0
    # SIGINT / SIGTERM end the watch at a control tick, and the command exits 130, as contactor's.
    with Interrupts() as interrupted:
        session.station.wait_for(interrupted, math.inf if duration is None else duration)
    if interrupted():
        raise click.Abort()
