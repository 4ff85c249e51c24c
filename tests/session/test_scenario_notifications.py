"""A scenario's ``[[at]]`` ``evse_notification``: what the SECC asks of the EV from that simulated time
on (EVSEStatus.EVSENotification, standards digest section 4.2), through the ports the OCPP bridge
uses: Pause and Terminate end the session with that SessionStop (the SECC's ``stop_request``),
ScheduleRenegotiation makes a Scheduled EV fetch a new schedule (the grid request's revision)."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from v2gtool.errors import ConfigError
from v2gtool.hw.errors import ScenarioError
from v2gtool.iso20.events import MessageReceived
from v2gtool.iso20.values import ControlMode
from v2gtool.session import scenario as scenarios
from v2gtool.session.runner import SessionResult, run_sim

# The loop starts about 18 s into the simulation (SLAC, cable check and precharge come first).
AT = 25.0


def load(tmp_path: Path, text: str, **overrides: object) -> scenarios.SessionScenario:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return scenarios.load(path, **overrides)


def notification(name: str, t: float = AT) -> str:
    return f'[[at]]\nt = {t}\nevse_notification = "{name}"\n'


def progress(result: SessionResult) -> list[str]:
    return [e.summary["ChargeProgress"] for e in result.events
            if isinstance(e, MessageReceived) and e.role == "SECC" and e.message == "PowerDeliveryReq"]


def test_notifications_are_read_in_time_order_beside_plant_steps(tmp_path: Path) -> None:
    scenario = load(tmp_path, notification("Pause", 50) + '[[at]]\nt = 40\ncp = "C"\nevse_notification = '
                    '"ScheduleRenegotiation"\n[[at]]\nt = 60\nsoc = 0.4\n')
    assert scenario.evse_notifications == ((40.0, "ScheduleRenegotiation"), (50.0, "Pause"))
    assert [step.t for step in scenario.plant.steps] == [0.0, 40.0, 50.0, 60.0]  # the plugged-in step first


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        (notification("pause"), ConfigError,
         r": \[\[at\]\] #1: evse_notification must be one of Pause, ScheduleRenegotiation, Terminate, got 'pause'$"),
        (notification("ServiceRenegotiation"), ConfigError, r"got 'ServiceRenegotiation'$"),
        ('[[at]]\nevse_notification = "Pause"\n', ScenarioError, r": \[\[at\]\] #1: needs t \(seconds\)$"),
        # a step of its own keeps its number in the plant's errors
        (notification("Pause") + '[[at]]\nt = 1\ncp = "X"\n', ScenarioError, r": \[\[at\]\] #2: cp must be one of"),
        ('[session]\ncontrol_mode = "dynamic"\n' + notification("ScheduleRenegotiation"), ConfigError,
         r": \[\[at\]\] t = 25 evse_notification 'ScheduleRenegotiation' needs the Scheduled control mode, "
         r"not DYNAMIC$"),
    ],
)
def test_a_bad_notification_is_one_line_naming_the_step(
    tmp_path: Path, text: str, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        load(tmp_path, text)


def test_schedule_renegotiation_is_refused_when_the_command_line_makes_the_mode_dynamic(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="needs the Scheduled control mode"):
        load(tmp_path, notification("ScheduleRenegotiation"), control_mode=ControlMode.DYNAMIC)


def test_the_stop_request_is_the_last_one_due_after_the_stations_own(tmp_path: Path) -> None:
    scenario = load(tmp_path, notification("Pause", 10) + notification("Terminate", 20))
    now = [5.0]
    wanted = scenario.stop_request(lambda: now[0])
    assert wanted is not None and wanted() is None
    now[0] = 10.0
    assert wanted() == "Pause"
    now[0] = 25.0
    assert wanted() == "Terminate"
    station = scenario.stop_request(lambda: 15.0, station=lambda: "Terminate")  # an OCPP remote stop
    assert station is not None and station() == "Terminate"
    assert scenarios.load(None).stop_request(lambda: 0.0) is None


def test_the_grid_request_is_renewed_at_each_schedule_renegotiation(tmp_path: Path) -> None:
    scenario = load(tmp_path, notification("ScheduleRenegotiation", 10) + notification("ScheduleRenegotiation", 20))
    now = [0.0]
    grid = scenario.grid(lambda: now[0])
    assert grid is not None and grid.power(0.0) is None  # no limit of its own in the Scheduled mode
    revisions = []
    for t in (0.0, 10.0, 15.0, 20.0):
        now[0] = t
        revisions.append(grid.revision)
    assert revisions == [0, 1, 1, 2]
    assert scenarios.load(None).grid(lambda: 0.0) is None
    dynamic = scenarios.load(None, control_mode=ControlMode.DYNAMIC, power=5000.0).grid(lambda: 0.0)
    assert dynamic is not None and dynamic.power(0.0) == 5000.0 and dynamic.revision == 0


@pytest.mark.parametrize("name", ["Pause", "Terminate"])
def test_a_scripted_pause_or_terminate_ends_the_session(tmp_path: Path, name: str) -> None:
    result = asyncio.run(run_sim(load(tmp_path, notification(name), duration=60.0)))
    assert result.ok, result.reason
    assert result.reason == result.secc_reason == f"SessionStop {name}"
    assert progress(result) == ["Start", "Stop"]
    stops = [e.t for e in result.events if isinstance(e, MessageReceived) and e.role == "SECC"
             and e.message == "PowerDeliveryReq" and e.summary["ChargeProgress"] == "Stop"]
    assert stops and AT <= stops[0] < AT + 1.0  # at the first loop after t, not after the 60 s duration
    sessions = [e.summary["ChargingSession"] for e in result.events
                if isinstance(e, MessageReceived) and e.role == "SECC" and e.message == "SessionStopReq"]
    assert sessions == [name]


def test_a_scripted_schedule_renegotiation_fetches_a_new_schedule(tmp_path: Path) -> None:
    result = asyncio.run(run_sim(load(tmp_path, notification("ScheduleRenegotiation"), duration=15.0)))
    assert result.ok, result.reason
    assert result.requests.count("ScheduleExchangeReq") == 2
    assert progress(result) == ["Start", "ScheduleRenegotiation", "Start", "Stop"]
    renegotiated = next(e.t for e in result.events if isinstance(e, MessageReceived) and e.role == "SECC"
                        and e.message == "PowerDeliveryReq" and e.summary["ChargeProgress"] == "ScheduleRenegotiation")
    assert AT <= renegotiated < AT + 1.0


def test_session_run_pauses_as_scripted(tmp_path: Path) -> None:
    path = tmp_path / "pause.toml"
    path.write_text("[session]\nduration = 60\n" + notification("Pause"))
    run = subprocess.run([sys.executable, "-m", "v2gtool", "--json", "session", "run", "--sim", "--scenario",
                          str(path), "--trace", str(tmp_path / "p.pcap")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    summary = [r for r in map(json.loads, run.stdout.splitlines()) if r["event"] == "SessionSummary"]
    assert [(s["ok"], s["reason"]) for s in summary] == [(True, "SessionStop Pause")]
