"""A lost CSMS never stops a session: the bridge queues on disk and replays in order later."""

from __future__ import annotations

import asyncio
import json
import socket
from pathlib import Path

from tests.ocpp.wire import until
from v2gtool.iso20.values import ControlMode
from v2gtool.ocpp.csms import Vpp, VppConfig
from v2gtool.ocpp.outbox import Outbox
from v2gtool.ocpp.profile import ProfileSetpoint
from v2gtool.ocpp.station import BridgeConfig, StationBridge
from v2gtool.session import scenario as scenarios
from v2gtool.session.runner import run_sim


def test_session_completes_without_csms_and_its_events_arrive_later_in_order(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nobody listens on (yet)
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def scenario() -> tuple[bool, int, int]:
        bridge = StationBridge(
            BridgeConfig(
                url=f"ws://127.0.0.1:{port}/ocpp", station_id="OFF", meter_interval=0.5, reconnect=(0.1, 0.2)
            ),
            Outbox(tmp_path / "outbox"),
            ProfileSetpoint(fallback=-3000.0),
        )
        link = asyncio.create_task(bridge.run())
        scenario = scenarios.load(None, control_mode=ControlMode.DYNAMIC, duration=3.0)
        result = await run_sim(scenario, speed=1.0, listener=bridge.on_event, grid=bridge.setpoint)
        queued = len(bridge.outbox)
        vpp = Vpp(VppConfig(tmp_path / "state"))
        server = await vpp.serve("127.0.0.1", port)
        try:
            await asyncio.sleep(0.05)
            await until(lambda: not len(bridge.outbox), 5.0)
        finally:
            link.cancel()
            await asyncio.gather(link, return_exceptions=True)
            server.close()
            vpp.log.close()
        return result.ok, queued, len(bridge.outbox)

    ok, queued, left = asyncio.run(scenario())
    assert ok  # the session never waited on the CSMS
    assert queued >= 5 and left == 0
    log = [json.loads(line) for line in (tmp_path / "state" / "transactions.jsonl").read_text().splitlines()]
    assert [e["seq_no"] for e in log] == list(range(queued))
    assert [log[0]["event_type"], log[-1]["event_type"]] == ["Started", "Ended"]
    assert all(e["offline"] for e in log)  # every one happened while the CSMS was away
