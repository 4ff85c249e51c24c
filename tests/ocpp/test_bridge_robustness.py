"""The station bridge against a stop signal and against CSMSs that refuse, garble or overreach."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.asyncio.server import ServerConnection, serve

from tests.ocpp.test_interop_csms import Seen, start_csms
from tests.ocpp.wire import until
from v2gtool.ocpp.outbox import Outbox
from v2gtool.ocpp.payloads import OCPP21, OCPP201
from v2gtool.ocpp.profile import ProfileSetpoint
from v2gtool.ocpp.station import BridgeConfig, ChargingProfileReceived, CsmsConnected, StationBridge

SCENARIO = """[session]
service = "DC_BPT"
control_mode = "dynamic"
direction = "discharge"
duration = 600
power = 3000
"""


async def _bridge_process(tmp: Path, url: str) -> asyncio.subprocess.Process:
    (tmp / "park.toml").write_text(SCENARIO)
    return await asyncio.create_subprocess_exec(
        *[sys.executable, "-m", "v2gtool", "ocpp-bridge", "--sim", "--csms", url, "--station-id", "STOP"],
        *["--scenario", str(tmp / "park.toml"), "--outbox-dir", str(tmp / "outbox"), "--meter-interval", "0.5"],
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


def _outbox(tmp: Path) -> list[dict[str, Any]]:
    path = tmp / "outbox" / "STOP" / "outbox.jsonl"
    return [json.loads(line)["payload"] for line in path.read_text().splitlines()] if path.exists() else []


def test_sigint_mid_session_queues_a_local_ended_and_exits_130(tmp_path: Path) -> None:
    """No CSMS: the interrupted session still ends (Terminate), its Ended is on disk, exit 130."""

    async def scenario() -> tuple[int, bytes]:
        bridge = await _bridge_process(tmp_path, "ws://127.0.0.1:1/ocpp")
        for _ in range(300):
            if any(p["trigger_reason"] == "MeterValuePeriodic" for p in _outbox(tmp_path)):
                break
            await asyncio.sleep(0.1)
        bridge.send_signal(signal.SIGINT)
        _, err = await asyncio.wait_for(bridge.communicate(), 30)
        assert bridge.returncode is not None
        return bridge.returncode, err

    code, err = asyncio.run(scenario())
    assert code == 130, err.decode()
    assert b"Traceback" not in err and b"Unhandled" not in err
    ended = _outbox(tmp_path)[-1]
    assert ended["event_type"] == "Ended" and ended["transaction_info"]["stopped_reason"] == "Local"
    assert ended["trigger_reason"] == "StopAuthorized"


def test_sigterm_mid_session_delivers_the_ended_to_a_connected_csms(tmp_path: Path) -> None:
    async def scenario() -> tuple[int, Seen]:
        seen = Seen()
        server, port = await start_csms(OCPP21, seen)
        try:
            bridge = await _bridge_process(tmp_path, f"ws://127.0.0.1:{port}/ocpp")
            await asyncio.wait_for(seen.charging.wait(), 60)
            bridge.send_signal(signal.SIGTERM)
            await asyncio.wait_for(bridge.communicate(), 30)
        finally:
            server.close()
        assert bridge.returncode is not None
        return bridge.returncode, seen

    code, seen = asyncio.run(scenario())
    assert code == 0  # a daemon stopped as asked, like serve and vpp serve
    ended = seen.transactions[-1]
    assert ended["event_type"] == "Ended" and ended["transaction_info"]["stopped_reason"] == "Local"
    assert _outbox(tmp_path) == []  # delivered, nothing left to replay


async def _boot_times(tmp: Path, mode: str, seconds: float) -> tuple[list[float], set[str]]:
    """When a station bridge sent its BootNotifications to a CSMS that answers them *mode*
    (Rejected with interval 0, or a response the schema refuses), and every action it sent."""
    boots: list[float] = []
    actions: set[str] = set()

    async def handler(ws: ServerConnection) -> None:
        async for raw in ws:
            _, message_id, action, _payload = json.loads(raw)
            actions.add(action)
            if action == "BootNotification":
                boots.append(time.monotonic())
                answer = {"currentTime": "2026-01-01T00:00:00Z", "interval": 0, "status": "Rejected"}
                await ws.send(json.dumps([3, message_id, answer if mode == "rejected" else {"foo": 1}]))

    async with serve(handler, "127.0.0.1", 0, subprotocols=[websockets.Subprotocol(OCPP201)]) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        config = BridgeConfig(url=f"ws://127.0.0.1:{port}/ocpp", station_id="BOOT", reconnect=(0.1, 30.0))
        bridge = StationBridge(config, Outbox(tmp / "outbox"), ProfileSetpoint())
        bridge.outbox.put("TransactionEvent", {"seq_no": 0})  # must not go out while not accepted
        link = asyncio.create_task(bridge.run())
        await asyncio.sleep(seconds)
        link.cancel()
        await asyncio.gather(link, return_exceptions=True)
    return boots, actions


@pytest.mark.parametrize("mode", ["rejected", "malformed"])
def test_a_refusing_csms_gets_bootnotifications_with_a_doubling_back_off(tmp_path: Path, mode: str) -> None:
    """OCPP 2.0.1 B03: interval 0 or a garbled answer is no reason to retry at once; the back-off
    only starts over once a BootNotification is accepted, and nothing else is sent before."""
    boots, actions = asyncio.run(_boot_times(tmp_path, mode, 3.3))
    gaps = [b - a for a, b in itertools.pairwise(boots)]
    assert 4 <= len(boots) <= 6, gaps  # 0.1 + 0.2 + 0.4 + 0.8 + 1.6 s
    assert all(later >= 1.6 * earlier for earlier, later in itertools.pairwise(gaps)), gaps
    assert actions == {"BootNotification"}


def _capping_profile(limit: float) -> dict[str, Any]:
    return {
        "id": 7,
        "stack_level": 0,
        "charging_profile_purpose": "TxDefaultProfile",
        "charging_profile_kind": "Relative",
        "charging_schedule": [
            {"id": 1, "charging_rate_unit": "W", "charging_schedule_period": [{"start_period": 0, "limit": limit}]}
        ],
    }


@pytest.mark.parametrize(
    ("limit", "power", "said"),
    [
        (-1e300, -22_000.0, "discharging limit 1e+300 W capped at this charger's 22000 W"),
        (1e6, 60_000.0, "charging limit 1e+06 W capped at this charger's 60000 W"),
        (-5000.0, -5000.0, ""),
    ],
)
@pytest.mark.parametrize("subprotocol", [OCPP201, OCPP21])
def test_a_limit_beyond_the_charger_is_capped_and_the_answer_says_so(
    tmp_path: Path, subprotocol: str, limit: float, power: float, said: str
) -> None:
    setpoint = ProfileSetpoint(max_charge=60_000.0, max_discharge=22_000.0)
    events: list[Any] = []
    bridge = StationBridge(BridgeConfig(url="ws://x", station_id="CAP"), Outbox(tmp_path), setpoint, events.append)
    assert bridge.set_charging_profile(1, _capping_profile(limit)) == ("Accepted", "LimitCapped", said)
    assert setpoint.power(0.0) == power and events[-1].power_now == power and events[-1].reason == said


async def _answers(tmp: Path, subprotocol: str, frames: list[str]) -> tuple[list[Any], list[Any]]:
    """What a station bridge answers to *frames* sent once its BootNotification is accepted, and
    the events it reported."""
    answers: list[Any] = []
    events: list[Any] = []
    done = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            await answer(ws)

    async def answer(ws: ServerConnection) -> None:
        async for raw in ws:
            frame = json.loads(raw)
            if frame[0] == 2 and frame[2] == "BootNotification":
                accepted = {"currentTime": "2026-01-01T00:00:00Z", "interval": 300, "status": "Accepted"}
                await ws.send(json.dumps([3, frame[1], accepted]))
                for out in frames:
                    await ws.send(out)
            elif frame[0] == 2:
                await ws.send(json.dumps([3, frame[1], {}]))
            else:
                answers.append(frame)
                if len(answers) == len(frames):
                    done.set()

    async with serve(handler, "127.0.0.1", 0, subprotocols=[websockets.Subprotocol(subprotocol)]) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        config = BridgeConfig(url=f"ws://127.0.0.1:{port}/ocpp", station_id="RPC", subprotocols=(subprotocol,))
        setpoint = ProfileSetpoint(max_charge=60_000.0, max_discharge=22_000.0)
        bridge = StationBridge(config, Outbox(tmp / "outbox"), setpoint, events.append)
        link = asyncio.create_task(bridge.run())
        try:
            await asyncio.wait_for(done.wait(), 10)
            # The station may answer the frames (its reader) before its sender, woken by the accepted
            # boot, reports the connection: wait for that too rather than race it.
            await until(lambda: any(isinstance(e, CsmsConnected) for e in events), 10)
        finally:
            link.cancel()
            await asyncio.gather(link, return_exceptions=True)
    return answers, events


def _profile_call(message_id: str, limit: float) -> str:
    period = {"startPeriod": 0, "limit": limit}
    schedule = {"id": 1, "chargingRateUnit": "W", "chargingSchedulePeriod": [period]}
    profile = {
        "id": 3,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": [schedule],
    }
    return json.dumps([2, message_id, "SetChargingProfile", {"evseId": 1, "chargingProfile": profile}])


@pytest.mark.parametrize("subprotocol", [OCPP201, OCPP21])
def test_every_csms_frame_gets_an_answer_and_no_traceback(
    tmp_path: Path, subprotocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    """OCPP-J part 4 4.2.3 / 4.3, on 2.1 as on 2.0.1: an unknown Action is NotImplemented, one the
    version defines but the station does not handle NotSupported, a frame that is no JSON or has no
    MessageId an RpcFrameworkError with MessageId "-1" (part 4 4.3), a required field missing an
    OccurrenceConstraintViolation; a capped profile is Accepted with its statusInfo."""
    frames = [
        "garbage",
        "[]",
        json.dumps([2, "x1", "FooBar", {}]),
        json.dumps([2, "x2", "Reset", {"type": "Immediate"}]),
        json.dumps([2, "x3", "SetChargingProfile", {"evseId": 1}]),
        _profile_call("x4", -1e300),
        json.dumps([7, "x5", {}]),
    ]
    with caplog.at_level(logging.DEBUG):
        answers, events = asyncio.run(_answers(tmp_path, subprotocol, frames))
    assert [a[:3] for a in answers[:6]] == [
        [4, "-1", "RpcFrameworkError"],
        [4, "-1", "RpcFrameworkError"],
        [4, "x1", "NotImplemented"],
        [4, "x2", "NotSupported"],
        [4, "x3", "OccurrenceConstraintViolation"],
        [3, "x4", answers[5][2]],
    ]
    assert answers[5][2]["status"] == "Accepted" and answers[5][2]["statusInfo"]["reasonCode"] == "LimitCapped"
    assert answers[6][:3] == [4, "x5", "MessageTypeNotSupported"]
    ours = [r for r in caplog.records if r.name.split(".")[0] in ("ocpp", "v2gtool")]
    assert not [r for r in ours if r.exc_info]  # one line each, no traceback
    refused = [e for e in events if type(e).__name__ == "FrameRejected"]
    assert len(refused) == 6 and any(isinstance(e, CsmsConnected) for e in events)


def _set_call(message_id: str, pid: int, stack: int, period: dict[str, Any], evse_id: int = 0) -> str:
    schedule = {"id": pid, "chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, **period}]}
    profile = {
        "id": pid,
        "stackLevel": stack,
        "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": [schedule],
    }
    return json.dumps([2, message_id, "SetChargingProfile", {"evseId": evse_id, "chargingProfile": profile}])


def test_an_unsupported_operation_mode_is_rejected_with_its_reason_code(tmp_path: Path) -> None:
    """OCPP 2.1: ExternalLimits is no mode this station implements (README: CentralSetpoint, Idle,
    ChargingOnly): Rejected, statusInfo reasonCode UnsupportedOpMode, nothing applied."""
    frames = [
        _set_call("m1", 1, 0, {"operationMode": "ExternalLimits", "limit": 6000.0, "dischargeLimit": -2500.0}),
        _set_call("m2", 2, 0, {"operationMode": "CentralSetpoint", "setpoint": -4000.0}),
    ]
    answers, events = asyncio.run(_answers(tmp_path, OCPP21, frames))
    assert answers[0][2]["status"] == "Rejected"
    assert answers[0][2]["statusInfo"]["reasonCode"] == "UnsupportedOpMode"
    assert "ExternalLimits" in answers[0][2]["statusInfo"]["additionalInfo"]
    assert answers[1][2] == {"status": "Accepted"}
    received = [e for e in events if isinstance(e, ChargingProfileReceived)]
    assert [(e.profile_id, e.accepted, e.power_now) for e in received] == [(1, False, None), (2, True, -4000.0)]


def test_clear_charging_profile_clears_only_what_matches_every_criterion(tmp_path: Path) -> None:
    """K10: evseId, chargingProfilePurpose and stackLevel all select; Unknown when nothing matches."""

    def clear(message_id: str, **criteria: Any) -> str:
        return json.dumps([2, message_id, "ClearChargingProfile", {"chargingProfileCriteria": criteria}])

    frames = [
        _set_call("s1", 1, 0, {"limit": -1000.0}),
        _set_call("s2", 2, 1, {"limit": -3000.0}),
        clear("c1", evseId=2, chargingProfilePurpose="TxDefaultProfile"),
        clear("c2", chargingProfilePurpose="TxDefaultProfile", stackLevel=1),
        clear("c3", chargingProfilePurpose="TxDefaultProfile", stackLevel=1),
        clear("c4", evseId=0, chargingProfilePurpose="TxDefaultProfile", stackLevel=0),
    ]
    answers, _ = asyncio.run(_answers(tmp_path, OCPP201, frames))
    assert [a[2]["status"] for a in answers] == ["Accepted", "Accepted", "Unknown", "Accepted", "Unknown", "Accepted"]
