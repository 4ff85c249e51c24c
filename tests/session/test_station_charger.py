"""The SECC's port on the sim station (v2gtool.session.plant.StationCharger): the cable check runs in
the EV's polls, an idle station catches up coarsely, an old trip does not fail a later session, and
``session run --sim`` waits for and reports the stop action."""

from __future__ import annotations

import asyncio
import itertools
import sys
from pathlib import Path
from typing import Any

import pytest

from v2gtool import v2gtp
from v2gtool.hw.backends import sim_station
from v2gtool.hw.control import ThermalDerating
from v2gtool.hw.events import CurrentDerated, StopActionRun
from v2gtool.hw.interlock import ContactorPhase
from v2gtool.hw.isolation import SAFE_OUTPUT_V, Edition, IsolationProfile
from v2gtool.hw.station import StationConfig
from v2gtool.iso20 import messages
from v2gtool.iso20.evcc import Evcc, EvccConfig
from v2gtool.iso20.events import MessageSent
from v2gtool.iso20.ports import CableCheckStatus
from v2gtool.iso20.secc import Secc, SeccConfig
from v2gtool.iso20.values import ControlMode, to_float
from v2gtool.session import scenario as scenarios
from v2gtool.session.events import Event
from v2gtool.session.plant import CableCheckFinished, SimVehiclePort, StationCharger
from v2gtool.session.runner import run_sim

STATION = StationConfig(IsolationProfile(Edition.IEC_61851_23_2023, 920.0))


def charger_on(tmp_path: Path, scenario_text: str = "", station: StationConfig = STATION) -> StationCharger:
    path = tmp_path / "scenario.toml"
    path.write_text(scenario_text)
    scenario = scenarios.load(path)
    setup = sim_station(station, scenario.plant)
    setup.station.run(0.01)
    return StationCharger(setup, scenario.charger)


def pump(
    charger: StationCharger,
    duration: float,
    control_mode: ControlMode = ControlMode.SCHEDULED,
    responses: list[messages.Message] | None = None,
) -> tuple[Evcc, Secc, list[Event]]:
    """One EVCC session against the SECC on *charger*, simulated time advancing by the EV's pace as in
    ``session run --sim``; the two engines and the SECC's events with the plant's, in order. The SECC's
    responses, decoded, go to *responses* when given."""
    vehicle = SimVehiclePort(charger.setup, scenarios.VEHICLE_LIMITS)
    evcc = Evcc(EvccConfig(duration=duration, control_mode=control_mode), vehicle)
    secc = Secc(SeccConfig(), charger, charger.now())
    events: list[Event] = []
    outputs: list[Any] = evcc.start(charger.now())
    while not evcc.ended:
        request = next(o for o in outputs if isinstance(o, bytes))
        charger.advance(charger.now() + evcc.pace)
        evcc.sent(charger.now())
        answers = secc.receive(v2gtp.decode_frame(request), charger.now())
        events += [*charger.events, *(o for o in answers if isinstance(o, Event))]
        charger.events.clear()
        answer = next((o for o in answers if isinstance(o, bytes)), None)
        if answer is None:
            break
        if responses is not None:
            responses.append(messages.decode(v2gtp.decode_frame(answer)))
        outputs = evcc.receive(v2gtp.decode_frame(answer), charger.now() + 0.001)
    return evcc, secc, events


def half_a_second_apart(times: list[float]) -> bool:
    """The EV's DC_CableCheckReq cadence (its pace between polls)."""
    return all(b - a == pytest.approx(0.5, abs=0.002) for a, b in itertools.pairwise(times))


def cable_check_answers(events: list[Event]) -> list[tuple[float, str]]:
    return [
        (e.t, e.summary["EVSEProcessing"])
        for e in events
        if isinstance(e, MessageSent) and e.message == "DC_CableCheckRes"
    ]


# -- the cable check in the EV's polls (IEC 61851-23 CC.4.1, ISO 15118-20 EVSEProcessing) -------------------


