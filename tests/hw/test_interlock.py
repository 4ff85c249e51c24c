"""Every interlock rule and fault path on the sim backend, asserted on simulated time and event order."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from v2gtool.hw.backends import SimSetup
from v2gtool.hw.cp import CpState
from v2gtool.hw.errors import InterlockRefusedError, IsolationFaultError
from v2gtool.hw.events import (
    ContactorsOpened,
    ContactorsOpening,
    ContactorStuck,
    CpStateChanged,
    InterlockRefused,
    InterlockTripped,
    IsolationFault,
    StopActionRun,
)
from v2gtool.hw.interfaces import Pole
from v2gtool.hw.interlock import Condition, ContactorPhase, InterlockConfig
from v2gtool.hw.isolation import Edition, IsolationVerdict
from v2gtool.hw.sequence import check_diode, power_up

from .conftest import RATED_V, after, first, make_station, names

BUDGET_S = 0.100  # IEC 61851-1 Table A.6 (unverified): contacts open within 100 ms after CP leaves C/D


def charging(setup: SimSetup, amps: float = 150.0, seconds: float = 1.0) -> float:
    """Power up and charge at *amps* for *seconds*; the simulated time when that is done."""
    power_up(setup.station, setup.vehicle, RATED_V)
    setup.station.request_current(amps)
    setup.station.run(seconds)
    assert setup.plant.current_a == pytest.approx(amps)
    return setup.clock.now()


def assert_opened_in_order(
    setup: SimSetup, t0: float, condition: str
) -> tuple[ContactorsOpening, ContactorsOpened]:
    """Trip at t0 -> current to (near) zero -> coils released -> both contacts open, within budget."""
    events = after(setup.station.events, t0)
    order = [n for n in names(events) if n in ("InterlockTripped", "ContactorsOpening", "ContactorsOpened")]
    assert order == ["InterlockTripped", "ContactorsOpening", "ContactorsOpened"]
    tripped = first(events, "InterlockTripped")
    opening = first(events, "ContactorsOpening")
    opened = first(events, "ContactorsOpened")
    assert isinstance(tripped, InterlockTripped) and tripped.condition == condition
    assert isinstance(opening, ContactorsOpening) and isinstance(opened, ContactorsOpened)
    assert tripped.t == pytest.approx(t0, abs=0.0015)
    assert tripped.t < opening.t < opened.t
    assert opened.t - tripped.t <= BUDGET_S
    assert opened.since_trip_s == pytest.approx(opened.t - tripped.t)
    assert not any(setup.plant.feedback().values())
    assert setup.station.interlock.phase is ContactorPhase.OPEN
    return opening, opened


# -- rule 1: close only in C/D, no emergency stop, output below 60 V --------------------------------------


@pytest.mark.parametrize("state", ["A", "B", "E", "F"])
def test_close_is_refused_outside_c_and_d(state: str) -> None:
    setup = make_station(f'[[at]]\nt = 0\ncp = "{state}"\n')
    verdict = setup.station.request_close()
    assert not verdict.allowed and verdict.condition is Condition.CP_NOT_C_OR_D
    setup.station.run(0.2)
    assert not any(setup.plant.feedback().values())
    assert names(setup.station.events) == ["CpStateChanged", "InterlockRefused"]
    refused = setup.station.events[1]
    assert (
        isinstance(refused, InterlockRefused)
        and refused.condition == "CP_NOT_C_OR_D"
        and refused.request == "close"
    )


def test_close_is_refused_without_the_ev_diode() -> None:
    setup = make_station('[[at]]\nt = 0\ncp = "C"\nfault = "diode_missing"\n')
    setup.station.hw.control_pilot.set_duty(5.0)  # type: ignore[union-attr]
    verdict = setup.station.request_close()
    assert verdict.condition is Condition.CP_NOT_C_OR_D and "invalid" in verdict.detail


def test_close_is_refused_with_emergency_stop() -> None:
    setup = make_station('[[at]]\nt = 0\ncp = "C"\nestop = true\n')
    assert setup.station.request_close().condition is Condition.EMERGENCY_STOP


def test_close_is_refused_onto_a_live_output() -> None:
    setup = make_station()
    setup.station.regulate_voltage(200.0)  # the module charges its output capacitor with K1/K2 open
    setup.station.run(0.5)
    verdict = setup.station.request_close()
    assert verdict.condition is Condition.OUTPUT_LIVE
    setup.station.power_off()
    assert setup.station.wait_for(lambda: setup.station.measurement.link_v < 60.0, 2.0)
    assert setup.station.request_close().allowed


def test_close_reports_closed_after_the_contactor_operating_time() -> None:
    setup = make_station()
    t0 = setup.clock.now()
    assert setup.station.request_close().allowed
    assert setup.station.wait_for(lambda: setup.station.interlock.phase is ContactorPhase.CLOSED, 1.0)
    closed = first(setup.station.events, "ContactorsClosed")
    assert names(setup.station.events)[1:] == ["ContactorsClosing", "ContactorsClosed"]
    assert closed.t - t0 == pytest.approx(setup.plant.params.contactor_close_time_s, abs=0.0015)


# -- rule 2: energy transfer needs a passed cable check and a matched precharge ------------------------


def test_current_is_held_at_cable_check_limit_until_transfer_is_enabled() -> None:
    setup = make_station()
    station = setup.station
    assert station.request_close().allowed
    station.run(0.1)
    verdict = station.request_energy_transfer(setup.vehicle.battery_voltage())
    assert verdict.condition is Condition.CABLE_CHECK_NOT_PASSED
    station.request_current(100.0)
    station.run(0.2)
    assert station.applied_current_a <= station.interlock.config.cable_check_current_a


def test_energy_transfer_is_refused_on_precharge_mismatch() -> None:
    setup = make_station()
    station = setup.station
    with pytest.raises(InterlockRefusedError, match="PRECHARGE_MISMATCH"):
        # The vehicle reports 60 V more than the output was precharged to.
        class LyingVehicle:
            def battery_voltage(self) -> float:
                return setup.vehicle.battery_voltage() + 60.0 * (setup.plant.ev_contactor_closed)

            def max_voltage(self) -> float:
                return setup.vehicle.max_voltage()

            def soc_percent(self) -> float:
                return setup.vehicle.soc_percent()

            def precharge_done(self) -> None:
                setup.vehicle.precharge_done()

            def session_stopped(self) -> None:
                setup.vehicle.session_stopped()

        power_up(station, LyingVehicle(), RATED_V)
    assert station.interlock.cable_check_passed
    assert not station.interlock.energy_transfer
    assert first(station.events, "InterlockRefused").condition == "PRECHARGE_MISMATCH"  # type: ignore[attr-defined]


def test_power_up_orders_close_cable_check_precharge_transfer() -> None:
    setup = make_station()
    report = power_up(setup.station, setup.vehicle, RATED_V)
    order = [
        n
        for n in names(setup.station.events)
        if n in ("ContactorsClosing", "ContactorsClosed", "EnergyTransferEnabled")
    ]
    assert order == ["ContactorsClosing", "ContactorsClosed", "EnergyTransferEnabled"]
    enabled = first(setup.station.events, "EnergyTransferEnabled")
    assert report.cable_check.finished_at is not None and enabled.t >= report.cable_check.finished_at
    assert abs(enabled.link_v - enabled.battery_v) <= 20.0  # type: ignore[attr-defined]


# -- rule 3: open at (near) zero current, within the budget, on every trip condition --------------------


@pytest.mark.parametrize("state", ["B", "A", "E", "F"])
def test_cp_leaving_c_opens_within_100ms_at_zero_current(state: str) -> None:
    setup = make_station(f'[[at]]\nt = 0\ncp = "C"\n[[at]]\nt = 18.0\ncp = "{state}"\n')
    charging(setup, 150.0, seconds=0.5)
    setup.station.run(2.5)
    cp = [e for e in setup.station.events if isinstance(e, CpStateChanged) and e.t >= 16.9]
    assert cp and cp[0].state is CpState[state]
    opening, _ = assert_opened_in_order(setup, cp[0].t, "CP_NOT_C_OR_D")
    assert abs(opening.current_a) <= 1.0 and not opening.forced
    assert not setup.station.interlock.cable_check_passed


def test_diode_fault_while_charging_opens() -> None:
    setup = make_station('[[at]]\nt = 0\ncp = "C"\n[[at]]\nt = 18.0\nfault = "diode_missing"\n')
    setup.station.hw.control_pilot.set_duty(5.0)  # type: ignore[union-attr]
    charging(setup, 100.0, seconds=0.5)
    setup.station.run(2.0)
    lost = next(e for e in setup.station.events if isinstance(e, CpStateChanged) and e.state is None)
    assert_opened_in_order(setup, lost.t, "CP_NOT_C_OR_D")


def test_opening_is_forced_when_the_current_does_not_fall_in_time() -> None:
    setup = make_station(
        '[plant]\ncurrent_slew_a_per_s = 500\n[[at]]\nt = 0\ncp = "C"\n[[at]]\nt = 18.0\ncp = "B"\n'
    )
    charging(setup, 200.0, seconds=1.0)
    setup.station.run(2.0)
    t0 = next(e.t for e in setup.station.events if isinstance(e, CpStateChanged) and e.state is CpState.B)
    opening, _opened = assert_opened_in_order(setup, t0, "CP_NOT_C_OR_D")
    config = setup.station.interlock.config
    assert opening.forced and abs(opening.current_a) > 1.0
    assert opening.t - t0 == pytest.approx(config.release_deadline_s, abs=0.0015)


def test_emergency_stop_opens_within_budget() -> None:
    setup = make_station('[[at]]\nt = 0\ncp = "C"\n[[at]]\nt = 18.0\nestop = true\n')
    charging(setup, 120.0, seconds=0.5)
    setup.station.run(2.0)
    pressed = first(setup.station.events, "EmergencyStopChanged")
    assert_opened_in_order(setup, pressed.t, "EMERGENCY_STOP")
    assert setup.station.request_close().condition is Condition.EMERGENCY_STOP


@pytest.mark.parametrize(
    ("step", "condition", "clears"),
    [
        ("estop = true", Condition.EMERGENCY_STOP, "estop = false"),
        ('cp = "B"', Condition.CP_NOT_C_OR_D, 'cp = "C"'),
        ("insulation_ohm = 20000", Condition.ISOLATION_FAULT, 'cp = "B"'),  # the plug-in's fault: until B
    ],
)
def test_a_trip_is_live_only_while_its_condition_holds(step: str, condition: Condition, clears: str) -> None:
    """The interlock's record of the last trip stays (why the contactors opened); whether it still
    holds is live_trip, so a later session of the same process is not failed by an old trip."""
    setup = make_station(f'[[at]]\nt = 0\ncp = "C"\n[[at]]\nt = 18.0\n{step}\n[[at]]\nt = 25.0\n{clears}\n')
    charging(setup, 100.0, seconds=0.5)
    setup.station.run(24.0 - setup.clock.now())
    interlock = setup.station.interlock
    assert interlock.trip_condition is condition and interlock.live_trip is condition
    assert setup.station.request_close().condition is condition
    setup.station.run(1.5)  # the condition clears at 25 s
    setup.plant.ev_state = CpState.C  # (back in C where the step unplugged to B)
    setup.station.run(0.1)
    assert interlock.trip_condition is condition and interlock.live_trip is None
    assert setup.station.request_close().allowed


def test_contactor_stuck_stays_live_until_a_reset() -> None:
    setup = make_station('[[at]]\nt = 0\ncp = "C"\n[[at]]\nt = 1.0\nfault = "feedback_mismatch"\n')
    setup.station.run(1.5)
    interlock = setup.station.interlock
    assert interlock.live_trip is None  # latched while open: no trip, but no close either
    assert interlock.stuck is not None
    setup.plant.clear()
    setup.station.run(0.1)
    assert interlock.stuck is not None  # a repair is not a reset
    assert setup.station.reset().allowed and interlock.stuck is None


def test_a_stuck_contact_found_while_closed_is_a_live_trip_until_the_reset() -> None:
    setup = make_station('[[at]]\nt = 0\ncp = "C"\n[[at]]\nt = 17.0\nfault = "feedback_mismatch"\npoles = ["K1"]\n')
    charging(setup, 100.0, seconds=0.5)
    setup.station.run(1.0)
    interlock = setup.station.interlock
    assert interlock.trip_condition is Condition.CONTACTOR_STUCK and interlock.live_trip is Condition.CONTACTOR_STUCK
    setup.plant.clear()
    setup.station.run(0.5)
    assert interlock.live_trip is Condition.CONTACTOR_STUCK
    assert setup.station.reset().allowed and interlock.live_trip is None


def test_session_stop_opens_at_zero_current() -> None:
    setup = make_station()
    t0 = charging(setup, -80.0, seconds=0.5)  # discharging: the same rules apply
    setup.station.session_stop()
    setup.station.run(0.5)
    opening, _ = assert_opened_in_order(setup, t0, "SESSION_STOP")
    assert abs(opening.current_a) <= 1.0


# -- rule 5: isolation fault -> trip and stop action --------------------------------------------------


def test_isolation_fault_while_charging_trips_and_runs_the_stop_action(tmp_path: Path) -> None:
    marker = tmp_path / "stopped"
    exec_cmd = f"{sys.executable} -c \"open('{marker}', 'w').write('x')\""
    setup = make_station(
        '[[at]]\nt = 0\ncp = "C"\n[[at]]\nt = 18.0\ninsulation_ohm = 20000\n', on_fault_exec=exec_cmd
    )
    charging(setup, 100.0, seconds=0.5)
    setup.station.run(5.0)
    setup.station.finish()
    fault = first(setup.station.events, "IsolationFault")
    assert isinstance(fault, IsolationFault) and fault.resistance_ohm < 100_000.0
    assert fault.threshold_ohm == 100_000.0
    assert_opened_in_order(setup, fault.t, "ISOLATION_FAULT")
    ran = first(setup.station.events, "StopActionRun")
    assert isinstance(ran, StopActionRun) and ran.returncode == 0 and ran.command == exec_cmd
    assert marker.exists() and setup.station.session_stopped
    # The IMD settles in about a second: the fault shows while the true value falls, not instantly.
    assert 18.0 < fault.t < 21.0


def test_isolation_fault_in_the_cable_check_is_reported_after_ramp_down() -> None:
    setup = make_station('[plant]\ninsulation_ohm = 50000\n[[at]]\nt = 0\ncp = "C"\n')
    with pytest.raises(IsolationFaultError, match="below 100000 Ohm"):
        power_up(setup.station, setup.vehicle, RATED_V)
    events = setup.station.events
    fault = first(events, "IsolationFault")
    assert setup.station.measurement.cable_v < 60.0
    assert names(after(events, fault.t))[:3] == ["IsolationFault", "InterlockTripped", "StopActionRun"]
    setup.station.run(0.2)
    assert setup.station.interlock.phase is ContactorPhase.OPEN
    assert setup.station.request_close().condition is Condition.ISOLATION_FAULT


def test_isolation_fault_latch_clears_with_a_new_plug_in() -> None:
    setup = make_station('[plant]\ninsulation_ohm = 50000\n[[at]]\nt = 0\ncp = "C"\n')
    with pytest.raises(IsolationFaultError):
        power_up(setup.station, setup.vehicle, RATED_V)
    setup.plant.ev_state = CpState.A
    setup.station.run(0.1)
    setup.plant.ev_state = CpState.C
    setup.station.run(0.1)
    check_diode(setup.station)  # a new plug-in: its diode is checked anew (rule 1)
    assert setup.station.request_close().allowed


def test_2014_warning_lets_the_session_go_on() -> None:
    # 2014: fault below 100 Ohm/V x 920 V = 92 kOhm, warning below 460 kOhm.
    setup = make_station(
        '[plant]\ninsulation_ohm = 200000\n[[at]]\nt = 0\ncp = "C"\n', edition=Edition.IEC_61851_23_2014
    )
    report = power_up(setup.station, setup.vehicle, RATED_V)
    assert report.cable_check.result is not None
    assert report.cable_check.result.verdict is IsolationVerdict.WARNING
    assert "IsolationWarning" in names(setup.station.events)
    assert setup.station.interlock.energy_transfer


# -- rule 4: Contactor Stuck ---------------------------------------------------------------------------


def test_weld_latches_contactor_stuck_until_a_deliberate_reset() -> None:
    setup = make_station('[[at]]\nt = 0\ncp = "C"\n[[at]]\nt = 17.0\nfault = "weld"\npoles = ["K1"]\n')
    t0 = charging(setup, 100.0, seconds=1.0)
    setup.station.session_stop()
    setup.station.run(0.5)
    events = after(setup.station.events, t0)
    assert names(events)[:3] == ["InterlockTripped", "ContactorsOpening", "ContactorStuck"]
    stuck = first(events, "ContactorStuck")
    opening = first(events, "ContactorsOpening")
    config = setup.station.interlock.config
    assert isinstance(stuck, ContactorStuck) and stuck.pole is Pole.K1
    assert stuck.feedback_closed and not stuck.commanded_closed
    assert stuck.t - opening.t == pytest.approx(
        config.contactor_open_time_s + config.feedback_margin_s, abs=0.0015
    )
    assert "ContactorsOpened" not in names(events)
    # Latched: no close, no transfer, and no reset while the feedback still shows the weld.
    assert setup.station.request_close().condition is Condition.CONTACTOR_STUCK
    assert setup.station.reset().condition is Condition.CONTACTOR_STUCK
    setup.station.run(5.0)
    assert setup.station.request_close().condition is Condition.CONTACTOR_STUCK
    setup.plant.clear()  # the repair
    setup.station.run(0.1)
    assert setup.station.reset().allowed
    assert names(setup.station.events)[-1] == "InterlockReset"
    assert setup.station.request_close().allowed


def test_feedback_mismatch_while_open_latches_at_once() -> None:
    setup = make_station(
        '[[at]]\nt = 0\ncp = "C"\n[[at]]\nt = 1.0\nfault = "feedback_mismatch"\npoles = ["K2"]\n'
    )
    setup.station.run(2.0)
    stuck = first(setup.station.events, "ContactorStuck")
    assert isinstance(stuck, ContactorStuck) and stuck.pole is Pole.K2 and not stuck.commanded_closed
    assert stuck.t == pytest.approx(1.0, abs=0.0015)
    assert setup.station.request_close().condition is Condition.CONTACTOR_STUCK
    assert setup.station.reset().condition is Condition.CONTACTOR_STUCK
    setup.plant.clear()
    setup.station.run(0.01)
    assert setup.station.reset().allowed


def test_contact_stuck_open_latches_after_the_closing_time() -> None:
    setup = make_station('[[at]]\nt = 0\ncp = "C"\nfault = "stuck_open"\npoles = ["K2"]\n')
    t0 = setup.clock.now()
    assert setup.station.request_close().allowed
    setup.station.run(0.5)
    stuck = first(setup.station.events, "ContactorStuck")
    config = setup.station.interlock.config
    assert isinstance(stuck, ContactorStuck) and stuck.pole is Pole.K2 and stuck.commanded_closed
    assert stuck.t - t0 == pytest.approx(config.contactor_close_time_s + config.feedback_margin_s, abs=0.0015)
    assert not any(r.coil for r in setup.plant.relays.values())  # coils released
    assert not any(setup.plant.feedback().values())


def test_feedback_lost_while_closed_trips_through_zero_current() -> None:
    setup = make_station(
        '[[at]]\nt = 0\ncp = "C"\n[[at]]\nt = 18.0\nfault = "feedback_mismatch"\npoles = ["K1"]\n'
    )
    charging(setup, 100.0, seconds=0.5)
    setup.station.run(2.0)
    stuck = first(setup.station.events, "ContactorStuck")
    assert isinstance(stuck, ContactorStuck) and stuck.commanded_closed and not stuck.feedback_closed
    events = after(setup.station.events, stuck.t)
    assert names(events)[:3] == ["ContactorStuck", "InterlockTripped", "ContactorsOpening"]
    assert abs(first(events, "ContactorsOpening").current_a) <= 1.0  # type: ignore[attr-defined]
    assert not any(r.closed for r in setup.plant.relays.values())


def test_interlock_budget_follows_the_configured_contactor() -> None:
    slow = InterlockConfig(open_budget_s=0.100, contactor_open_time_s=0.060)
    assert slow.release_deadline_s == pytest.approx(0.035)
    setup = make_station(
        '[plant]\ncontactor_open_time_s = 0.06\ncurrent_slew_a_per_s = 500\n[[at]]\nt = 0\ncp = "C"\n'
        '[[at]]\nt = 18.0\ncp = "B"\n',
        interlock=slow,
    )
    charging(setup, 200.0, seconds=0.5)
    setup.station.run(2.0)
    t0 = next(e.t for e in setup.station.events if isinstance(e, CpStateChanged) and e.state is CpState.B)
    _, opened = assert_opened_in_order(setup, t0, "CP_NOT_C_OR_D")
    assert opened.t - t0 <= 0.100
