"""The CP diode check before the contactors close (IEC 61851-1 Table A.4 note, standards.md 6.3): it
needs the PWM on, so the commands run the pilot at 5 % as a DC session does, and the interlock
refuses the close, naming the diode, unless the check passed. A backend without a Control Pilot is
refused as such."""

from __future__ import annotations

from pathlib import Path

import pytest

from v2gtool.hw.cp import CpReading, CpState
from v2gtool.hw.errors import InterlockRefusedError
from v2gtool.hw.interfaces import DcMeasurement, Pole
from v2gtool.hw.interlock import Condition, Interlock
from v2gtool.hw.sequence import check_diode, power_up
from v2gtool.hw.sim import SimClock

from .conftest import RATED_V, make_station, names
from .test_cli_hw import lines, one_line_error, run, scenario
from .test_gpiod import RelayBoard, station_on
from .test_weld_at_start import gpiod_main

DIODE_MISSING = '[[at]]\nt = 0\ncp = "C"\nfault = "diode_missing"\n'
CHECKED = CpReading(6.0, -12.0, 5.0)  # state C, PWM on, the diode there
X1 = CpReading(6.0, 6.0, 100.0)  # state C with the oscillator off: no negative half
NO_DIODE = CpReading(6.0, -6.0, 5.0)


def test_a_reading_checks_the_diode_only_with_the_pwm_on_and_a_vehicle() -> None:
    assert CHECKED.diode_check is True and NO_DIODE.diode_check is False
    assert X1.diode_check is None  # X1 shows state C but checks nothing
    assert CpReading(12.0, -12.0, 5.0).diode_check is None  # state A: no vehicle, no diode
    assert NO_DIODE.state is None and X1.state is CpState.C


def interlock_in_c(*readings: CpReading) -> Interlock:
    interlock = Interlock()
    interlock.on_cp_state(0.0, CpState.C)
    for reading in readings:
        interlock.on_pilot_reading(reading)
    interlock.on_measurement(0.0, DcMeasurement(0.0, 0.0, 0.0), {pole: False for pole in Pole})
    return interlock


def test_the_close_needs_a_reading_with_the_pwm_on() -> None:
    verdict = interlock_in_c(X1).request_close(0.0)
    assert verdict.condition is Condition.DIODE_CHECK_NOT_PASSED and "PWM on" in verdict.detail
    assert interlock_in_c(X1, CHECKED).request_close(0.0).allowed
    assert interlock_in_c(CHECKED, X1).request_close(0.0).allowed  # checked once before closing


def test_a_failed_diode_check_refuses_and_says_so() -> None:
    interlock = interlock_in_c(CHECKED, NO_DIODE, X1)  # the PWM off again does not clear a failure
    verdict = interlock.request_close(0.0)
    assert verdict.condition is Condition.DIODE_CHECK_NOT_PASSED and "diode is missing" in str(verdict)
    assert "-6.0 V" in verdict.detail
    interlock.on_cp_state(0.0, None)  # the invalid state the reading shows: the diode is named
    assert interlock.blocking_close(0.0).condition is Condition.DIODE_CHECK_NOT_PASSED


def test_unplugging_clears_the_diode_check() -> None:
    interlock = interlock_in_c(CHECKED)
    interlock.on_cp_state(1.0, CpState.A)
    interlock.on_cp_state(2.0, CpState.C)
    assert interlock.blocking_close(0.0).condition is Condition.DIODE_CHECK_NOT_PASSED


def test_power_up_runs_the_pilot_at_5_percent_and_closes_after_the_check() -> None:
    setup = make_station()
    power_up(setup.station, setup.vehicle, RATED_V)
    assert setup.plant.duty_percent == 5.0
    assert setup.station.interlock.diode_reading is not None and setup.station.interlock.energy_transfer


def test_power_up_without_the_diode_never_closes() -> None:
    setup = make_station(DIODE_MISSING)
    with pytest.raises(InterlockRefusedError, match=r"DIODE_CHECK_NOT_PASSED.*diode is missing"):
        power_up(setup.station, setup.vehicle, RATED_V)
    assert "ContactorsClosing" not in names(setup.station.events)
    assert not any(setup.plant.feedback().values())


@pytest.mark.parametrize("command", [("contactor", "close"), ("isolation-check",)])
def test_the_commands_refuse_to_close_without_the_diode(command: tuple[str, ...], tmp_path: Path) -> None:
    result = run(*command, "--scenario", scenario(tmp_path, DIODE_MISSING), "--json")
    one_line_error(result, 3, "DIODE_CHECK_NOT_PASSED", "diode is missing")
    assert "ContactorsClosing" not in [e.get("event") for e in lines(result)]


def test_no_control_pilot_is_named_as_such() -> None:
    clock = SimClock()
    station = station_on(RelayBoard(clock), clock)
    with pytest.raises(InterlockRefusedError, match="the gpiod backend has no Control Pilot to check"):
        check_diode(station)
    assert "no Control Pilot" in station.interlock.blocking_close(0.0).detail


def test_contactor_close_on_gpiod_says_there_is_no_control_pilot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _records, err = gpiod_main(["close"], tmp_path, monkeypatch, capsys)
    assert code == 3 and "no Control Pilot to check" in err and "can never allow a close" in err