def test_the_cable_check_answers_ongoing_every_poll_until_it_is_done(tmp_path: Path) -> None:
    evcc, _secc, events = pump(charger_on(tmp_path), duration=1.0)
    assert evcc.ok
    answers = cable_check_answers(events)
    (finished,) = [e for e in events if isinstance(e, CableCheckFinished)]
    assert finished.passed
    ongoing = [t for t, processing in answers if processing == "Ongoing"]
    assert [processing for _t, processing in answers][-1] == "Finished"
    assert len(ongoing) == len(answers) - 1 >= 20  # a check of ~15 s, polled every 0.5 s
    assert half_a_second_apart(ongoing)
    assert ongoing[-1] < finished.t <= answers[-1][0] <= finished.t + 0.5


def test_a_session_that_ends_in_its_cable_check_ramps_down_and_opens(tmp_path: Path) -> None:
    charger = charger_on(tmp_path)
    assert charger.cable_check(450.0) is CableCheckStatus.ONGOING
    charger.advance(charger.now() + 8.0)  # at the test voltage
    assert charger.station.measurement.cable_v > SAFE_OUTPUT_V
    charger.stop()
    charger.station.run(0.2)
    (finished,) = [e for e in charger.events if isinstance(e, CableCheckFinished)]
    assert not finished.passed and finished.failure == "interrupted"
    assert charger.station.interlock.phase is ContactorPhase.OPEN
    assert charger.station.measurement.cable_v < SAFE_OUTPUT_V
    assert charger.cable_check(450.0) is CableCheckStatus.ONGOING  # the next session checks anew


def test_session_run_sim_trace_and_events_agree_on_the_cable_check_polls() -> None:
    class Probe:
        epoch = 0.0

        def __init__(self) -> None:
            self.evcc_frames: list[float] = []

        def ethernet_frame(self, t: float, frame: bytes) -> None:
            pass

        def sdp(self, t: float, from_evcc: bool, datagram: bytes) -> None:
            pass

        def v2gtp(self, t: float, from_evcc: bool, data: bytes) -> None:
            if from_evcc:
                self.evcc_frames.append(t)

        def close(self, t: float) -> None:
            pass

    probe = Probe()
    result = asyncio.run(run_sim(scenarios.load(None, duration=1.0), trace=probe))
    assert result.ok
    sent = [e for e in result.events if isinstance(e, MessageSent) and e.role == "EVCC"]
    assert len(sent) == len(probe.evcc_frames)
    assert all(e.t == pytest.approx(t, abs=0.0011) for e, t in zip(sent, probe.evcc_frames, strict=True))
    polls = [e.t for e in sent if e.message == "DC_CableCheckReq"]
    assert len(polls) >= 20 and half_a_second_apart(polls)
    answers = cable_check_answers(result.events)
    assert [p for _t, p in answers] == ["Ongoing"] * (len(answers) - 1) + ["Finished"]


# -- an idle station catches up coarsely (the first request after minutes of quiet) ----------------------


def test_the_first_request_after_ten_idle_minutes_costs_a_few_hundred_ticks(tmp_path: Path) -> None:
    charger = charger_on(tmp_path)
    evcc, _secc, _events = pump(charger, duration=1.0)
    assert evcc.ok
    charger.station.run(1.0)  # the contactors open after the session
    ticks = [0]
    step = charger.station.step

    def counting() -> None:
        ticks[0] += 1
        step()

    charger.station.step = counting  # type: ignore[method-assign]
    charger.advance(charger.now() + 600.0)
    assert ticks[0] <= 650


# -- an old trip does not fail a later session ---------------------------------------------------------------


def test_an_emergency_stop_released_does_not_fail_the_next_session(tmp_path: Path) -> None:
    charger = charger_on(tmp_path, "[[at]]\nt = 24.0\nestop = true\n[[at]]\nt = 25.0\nestop = false\n")
    first, secc, _events = pump(charger, duration=60.0)
    assert not first.ok and "interlock tripped: EMERGENCY_STOP" in secc.end_reason
    charger.advance(26.0)
    assert charger.fault() is None  # released: the record stays, the fault does not
    second, secc, _events = pump(charger, duration=2.0)
    assert second.ok and secc.end_reason == "SessionStop Terminate", (second.end_reason, secc.end_reason)


