"""A bridge killed mid-session leaves its transaction open; restarted with the same outbox, it ends it
(TransactionEvent Ended, stoppedReason PowerLoss) behind that transaction's queued events and before
any new transaction, whether or not the CSMS already had the rest; and a simulated station that
reaches its CSMS sends its Started online."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.ocpp.test_interop_csms import Seen, start_csms
from v2gtool.iso20.events import PhaseChanged, PowerFlow
from v2gtool.ocpp.outbox import OpenTransaction, Outbox, OutboxError
from v2gtool.ocpp.payloads import OCPP201, read_meter_value
from v2gtool.ocpp.profile import ProfileSetpoint
from v2gtool.ocpp.station import BridgeConfig, StationBridge


def _killed_mid_session(directory: Path) -> list[dict[str, Any]]:
    """A station's session as far as its Updated with meter values, then the process gone (nothing
    ends the transaction); the TransactionEvents it queued."""
    config = BridgeConfig(url="ws://127.0.0.1:1/ocpp", station_id="KILLED", meter_interval=1.0)
    outbox = Outbox(directory)
    bridge = StationBridge(config, outbox, ProfileSetpoint())
    bridge.on_event(PhaseChanged(t=0.0, role="SECC", phase="SessionSetup"))
    bridge.on_event(PhaseChanged(t=0.1, role="SECC", phase="DC_ChargeLoop"))
    for t in (0.2, 3600.2):  # 10 kW for an hour
        bridge.on_event(PowerFlow(t=t, role="SECC", voltage=400.0, current=25.0, power=10000.0, soc=60.0))
    bridge.transaction.last_periodic = 0.0  # type: ignore[union-attr]  # the interval is up
    bridge.on_event(PowerFlow(t=3600.3, role="SECC", voltage=400.0, current=25.0, power=10000.0, soc=70.0))
    outbox.close()
    return [json.loads(line)["payload"] for line in (directory / "outbox.jsonl").read_text().splitlines()]


def _restarted(directory: Path) -> tuple[StationBridge, list[dict[str, Any]]]:
    bridge = StationBridge(BridgeConfig(url="ws://127.0.0.1:1/ocpp", station_id="KILLED"), Outbox(directory),
                           ProfileSetpoint())  # fmt: skip
    bridge.end_interrupted_transaction()
    queued = [json.loads(line)["payload"] for line in (directory / "outbox.jsonl").read_text().splitlines()]
    return bridge, queued


def test_a_restart_ends_the_transaction_the_killed_run_left_queued(tmp_path: Path) -> None:
    before = _killed_mid_session(tmp_path)
    assert [e["event_type"] for e in before] == ["Started", "Updated", "Updated"]
    tx = before[0]["transaction_info"]["transaction_id"]
    _, queued = _restarted(tmp_path)
    assert queued[:3] == before  # replayed first, as they were
    ended = queued[3]
    assert (ended["event_type"], ended["seq_no"], ended["trigger_reason"]) == ("Ended", 3, "AbnormalCondition")
    assert ended["transaction_info"] == {"transaction_id": tx, "charging_state": "Idle", "stopped_reason": "PowerLoss"}
    assert ended["offline"] is True
    reading, last = read_meter_value(ended["meter_value"][0]), read_meter_value(before[-1]["meter_value"][0])
    assert reading.imported_wh == last.imported_wh == pytest.approx(10000.0, abs=1.0)  # its registers
    assert reading.soc == 70.0 and reading.power == 0.0
    assert {sv["context"] for sv in ended["meter_value"][0]["sampled_value"]} == {"Transaction.End"}


def test_a_restart_ends_it_also_when_the_csms_had_every_event(tmp_path: Path) -> None:
    """Everything delivered before the kill: the outbox is empty, its acknowledged position still
    knows the transaction, its last seqNo and meter value."""
    before = _killed_mid_session(tmp_path)
    box = Outbox(tmp_path)
    while (record := box.peek()) is not None:
        box.ack(record)
    box.close()
    assert (tmp_path / "outbox.jsonl").read_bytes() == b""
    bridge, queued = _restarted(tmp_path)
    (ended,) = queued
    assert ended["event_type"] == "Ended" and ended["seq_no"] == 3
    assert ended["transaction_info"]["transaction_id"] == before[0]["transaction_info"]["transaction_id"]
    registers = read_meter_value(ended["meter_value"][0]).imported_wh
    assert registers == read_meter_value(before[-1]["meter_value"][0]).imported_wh
    assert bridge.transaction is None and bridge.outbox.open_transaction is None
    bridge.outbox.close()
    _, again = _restarted(tmp_path)  # ended once: a second restart has nothing to end
    assert again == queued


def test_an_ended_transaction_is_not_ended_again(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    box.put("TransactionEvent", {"event_type": "Started", "seq_no": 0, "transaction_info": {"transaction_id": "t"}})
    box.ack(box.peek())  # type: ignore[arg-type]
    assert box.open_transaction == OpenTransaction("t", 0)
    box.put("TransactionEvent", {"event_type": "Ended", "seq_no": 1, "transaction_info": {"transaction_id": "t"}})
    assert box.open_transaction is None
    box.close()
    _, queued = _restarted(tmp_path)
    assert [e["event_type"] for e in queued] == ["Ended"]


def test_an_acknowledged_position_of_an_earlier_version_still_reads(tmp_path: Path) -> None:
    (tmp_path / "outbox.acked").write_text("12")
    box = Outbox(tmp_path)
    assert box.acked == 12 and box.open_transaction is None
    assert box.put("MeterValues", {}).n == 13
    box.close()
    (tmp_path / "outbox.acked").write_text('{"n": 3, "open_transaction": {"transaction_id": 7}}')
    with pytest.raises(OutboxError, match=r"outbox\.acked .* is not an acknowledged position"):
        Outbox(tmp_path)


def test_a_killed_bridge_restarted_ends_its_transaction_before_the_next_one(tmp_path: Path) -> None:
    """The tester's case, with processes: ``ocpp-bridge --sim`` without a CSMS, SIGKILLed once it
    queued meter values; restarted against a CSMS with the same outbox and station id. The CSMS gets
    the old transaction's events, its Ended (PowerLoss), then the new transaction, whose Started is
    not flagged offline: the simulated station waited for its BootNotification to be accepted."""
    scenario = tmp_path / "park.toml"
    scenario.write_text('[session]\ncontrol_mode = "dynamic"\nduration = 600\npower = 3000\n')
    outbox = tmp_path / "outbox"

    def bridge(url: str) -> Any:
        return asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "v2gtool", "ocpp-bridge", "--sim", "--csms", url, "--station-id", "KILL"],
            *["--scenario", str(scenario), "--outbox-dir", str(outbox), "--meter-interval", "0.5"],
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )

    def queued() -> list[dict[str, Any]]:
        path = outbox / "KILL" / "outbox.jsonl"
        return [json.loads(line)["payload"] for line in path.read_text().splitlines()] if path.exists() else []

    async def run() -> Seen:
        first = await bridge("ws://127.0.0.1:1/ocpp")
        for _ in range(600):
            if any(p["trigger_reason"] == "MeterValuePeriodic" for p in queued()):
                break
            await asyncio.sleep(0.1)
        first.send_signal(signal.SIGKILL)
        await first.wait()
        seen = Seen()
        server, port = await start_csms(OCPP201, seen)
        second = await bridge(f"ws://127.0.0.1:{port}/ocpp")
        try:
            for _ in range(600):  # until the next transaction started
                if len({t["transaction_info"]["transaction_id"] for t in seen.transactions}) == 2:
                    break
                await asyncio.sleep(0.1)
        finally:
            second.send_signal(signal.SIGKILL)
            await second.wait()
            server.close()
        return seen

    seen = asyncio.run(run())
    ids = list(dict.fromkeys(t["transaction_info"]["transaction_id"] for t in seen.transactions))
    assert len(ids) == 2
    old = [t for t in seen.transactions if t["transaction_info"]["transaction_id"] == ids[0]]
    assert old[0]["event_type"] == "Started" and old[-1]["event_type"] == "Ended"
    assert [t["seq_no"] for t in old] == list(range(len(old)))
    assert old[-1]["transaction_info"]["stopped_reason"] == "PowerLoss"
    new_started = next(i for i, t in enumerate(seen.transactions) if t["transaction_info"]["transaction_id"] == ids[1])
    assert seen.transactions[new_started - 1] is old[-1]  # ended before the next one started
    assert seen.transactions[new_started]["event_type"] == "Started"
    assert "offline" not in seen.transactions[new_started]
