"""What ``ocpp-bridge`` tells a person: one whole line per CSMS refusal (a BootNotification, a
NotifyEVChargingNeeds, a TransactionEvent), never hard-wrapped in a pipe, without the ``ocpp``
package's own warnings or its reprs, and no traceback when a session is cut at the end of the stop
grace."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
from pathlib import Path

import pytest
import websockets
from rich.console import Console
from websockets.asyncio.server import ServerConnection, serve

from tests.ocpp.test_station_needs import LIMITS
from tests.ocpp.wire import until
from v2gtool.cli import ocpp_bridge
from v2gtool.cli.context import AppContext
from v2gtool.cli.ocpp_bridge import Stop, _printer
from v2gtool.config import Config
from v2gtool.iso20.events import EVChargingNeeds, PhaseChanged
from v2gtool.ocpp.outbox import Outbox
from v2gtool.ocpp.payloads import OCPP201
from v2gtool.ocpp.profile import ProfileSetpoint
from v2gtool.ocpp.station import BridgeConfig, CsmsRefused, StationBridge, TransactionEventDiscarded
from v2gtool.session.events import Event

URL = "ws://127.0.0.1:9/ocpp/A-STATION-WITH-A-RATHER-LONG-IDENTITY"
ACCEPTED = {"currentTime": "2026-01-01T00:00:00Z", "interval": 300, "status": "Accepted"}
NEEDS_REJECTED = {"status": "Rejected", "statusInfo": {"reasonCode": "NotEnabled", "additionalInfo": "no V2G here"}}


def _shown(*events: Event) -> tuple[str, str]:
    """(stdout, stderr) of the human printer, on 60-column consoles as a pipe would have them."""
    out, err = Console(record=True, width=60), Console(record=True, width=60)
    show = _printer(AppContext(Config(), False, False, out, err), as_json=False)
    for event in events:
        show(event)
    return out.export_text(), err.export_text()


def test_a_refused_boot_notification_is_one_line_on_stderr() -> None:
    out, err = _shown(
        CsmsRefused(t=0.0, url=URL, action="BootNotification", reason="Rejected, next BootNotification in 5 s")
    )
    assert out == ""
    assert err == f"CSMS {URL}: BootNotification refused: Rejected, next BootNotification in 5 s\n"


def test_long_lines_are_not_wrapped_and_csms_text_is_not_markup() -> None:
    reason = "InternalError: [bold]test\x1b[2J refusal"
    tx = "adce0afca8ae4afbbefd2576afbde916"
    out, err = _shown(
        TransactionEventDiscarded(t=0.0, url=URL, transaction_id=tx, seq_no=3, event_type="Updated", attempts=2,
                                  reason=reason),
    )  # fmt: skip
    assert out == "" and err.count("\n") == 1 and len(err) > 120
    assert err.endswith("given up after 2 refusals: InternalError: [bold]test\\x1b[2J refusal\n")


async def _refusing_csms(tmp: Path) -> list[Event]:
    """A station with a transaction and the EV's needs, against a CSMS that answers every
    TransactionEvent with a CALLERROR and the NotifyEVChargingNeeds with Rejected: the bridge's events
    once it gave the Started up and had the needs refused."""
    events: list[Event] = []

    async def handler(ws: ServerConnection) -> None:
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in ws:
                _, message_id, action, _payload = json.loads(raw)
                if action == "TransactionEvent":
                    await ws.send(json.dumps([4, message_id, "InternalError", "database down", {}]))
                    continue
                answer = {"BootNotification": ACCEPTED, "NotifyEVChargingNeeds": NEEDS_REJECTED}.get(action, {})
                await ws.send(json.dumps([3, message_id, answer]))

    async with serve(handler, "127.0.0.1", 0, subprotocols=[websockets.Subprotocol(OCPP201)]) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        config = BridgeConfig(url=f"ws://127.0.0.1:{port}/ocpp", station_id="REFUSED", subprotocols=(OCPP201,),
                              transaction_event_attempts=2, transaction_event_interval=0.05)  # fmt: skip
        bridge = StationBridge(config, Outbox(tmp / "outbox"), ProfileSetpoint(), events.append)
        bridge.on_event(PhaseChanged(t=0.0, role="SECC", phase="SessionSetup"))
        bridge.on_event(EVChargingNeeds(t=1.0, role="SECC", service="DC_BPT", control_mode="DYNAMIC", limits=LIMITS,
                                        departure_time=3600, min_soc=20))  # fmt: skip
        link = asyncio.create_task(bridge.run())
        try:
            assert await until(
                lambda: any(isinstance(e, CsmsRefused) and e.action == "NotifyEVChargingNeeds" for e in events), 10
            )
        finally:
            link.cancel()
            await asyncio.gather(link, return_exceptions=True)
    return events


def test_csms_refusals_are_the_bridges_own_lines_without_the_packages_warnings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        events = asyncio.run(_refusing_csms(tmp_path))
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    (discarded,) = [e for e in events if isinstance(e, TransactionEventDiscarded)]
    assert discarded.reason == "InternalError: database down"
    refused = [(e.action, e.reason) for e in events if isinstance(e, CsmsRefused)]
    assert refused == [
        ("TransactionEvent", "InternalError: database down"),
        ("TransactionEvent", "InternalError: database down"),
        ("NotifyEVChargingNeeds", "Rejected (NotEnabled: no V2G here)"),
    ]
    _, err = _shown(*events)
    lines = err.splitlines()
    assert lines[-1].endswith("NotifyEVChargingNeeds refused: Rejected (NotEnabled: no V2G here)")
    assert sum("TransactionEvent refused: InternalError: database down" in line for line in lines) == 2
    assert any(line.endswith("given up after 2 refusals: InternalError: database down") for line in lines)


def test_a_session_cut_at_the_end_of_the_stop_grace_is_no_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM before the session's loop (where it could be asked to stop): after the grace the
    stations are cancelled, and the run ends as stopped, not with asyncio's CancelledError."""
    monkeypatch.setattr(ocpp_bridge, "STOP_GRACE_S", 0.1)

    async def scenario() -> None:
        stop = Stop()
        stations: asyncio.Future[object] = asyncio.gather(asyncio.sleep(3600))
        stop.stop(signal.SIGTERM)
        await stop.wait(stations, lambda: False)

    asyncio.run(scenario())
