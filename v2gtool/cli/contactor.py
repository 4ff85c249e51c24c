"""``v2gtool contactor``: the DC contactors K1/K2 under the interlock.

Every command goes through :mod:`v2gtool.hw.interlock`; a refusal names the blocking rule.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from v2gtool.cli.hw_common import HwSession, Interrupts, check_not_stuck, hw_options, open_session, run_seconds
from v2gtool.cli.params import FiniteFloat
from v2gtool.hw.cablecheck import never, open_contactors, opened_on_error
from v2gtool.hw.errors import ContactorStuckError, InterlockRefusedError, InterlockTrippedError
from v2gtool.hw.events import ContactorsOpened, ContactorsOpening, InterlockTripped
from v2gtool.hw.interlock import ContactorPhase
from v2gtool.hw.isolation import Edition
from v2gtool.hw.sequence import check_diode, power_up
from v2gtool.hw.weldcheck import WELD_TEST_V, run_weld_check, settle_contactors
from v2gtool.session.events import Event

EXIT_CODES = """\b
Exit codes:
  0  done
  1  hardware error (device missing, unplugged, timeout)
  2  bad option, config or scenario; the backend lacks a needed part
  3  refused by the interlock (the message names the rule)
  4  Contactor Stuck: weld or feedback mismatch, latched until `contactor reset`
  5  the interlock opened the contactors during the run (CP left C/D, e-stop)
  6  the cable check found an isolation fault (or could not test)
  130  interrupted (SIGINT or SIGTERM; with the contactors closed, after they opened)
"""

INTERRUPT_NOTE = """\b
SIGINT (Ctrl-C) or SIGTERM while the contactors may be closed (close, or a sim --session) does not
end the command at once: the hold stops, the contactors open through the interlock at zero current
(InterlockTripped SESSION_STOP, ContactorsOpening, ContactorsOpened), then it exits 130 (4 if a
contact stuck). An error there opens them the same way first, best effort.
"""

SIM_NOTE = """\b
On the sim backend each invocation is a fresh, self-contained simulation: the scenario
(--scenario FILE.toml, default: a vehicle in CP state C) is replayed in simulated time, and
the command runs the whole sequence it needs in that time, e.g. `close` runs CP C/D -> CP 5 %
and diode check -> close -> cable check -> precharge -> energy transfer and then holds, so
faults scripted in the scenario (weld, CP leaving C, isolation drop, e-stop) hit a live session.
"""


@click.group("contactor", epilog=EXIT_CODES)
def contactor() -> None:
    """Close, open, check and reset the DC contactors K1 (DC+) / K2 (DC-) through the interlock."""


def _open_contactor_session(
    ctx: click.Context,
    backend: str | None,
    scenario: Path | None,
    json_out: bool,
    *,
    edition: Edition | None = None,
    on_fault_exec: str | None = None,
    only: tuple[type[Event], ...] | None = None,
) -> HwSession:
    """:func:`open_session`, refused (exit 2) before any event or action when the backend has no
    contactors: nothing of a contactor command means anything without K1/K2 and their feedback."""
    session = open_session(
        ctx, backend, scenario, json_out, edition=edition, on_fault_exec=on_fault_exec, only=only
    )
    session.station.part(session.station.hw.contactors, "contactors")
    return session


def _sim_options(session_s: float = 0.0) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``--current``, ``--session`` (default *session_s*) and ``--at``."""

    def options(func: Callable[..., Any]) -> Callable[..., Any]:
        func = click.option(
            "--current",
            "current_a",
            type=FiniteFloat(),
            default=100.0,
            show_default=True,
            help="Current during a simulated session / the hold (+ charge, - discharge).",
        )(func)
        func = click.option(
            "--session",
            "session_s",
            type=run_seconds(),
            default=session_s,
            show_default=True,
            help="sim: first run a charging session of this many seconds, then stop it.",
        )(func)
        func = click.option(
            "--at",
            "at_s",
            type=run_seconds(),
            default=0.0,
            show_default=True,
            help="sim: simulated time (s) at which the command starts.",
        )(func)
        return func

    return options


@dataclass(frozen=True)
class Carried:
    """The output current measured over a hold, once the power module's ramp reached the setpoint
    (the rated limit and the thermal derating may hold it below what was asked for)."""

    last_a: float
    min_a: float
    max_a: float


