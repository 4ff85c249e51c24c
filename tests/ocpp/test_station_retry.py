"""A TransactionEvent the CSMS answers with a CALLERROR is sent again, in order, and given up only after
MessageAttemptsTransactionEvent attempts (OCPP 2.0.1 E13.FR.01-04)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import websockets
from websockets.asyncio.server import ServerConnection, serve

from tests.ocpp.wire import until
from v2gtool.ocpp.outbox import Outbox
from v2gtool.ocpp.payloads import OCPP201
from v2gtool.ocpp.profile import ProfileSetpoint
from v2gtool.ocpp.station import BridgeConfig, CsmsRefused, StationBridge, TransactionEventDiscarded
from v2gtool.session.events import Event

ACCEPTED = {"currentTime": "2026-01-01T00:00:00Z", "interval": 300, "status": "Accepted"}
Refuse = Callable[[dict[str, Any], int], bool]  # (payload, how often this seqNo came before) -> CALLERROR?


def _event(seq: int, kind: str) -> dict[str, Any]:
    return {
        "event_type": kind,
        "timestamp": "2026-01-01T00:00:00.000Z",
        "trigger_reason": "CablePluggedIn",
        "seq_no": seq,
        "transaction_info": {"transaction_id": "tx-1"},
    }


async def _deliver(tmp: Path, refuse: Refuse, attempts: int, interval: float) -> tuple[list[Any], list[Event], int]:
    """Three queued TransactionEvents (Started, Updated, Ended) through a CSMS that answers *refuse*d
    ones with a CALLERROR: the (monotonic time, seqNo) of each one the CSMS received, the bridge's
    events, and what was left in the outbox."""
    received: list[tuple[float, int]] = []

    async def handler(ws: ServerConnection) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in ws:
                _, message_id, action, payload = json.loads(raw)
                if action == "TransactionEvent":
                    seq = payload["seqNo"]
                    before = sum(1 for _, s in received if s == seq)
                    received.append((time.monotonic(), seq))
                    if refuse(payload, before):
                        await ws.send(json.dumps([4, message_id, "InternalError", "database down", {}]))
                        continue
                await ws.send(json.dumps([3, message_id, ACCEPTED if action == "BootNotification" else {}]))

    events: list[Event] = []
    async with serve(handler, "127.0.0.1", 0, subprotocols=[websockets.Subprotocol(OCPP201)]) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        config = BridgeConfig(
            url=f"ws://127.0.0.1:{port}/ocpp",
            station_id="RETRY",
            subprotocols=(OCPP201,),
            transaction_event_attempts=attempts,
            transaction_event_interval=interval,
        )
        outbox = Outbox(tmp / "outbox")
        for seq, kind in enumerate(("Started", "Updated", "Ended")):
            outbox.put("TransactionEvent", _event(seq, kind))
        bridge = StationBridge(config, outbox, ProfileSetpoint(), events.append)
        link = asyncio.create_task(bridge.run())
        try:
            await until(lambda: not len(outbox), 10.0)
        finally:
            link.cancel()
            await asyncio.gather(link, return_exceptions=True)
    return received, events, len(outbox)


def test_a_refused_started_is_resent_after_growing_intervals_before_anything_behind_it(tmp_path: Path) -> None:
    """E13.FR.01-03: refused twice, the Started goes again after 1x then 2x the interval, and the
    Updated and Ended behind it wait for it: nothing is dropped, the order holds."""
    received, events, left = asyncio.run(
        _deliver(tmp_path, lambda p, before: p["eventType"] == "Started" and before < 2, 3, 0.3)
    )
    assert [seq for _, seq in received] == [0, 0, 0, 1, 2]
    gaps = [received[1][0] - received[0][0], received[2][0] - received[1][0]]
    # At least 1x and 2x the interval (the wait and its growth); the upper bounds only keep a retry
    # from being arbitrarily late, with room (x3) for a loaded machine's scheduling delays.
    assert 0.3 <= gaps[0] < 0.9 and 0.6 <= gaps[1] < 1.8, gaps
    assert left == 0
    assert sum(isinstance(e, CsmsRefused) for e in events) == 2
    assert not any(isinstance(e, TransactionEventDiscarded) for e in events)


def test_an_event_refused_every_attempt_is_given_up_with_an_event_and_the_rest_goes_on(tmp_path: Path) -> None:
    """E13.FR.04: after MessageAttemptsTransactionEvent refusals the event is discarded, said so, and
    the events behind it are delivered."""
    received, events, left = asyncio.run(_deliver(tmp_path, lambda p, _: p["eventType"] == "Updated", 3, 0.05))
    assert [seq for _, seq in received] == [0, 1, 1, 1, 2]
    assert left == 0
    discarded = [e for e in events if isinstance(e, TransactionEventDiscarded)]
    assert len(discarded) == 1
    assert (discarded[0].seq_no, discarded[0].event_type, discarded[0].attempts) == (1, "Updated", 3)
    assert discarded[0].transaction_id == "tx-1" and "database down" in discarded[0].reason


def test_a_refused_event_waiting_for_its_retry_stays_on_disk(tmp_path: Path) -> None:
    """Durability holds while an event waits for its retry: it is still the outbox's first record, on
    disk, so a station that stops meanwhile sends it again at its next start."""

    async def scenario() -> list[int]:
        refused = asyncio.Event()

        async def handler(ws: ServerConnection) -> None:
            with contextlib.suppress(websockets.ConnectionClosed):
                async for raw in ws:
                    _, message_id, action, _payload = json.loads(raw)
                    if action == "TransactionEvent":
                        await ws.send(json.dumps([4, message_id, "InternalError", "", {}]))
                        refused.set()
                    else:
                        await ws.send(json.dumps([3, message_id, ACCEPTED if action == "BootNotification" else {}]))

        async with serve(handler, "127.0.0.1", 0, subprotocols=[websockets.Subprotocol(OCPP201)]) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            config = BridgeConfig(url=f"ws://127.0.0.1:{port}/ocpp", station_id="DISK", transaction_event_interval=60)
            outbox = Outbox(tmp_path / "outbox")
            outbox.put("TransactionEvent", _event(0, "Started"))
            bridge = StationBridge(config, outbox, ProfileSetpoint())
            link = asyncio.create_task(bridge.run())
            await asyncio.wait_for(refused.wait(), 10)
            await asyncio.sleep(0.2)
            link.cancel()
            await asyncio.gather(link, return_exceptions=True)
            outbox.close()
        again = Outbox(tmp_path / "outbox")
        return [record.payload["seq_no"] for record in [again.peek()] if record is not None]

    assert asyncio.run(scenario()) == [0]
