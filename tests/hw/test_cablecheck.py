"""The cable check sequence of v2gtool.hw.cablecheck on the simulated station."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tests.hw.conftest import make_station, names
from v2gtool.hw.cablecheck import CableCheckRun, CableCheckSettings, CablePhase, run_cable_check
from v2gtool.hw.errors import HardwareError
from v2gtool.hw.events import ContactorsOpening, InterlockTripped
from v2gtool.hw.interlock import ContactorPhase
from v2gtool.hw.isolation import SAFE_OUTPUT_V, IsolationVerdict
from v2gtool.hw.station import Station

SETTINGS = CableCheckSettings(ev_max_voltage_v=450.0, evse_max_voltage_v=920.0)


def test_a_cable_check_right_after_a_session_discharges_the_output_first() -> None:
    """Step 1 of the sequence: the output below 60 V before the contactors close. A charger serving
    one session after another finds the DC link still charged from the last one."""
    station = make_station().station
    first = run_cable_check(station, SETTINGS)
    assert first.failure is None and first.result is not None
    station.regulate_voltage(400.0)  # precharge, then the session ends at once
    assert station.wait_for(lambda: station.measurement.link_v > 390.0, 5.0)
    station.session_stop()
    assert station.wait_for(lambda: station.measurement.cable_v < SAFE_OUTPUT_V, 2.0)
    assert station.measurement.link_v > SAFE_OUTPUT_V  # what the interlock would refuse to close onto

    second = run_cable_check(station, SETTINGS)
    assert second.failure is None and second.result is not None
    assert second.result.verdict is not IsolationVerdict.FAULT
    assert station.measurement.link_v < SAFE_OUTPUT_V  # ramped down again before reporting


def _stops_with_voltage(station: Station) -> list[float]:
    """The output voltage each time the station is asked to open (session stop) from now on."""
    seen: list[float] = []
    session_stop = station.session_stop

    def recording() -> None:
        seen.append(station.measurement.cable_v)
        session_stop()

    station.session_stop = recording  # type: ignore[method-assign]
    return seen


def _assert_opened_at_zero_current(station: Station, since: float) -> None:
    later = [e for e in station.events if e.t >= since]
    assert names(later)[-3:] == ["InterlockTripped", "ContactorsOpening", "ContactorsOpened"]
    tripped, opening, _ = later[-3:]
    assert isinstance(tripped, InterlockTripped) and tripped.condition == "SESSION_STOP"
    assert isinstance(opening, ContactorsOpening) and abs(opening.current_a) <= 1.0 and not opening.forced
    assert station.interlock.phase is ContactorPhase.OPEN


def test_a_stop_during_the_samples_ramps_down_below_60_v_then_opens() -> None:
    """The stop predicate (a SIGINT/SIGTERM the command remembered) ends the check at a tick; the test
    voltage goes first (standards.md 7.1), then the interlock opens at zero current (7.3)."""
    station = make_station().station
    stops = _stops_with_voltage(station)
    report = run_cable_check(
        station, replace(SETTINGS, samples=1000), stop=lambda: station.clock.now() >= 8.0
    )
    assert report.interrupted and report.failure == "interrupted" and report.result is None
    sampled = [s for s in report.trace if s.phase is CablePhase.SAMPLE]
    assert sampled and max(s.voltage_v for s in sampled) == pytest.approx(report.test_voltage_v, rel=0.02)
    assert report.trace[-1].phase is CablePhase.RAMP_DOWN and report.trace[-1].voltage_v < SAFE_OUTPUT_V
    assert stops and stops[0] < SAFE_OUTPUT_V
    _assert_opened_at_zero_current(station, 8.0)


def test_a_stop_before_the_close_does_not_close_at_all() -> None:
    station = make_station().station
    report = run_cable_check(station, SETTINGS, stop=lambda: True)
    assert report.interrupted and "ContactorsClosing" not in names(station.events)
    assert station.interlock.phase is ContactorPhase.OPEN


def test_a_hardware_error_at_the_test_voltage_ramps_down_and_opens_before_it_propagates(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The IMD stops answering with ~500 V on the output: the error still leaves with the output below
    60 V and the contactors opened through the interlock."""
    setup = make_station()
    station = setup.station

    def imd_gone() -> float | None:
        if station.measurement.cable_v > 400.0:
            raise HardwareError("IMD: no answer")
        return 5e6

    monkeypatch.setattr(station.hw.isolation_monitor, "resistance_ohm", imd_gone)
    stops = _stops_with_voltage(station)
    with pytest.raises(HardwareError, match="IMD: no answer"):
        run_cable_check(station, SETTINGS)
    assert stops and stops[0] < SAFE_OUTPUT_V
    _assert_opened_at_zero_current(station, 0.0)
    assert not station.cable_check_running