def _power_up_and_charge(
    session: HwSession, current_a: float, seconds: float, stop: Callable[[], bool] = never
) -> Carried | None:
    """Close -> cable check -> precharge -> energy transfer, then ask for *current_a* for *seconds*
    (ended early once *stop* holds); what the output actually carried, None when *stop* ended the
    cable check (the contactors are open again)."""
    station = session.station
    if session.sim is None:
        raise InterlockRefusedError(
            f"energy transfer on {station.hw.backend} needs a vehicle session (ISO 15118-20 cable check and "
            "precharge): CABLE_CHECK_NOT_PASSED"
        )
    if power_up(station, session.sim.vehicle, session.rated_voltage_v, stop=stop) is None:
        return None
    station.request_current(current_a)
    measured: list[float] = []

    def sample() -> bool:
        amps = station.measurement.current_a
        if measured or abs(amps - station.applied_current_a) <= 1.0:  # from the end of the ramp on
            measured.append(amps)
        return stop()

    station.wait_for(sample, seconds)
    if not measured:  # the hold ended inside the ramp
        measured.append(station.measurement.current_a)
    return Carried(measured[-1], min(measured), max(measured))


def _close_for_cable_check(session: HwSession, hold: float, stop: Callable[[], bool]) -> None:
    """Real hardware without a vehicle session: the rule-1 close (as for a cable check, after the diode
    check), supervised for *hold* seconds or until *stop* holds."""
    station = session.station
    check_diode(station)
    verdict = station.request_close()
    if not verdict.allowed:
        raise InterlockRefusedError(f"contactors may not close: {verdict}")
    station.wait_for(
        lambda: station.interlock.phase is ContactorPhase.CLOSED or station.interlock.stuck is not None, 1.0
    )
    station.wait_for(stop, hold)


def _prepare(
    session: HwSession, at_s: float, session_s: float, current_a: float, interrupted: Callable[[], bool]
) -> None:
    """--at, then the sim --session (closed, energy transfer, then a session stop); both end early
    once *interrupted* holds, and an error in the session opens the contactors first (best effort).
    Then the contactors settle (:func:`settle_contactors`): what status, weld-check and reset say of
    them is the interlock's judgement, also of contacts a fresh process found closed."""
    session.station.wait_for(interrupted, at_s)
    if session_s > 0 and not interrupted():
        with opened_on_error(session.station):
            _power_up_and_charge(session, current_a, session_s, interrupted)
        _stop_and_wait(session)
    settle_contactors(session.station)


def _prepared(session: HwSession, at_s: float, session_s: float, current_a: float) -> None:
    """:func:`_prepare` with SIGINT / SIGTERM held off: after a signal the contactors are open, and
    the command exits 130 (4 if a contact stuck) instead of going on."""
    with Interrupts() as interrupted:
        _prepare(session, at_s, session_s, current_a, interrupted)
    _exit_if_interrupted(session, interrupted)


def _exit_if_interrupted(session: HwSession, interrupted: Interrupts) -> None:
    if interrupted():
        check_not_stuck(session.station)
        raise click.Abort()


def _stop_and_wait(session: HwSession) -> None:
    """Session stop: open through the interlock at zero current; then the vehicle opens its own."""
    open_contactors(session.station)
    if session.sim is not None:
        session.sim.vehicle.session_stopped()


def _status_record(session: HwSession) -> dict[str, Any]:
    station = session.station
    interlock = station.interlock
    blocking = interlock.blocking_close(station.measurement.link_v)
    return {
        "backend": station.hw.backend,
        "t": station.clock.now(),
        "cp_state": station.cp_state.name if station.cp_state else None,
        "phase": interlock.phase.value,
        "feedback": {pole.name: closed for pole, closed in station.feedback.items()},
        "stuck": interlock.stuck.pole.name if interlock.stuck else None,
        "emergency_stop": interlock.emergency_stop,
        "cable_check_passed": interlock.cable_check_passed,
        "energy_transfer": interlock.energy_transfer,
        "link_v": round(station.measurement.link_v, 2),
        "cable_v": round(station.measurement.cable_v, 2),
        "current_a": round(station.measurement.current_a, 2),
        "close_blocked_by": None if blocking.allowed else str(blocking),
    }


def _show_status(session: HwSession) -> None:
    record = _status_record(session)
    session.render.record("contactor-status", record)
    if session.json:
        return
    table = Table(title=f"contactors at {record['t']:.3f} s ({record['backend']})", show_header=False)
    table.add_row("CP state", str(record["cp_state"]))
    table.add_row("interlock phase", record["phase"])
    table.add_row(
        "mirror contacts",
        ", ".join(f"{k} {'closed' if v else 'open'}" for k, v in record["feedback"].items()),
    )
    table.add_row("Contactor Stuck", record["stuck"] or "no")
    table.add_row("emergency stop", "PRESSED" if record["emergency_stop"] else "released")
    table.add_row("cable check passed", "yes" if record["cable_check_passed"] else "no")
    table.add_row(
        "output",
        f"link {record['link_v']:.1f} V, cable {record['cable_v']:.1f} V, {record['current_a']:.1f} A",
    )
    table.add_row("close now", record["close_blocked_by"] or "allowed")
    session.app.console.print(table)


