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
from v2gtool.hw.events import StopActionRun
from v2gtool.hw.interlock import ContactorPhase
from v2gtool.hw.isolation import SAFE_OUTPUT_V, Edition, IsolationProfile
from v2gtool.hw.station import StationConfig
from v2gtool.iso20.evcc import Evcc, EvccConfig
from v2gtool.iso20.events import MessageSent
from v2gtool.iso20.ports import CableCheckStatus
from v2gtool.iso20.secc import Secc, SeccConfig
from v2gtool.session import scenario as scenarios
from v2gtool.session.events import Event
from v2gtool.session.plant import CableCheckFinished, SimVehiclePort, StationCharger
from v2gtool.session.runner import run_sim

STATION = StationConfig(IsolationProfile(Edition.IEC_61851_23_2023, 920.0))


def charger_on(tmp_path: Path, scenario_text: str = "") -> StationCharger:
    path = tmp_path / "scenario.toml"
    path.write_text(scenario_text)
    scenario = scenarios.load(path)
    setup = sim_station(STATION, scenario.plant)
    setup.station.run(0.01)
    return StationCharger(setup, scenario.charger)


def pump(charger: StationCharger, duration: float) -> tuple[Evcc, Secc, list[Event]]:
    """One EVCC session against the SECC on *charger*, simulated time advancing by the EV's pace as in
    ``session run --sim``; the two engines and the SECC's events with the plant's, in order."""
    vehicle = SimVehiclePort(charger.setup, scenarios.VEHICLE_LIMITS)
    evcc = Evcc(EvccConfig(duration=duration), vehicle)
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