def test_a_trip_that_ended_this_sessions_transfer_fails_it_though_its_condition_cleared(tmp_path: Path) -> None:
    """Pressed and released between two loop requests: the contactors opened, the session cannot go on."""
    charger = charger_on(tmp_path, "[[at]]\nt = 24.0\nestop = true\n[[at]]\nt = 24.1\nestop = false\n")
    evcc, secc, _events = pump(charger, duration=60.0)
    assert not evcc.ok and "interlock tripped: EMERGENCY_STOP" in secc.end_reason


# -- the thermal derating in DC_ChargeLoopRes -------------------------------------------------------------------

#: 95 degC ambient is above the inlet's 90 degC limit: the derating holds the current at its minimum,
#: 40 A, below the EV's request and the charger's declared 150 A (the rated limits of its
#: DC_ChargeParameterDiscoveryRes).
DERATED_A = 40.0
DERATED = StationConfig(
    IsolationProfile(Edition.IEC_61851_23_2023, 920.0),
    derating=ThermalDerating(rated_current_a=300.0, limit_c=90.0, min_current_a=DERATED_A),
)
HOT_INLET = "[plant]\nambient_c = 95\n"


def loop_responses(responses: list[messages.Message]) -> list[Any]:
    return [m.body for m in responses if m.name == "DC_ChargeLoopRes"]


def test_a_derated_station_reports_its_current_limit_achieved(tmp_path: Path) -> None:
    """The derating holds the charge current below what the EV asks for: the EVSE's present maximum
    current holds it, so DC_ChargeLoopRes says EVSECurrentLimitAchieved, and the declared limits of
    DC_ChargeParameterDiscoveryRes stay the rated ones."""
    charger = charger_on(tmp_path, HOT_INLET, DERATED)
    responses: list[messages.Message] = []
    evcc, _secc, _events = pump(charger, duration=5.0, responses=responses)
    assert evcc.ok
    assert any(isinstance(e, CurrentDerated) for e in charger.station.events)
    (discovery,) = [m.body for m in responses if m.name == "DC_ChargeParameterDiscoveryRes"]
    rated = discovery.BPT_DC_CPDResEnergyTransferMode.EVSEMaximumChargeCurrent
    assert to_float(rated) == scenarios.CHARGER_LIMITS.max_charge_current
    held = [r for r in loop_responses(responses) if to_float(r.EVSEPresentCurrent) > 0]
    assert len(held) >= 5
    assert all(to_float(r.EVSEPresentCurrent) == pytest.approx(DERATED_A, rel=1e-3) for r in held)
    assert all(r.EVSECurrentLimitAchieved for r in held)


def test_the_dynamic_mode_reports_the_derated_maximum_current(tmp_path: Path) -> None:
    """In the Dynamic mode the SECC tells the EV its maxima every loop: under the derating, the
    current it can deliver now, not the rated one."""
    charger = charger_on(tmp_path, HOT_INLET, DERATED)
    responses: list[messages.Message] = []
    evcc, _secc, _events = pump(charger, duration=5.0, control_mode=ControlMode.DYNAMIC, responses=responses)
    assert evcc.ok
    modes = [r.BPT_Dynamic_DC_CLResControlMode for r in loop_responses(responses)]
    assert len(modes) >= 5
    assert all(to_float(m.EVSEMaximumChargeCurrent) == pytest.approx(DERATED_A) for m in modes)
    assert all(to_float(m.EVSEMaximumDischargeCurrent) == pytest.approx(DERATED_A) for m in modes)
    assert all(to_float(m.EVSEMaximumChargePower) == scenarios.CHARGER_LIMITS.max_charge_power for m in modes)


# -- the stop action of session run --sim ----------------------------------------------------------------------


def test_session_run_sim_waits_for_the_stop_action_and_reports_it(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    command = f"{sys.executable} -c \"import time; time.sleep(0.5); open('{marker}', 'w').close()\""
    path = tmp_path / "iso.toml"
    path.write_text("[[at]]\nt = 20.0\ninsulation_ohm = 20000\n")
    station = StationConfig(IsolationProfile(Edition.IEC_61851_23_2023, 920.0), on_fault_exec=command)
    result = asyncio.run(run_sim(scenarios.load(path, duration=60.0), station=station))
    assert not result.ok
    (ran,) = [e for e in result.events if isinstance(e, StopActionRun)]
    assert ran.command == command and ran.returncode == 0
    assert marker.exists()  # it ran to its end before run_sim returned