@contactor.command("status", epilog=INTERRUPT_NOTE + "\n" + EXIT_CODES)
@_sim_options()
@hw_options
@click.pass_context
def status(
    ctx: click.Context,
    at_s: float,
    session_s: float,
    current_a: float,
    backend: str | None,
    scenario: Path | None,
    json_out: bool,
) -> None:
    """Show CP state, mirror contacts, latches and what would block a close now (exit 4 if stuck)."""
    session = _open_contactor_session(ctx, backend, scenario, json_out, only=())
    _prepared(session, at_s, session_s, current_a)
    _show_status(session)
    check_not_stuck(session.station)


@contactor.command("close", epilog=SIM_NOTE + "\n" + INTERRUPT_NOTE + "\n" + EXIT_CODES)
@_sim_options()
@click.option(
    "--hold",
    type=run_seconds(),
    default=1.0,
    show_default=True,
    help="Seconds to keep the contactors closed, supervised by the interlock; then open (session stop).",
)
@click.option("--edition", type=click.Choice([e.value for e in Edition]), help="IEC 61851-23 edition.")
@click.option(
    "--on-fault-exec", help='Command run on an isolation fault, e.g. "systemctl stop evse-charging".'
)
@hw_options
@click.pass_context
def close(
    ctx: click.Context,
    at_s: float,
    session_s: float,
    current_a: float,
    hold: float,
    edition: str | None,
    on_fault_exec: str | None,
    backend: str | None,
    scenario: Path | None,
    json_out: bool,
) -> None:
    """Close K1/K2 through the full interlock sequence and hold them closed.

    With a power module, an IMD and a vehicle (sim): CP C/D -> CP 5 % and diode check -> close ->
    cable check -> precharge -> energy transfer at --current for --hold seconds. On real hardware
    without a vehicle session only the close of interlock rule 1 (as for a cable check: CP C/D, a
    passed diode check with the CP at 5 %, no e-stop, no latch, output below 60 V) is made,
    supervised for --hold seconds. The command fails with the rule that
    refused or opened the contactors.
    """
    session = _open_contactor_session(
        ctx,
        backend,
        scenario,
        json_out,
        edition=Edition(edition) if edition else None,
        on_fault_exec=on_fault_exec,
    )
    station = session.station
    carried: Carried | None = None
    with Interrupts() as interrupted:
        try:
            _prepare(session, at_s, session_s, current_a, interrupted)
            if not interrupted():  # a signal during --at / --session: do not close at all
                with opened_on_error(station):
                    if session.sim is not None:
                        carried = _power_up_and_charge(session, current_a, hold, interrupted)
                    else:
                        _close_for_cable_check(session, hold, interrupted)
        finally:
            station.finish()
        if interrupted():
            _stop_and_wait(session)
    _exit_if_interrupted(session, interrupted)
    check_not_stuck(station)
    if station.interlock.phase is not ContactorPhase.CLOSED:
        condition = station.interlock.trip_condition
        raise InterlockTrippedError(
            f"contactors opened during the hold: {condition.name if condition else 'unknown'}"
        )
    _stop_and_wait(session)
    check_not_stuck(station)
    record: dict[str, Any] = {"held_s": hold, "requested_a": current_a if carried else None}
    record |= {
        "current_a": round(carried.last_a, 2) if carried else None,
        "current_min_a": round(carried.min_a, 2) if carried else None,
        "current_max_a": round(carried.max_a, 2) if carried else None,
        "opened_by": "SESSION_STOP",
    }
    session.render.record("contactor-close", record)
    if not session.json:
        what = (
            f"carried {carried.last_a:.1f} A at the end (min {carried.min_a:.1f}, max {carried.max_a:.1f} A; "
            f"requested {current_a:g} A)"
            if carried
            else "held"
        )
        session.app.console.print(
            f"closed, {what} for {hold:g} s under the interlock, opened by session stop", highlight=False
        )