@pytest.mark.parametrize(
    "scenario",
    [
        '[plant]\ninsulation_ohm = 60e3\n[[at]]\nt = 0\ncp = "C"\n',  # fault verdict: the interlock trips
        '[[at]]\nt = 0\ncp = "C"\nfault = "imd_self_test"\n',  # no verdict: a session stop
    ],
)
def test_a_failed_or_faulty_check_returns_with_the_contactors_open(scenario: str) -> None:
    """The caller exits on the result at once: the opening must not be left for later steps."""
    station = make_station(scenario).station
    report = run_cable_check(station, SETTINGS)
    assert report.failure is not None or (report.result and report.result.verdict is IsolationVerdict.FAULT)
    assert station.interlock.phase is ContactorPhase.OPEN
    assert names(station.events)[-1] == "ContactorsOpened"


def test_a_check_run_in_slices_is_tick_for_tick_the_check_run_at_once() -> None:
    """CableCheckRun (the SECC's, advanced by the EV's 0.5 s polls) against run_cable_check: the same
    trace, the same verdict at the same time."""
    at_once, sliced = make_station().station, make_station().station
    expected = run_cable_check(at_once, SETTINGS)
    run = CableCheckRun(sliced, SETTINGS)
    polls = 0
    while (report := run.advance(sliced.clock.now() + 0.5)) is None:
        polls += 1
        assert sliced.cable_check_running
    assert polls >= 20  # the ~15 s check over the polls, not at once
    assert report.trace == expected.trace
    assert report.result == expected.result and report.finished_at == expected.finished_at
    assert names(sliced.events) == names(at_once.events)
    assert sliced.interlock.cable_check_passed


def test_an_error_in_a_slice_opens_the_contactors_as_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    setup = make_station()
    station = setup.station

    def imd_gone() -> float | None:
        if station.measurement.cable_v > 400.0:
            raise HardwareError("IMD: no answer")
        return 5e6

    monkeypatch.setattr(station.hw.isolation_monitor, "resistance_ohm", imd_gone)
    run = CableCheckRun(station, SETTINGS)
    with pytest.raises(HardwareError, match="IMD: no answer"):
        while run.advance(station.clock.now() + 0.5) is None:
            pass
    assert station.interlock.phase is ContactorPhase.OPEN
    assert station.measurement.cable_v < SAFE_OUTPUT_V and not station.cable_check_running


def test_a_stop_in_the_ramp_down_finishes_it_then_opens() -> None:
    """A session that ends while its cable check ramps down (the SECC's CableCheckRun.stop()): the
    ramp down goes on below 60 V, the check ends interrupted and the contactors open at zero current,
    instead of the stop escaping the ramp down as an exception."""
    ramp_down_at = next(
        s.t for s in run_cable_check(make_station().station, SETTINGS).trace if s.phase is CablePhase.RAMP_DOWN
    )
    station = make_station().station
    run = CableCheckRun(station, SETTINGS)
    assert run.advance(ramp_down_at + 0.05) is None  # ramping down, not yet below 60 V
    assert station.measurement.cable_v > SAFE_OUTPUT_V
    report = run.stop()
    assert report is not None and report.interrupted and report.failure == "interrupted"
    assert report.trace[-1].phase is CablePhase.RAMP_DOWN and report.trace[-1].voltage_v < SAFE_OUTPUT_V
    _assert_opened_at_zero_current(station, ramp_down_at)