@contactor.command("open", epilog=SIM_NOTE + "\n" + INTERRUPT_NOTE + "\n" + EXIT_CODES)
@_sim_options(session_s=1.0)
@hw_options
@click.pass_context
def open_(
    ctx: click.Context,
    at_s: float,
    session_s: float,
    current_a: float,
    backend: str | None,
    scenario: Path | None,
    json_out: bool,
) -> None:
    """Open K1/K2 at zero current and time it (on sim after a session of --session seconds)."""
    session = _open_contactor_session(ctx, backend, scenario, json_out)
    station = session.station
    with Interrupts() as interrupted:
        station.wait_for(interrupted, at_s)
        if session.sim is not None and session_s > 0 and not interrupted():
            with opened_on_error(station):
                _power_up_and_charge(session, current_a, session_s, interrupted)
        started = len(station.events)
        _stop_and_wait(session)
    _exit_if_interrupted(session, interrupted)
    check_not_stuck(station)
    events = station.events[started:]
    tripped = next((e for e in events if isinstance(e, InterlockTripped)), None)
    opening = next((e for e in events if isinstance(e, ContactorsOpening)), None)
    opened = next((e for e in events if isinstance(e, ContactorsOpened)), None)
    record: dict[str, Any] = {"opened": station.interlock.phase is ContactorPhase.OPEN}
    if tripped and opening and opened:
        record |= {
            "current_at_release_a": round(opening.current_a, 3),
            "forced": opening.forced,
            "release_after_s": round(opening.t - tripped.t, 4),
            "open_after_s": round(opened.since_trip_s, 4),
        }
    session.render.record("contactor-open", record)
    if not session.json:
        release_ms = record.get("release_after_s", 0.0) * 1000
        detail = (
            f"released at {record['current_at_release_a']} A after {release_ms:.0f} ms, "
            f"open after {record['open_after_s'] * 1000:.0f} ms"
            if "open_after_s" in record
            else "were already open"
        )
        session.app.console.print(f"contactors open: {detail}", highlight=False)


@contactor.command("weld-check", epilog=INTERRUPT_NOTE + "\n" + EXIT_CODES)
@_sim_options()
@hw_options
@click.pass_context
def weld_check(
    ctx: click.Context,
    at_s: float,
    session_s: float,
    current_a: float,
    backend: str | None,
    scenario: Path | None,
    json_out: bool,
) -> None:
    """Check for welded contacts with the coils released: mirror contacts and a <60 V voltage test.

    Exit 4 if a contact is welded.
    """
    session = _open_contactor_session(ctx, backend, scenario, json_out, only=())
    _prepared(session, at_s, session_s, current_a)
    report = run_weld_check(session.station)
    record: dict[str, Any] = {
        "welded": report.welded,
        "feedback_closed": [p.name for p in report.feedback_closed],
        "test_voltage_v": WELD_TEST_V if report.link_v is not None else None,
        "link_v": report.link_v,
        "cable_v": report.cable_v,
    }
    session.render.record("weld-check", record)
    if not session.json:
        lines = [f"mirror contacts closed: {', '.join(record['feedback_closed']) or 'none'}"]
        if report.link_v is not None and report.cable_v is not None:
            lines.append(f"voltage test: link {report.link_v:.1f} V -> cable {report.cable_v:.1f} V")
        else:
            lines.append(
                "voltage test: not possible (no power module, or the cable is live from the vehicle)"
            )
        session.app.console.print("\n".join(lines), highlight=False)
    if report.welded:
        poles = ", ".join(record["feedback_closed"]) or "K1 and K2 (cable follows the link)"
        raise ContactorStuckError(f"weld check: welded {poles}")
    if not session.json:
        session.app.console.print("no weld found")


@contactor.command("reset", epilog=INTERRUPT_NOTE + "\n" + EXIT_CODES)
@_sim_options()
@hw_options
@click.pass_context
def reset(
    ctx: click.Context,
    at_s: float,
    session_s: float,
    current_a: float,
    backend: str | None,
    scenario: Path | None,
    json_out: bool,
) -> None:
    """Clear the "Contactor Stuck" latch; refused (exit 4) while a mirror contact still shows closed."""
    session = _open_contactor_session(ctx, backend, scenario, json_out)
    _prepared(session, at_s, session_s, current_a)
    station = session.station
    latched = station.interlock.stuck
    verdict = station.reset()
    if not verdict.allowed:
        raise ContactorStuckError(f"reset refused: {verdict}")
    session.render.record("contactor-reset", {"was_latched": latched is not None})
    if not session.json:
        session.app.console.print(
            f"Contactor Stuck latch on {latched.pole.name} cleared" if latched else "nothing was latched"
        )
