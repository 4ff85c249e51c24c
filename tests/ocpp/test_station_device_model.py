"""The station bridge's device model and remote control against a raw CSMS: GetVariables (B06) and
SetVariables (B05) over the variables it runs with, TriggerMessage (F06), RequestStartTransaction
(F01) answered, not refused with a CALLERROR."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.asyncio.server import ServerConnection, serve

from tests.ocpp.wire import until
from v2gtool.iso20.events import PhaseChanged, PowerFlow
from v2gtool.ocpp.outbox import Outbox
from v2gtool.ocpp.payloads import OCPP21, OCPP201
from v2gtool.ocpp.profile import ProfileSetpoint
from v2gtool.ocpp.station import BridgeConfig, StationBridge, TransactionEventDiscarded, VariableSet
from v2gtool.session.events import Event

NOW = "2026-01-01T00:00:00Z"


@dataclass
class RawCsms:
    """A CSMS that answers every CALL of the station (BootNotification with *boot*, a TransactionEvent
    with a CALLERROR when *refuse_transactions*), logs what arrives, and sends CALLs of its own."""

    boot: str = "Accepted"
    refuse_transactions: bool = False
    calls: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)  # (monotonic, action, payload)
    log: list[str] = field(default_factory=list)  # "call Action" / "answer MessageId", in arrival order
    booted: asyncio.Event = field(default_factory=asyncio.Event)
    _ws: ServerConnection | None = None
    _pending: dict[str, asyncio.Future[list[Any]]] = field(default_factory=dict)

    async def handler(self, ws: ServerConnection) -> None:
        self._ws = ws
        with contextlib.suppress(websockets.ConnectionClosed):
            async for raw in ws:
                await self._receive(ws, json.loads(raw))

    async def _receive(self, ws: ServerConnection, frame: list[Any]) -> None:
        if frame[0] != 2:
            self.log.append(f"answer {frame[1]}")
            self._pending.pop(frame[1]).set_result(frame)
            return
        _, message_id, action, payload = frame
        self.calls.append((time.monotonic(), action, payload))
        self.log.append(f"call {action}")
        if action == "TransactionEvent" and self.refuse_transactions:
            await ws.send(json.dumps([4, message_id, "InternalError", "database down", {}]))
            return
        answer: dict[str, Any] = {}
        if action == "BootNotification":
            answer = {"currentTime": NOW, "interval": 300 if self.boot == "Accepted" else 60, "status": self.boot}
        elif action == "Heartbeat":
            answer = {"currentTime": NOW}
        await ws.send(json.dumps([3, message_id, answer]))
        if action == "BootNotification":
            self.booted.set()

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """The payload of the station's CALLRESULT (a CALLERROR fails the test)."""
        assert self._ws is not None
        message_id = uuid.uuid4().hex
        self._pending[message_id] = asyncio.get_running_loop().create_future()
        await self._ws.send(json.dumps([2, message_id, action, payload]))
        frame = await asyncio.wait_for(self._pending[message_id], 5)
        assert frame[0] == 3, frame
        result: dict[str, Any] = frame[2]
        return result

    def sent(self, action: str) -> list[dict[str, Any]]:
        return [payload for _, action_, payload in self.calls if action_ == action]


@contextlib.asynccontextmanager
async def _station(
    tmp: Path, subprotocol: str = OCPP201, csms: RawCsms | None = None, **config: Any
) -> AsyncIterator[tuple[RawCsms, StationBridge, list[Event]]]:
    """A station bridge connected to a raw CSMS, once its (first) BootNotification was answered."""
    csms = csms or RawCsms()
    events: list[Event] = []
    async with serve(csms.handler, "127.0.0.1", 0, subprotocols=[websockets.Subprotocol(subprotocol)]) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        settings = BridgeConfig(
            url=f"ws://127.0.0.1:{port}/ocpp", station_id="DM", subprotocols=(subprotocol,), **config
        )
        bridge = StationBridge(settings, Outbox(tmp / "outbox"), ProfileSetpoint(), events.append)
        link = asyncio.create_task(bridge.run())
        try:
            await asyncio.wait_for(csms.booted.wait(), 10)
            if csms.boot == "Accepted":
                assert await until(lambda: bridge.connected and bool(csms.sent("StatusNotification")), 5)
            yield csms, bridge, events
        finally:
            link.cancel()
            await asyncio.gather(link, return_exceptions=True)


def _item(component: str, variable: str, value: str | None = None, **extra: Any) -> dict[str, Any]:
    """A GetVariableData, or a SetVariableData with *value* (camelCase, as on the wire); *extra*:
    attributeType, a component instance (``ci``) or evse, a variable instance (``vi``)."""
    item: dict[str, Any] = {"component": {"name": component}, "variable": {"name": variable}}
    if "ci" in extra:
        item["component"]["instance"] = extra.pop("ci")
    if "evse" in extra:
        item["component"]["evse"] = extra.pop("evse")
    if "vi" in extra:
        item["variable"]["instance"] = extra.pop("vi")
    if value is not None:
        item["attributeValue"] = value
    return item | extra


async def _get(csms: RawCsms, *items: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = (await csms.call("GetVariables", {"getVariableData": list(items)}))[
        "getVariableResult"
    ]
    return result


async def _set(csms: RawCsms, *items: dict[str, Any]) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = (await csms.call("SetVariables", {"setVariableData": list(items)}))[
        "setVariableResult"
    ]
    return result


def _statuses(results: list[dict[str, Any]]) -> list[tuple[str, str | None]]:
    return [(r["attributeStatus"], r.get("attributeStatusInfo", {}).get("reasonCode")) for r in results]


@pytest.mark.parametrize("subprotocol", [OCPP201, OCPP21])
def test_get_variables_reads_what_the_station_runs_with_and_says_what_it_lacks(
    tmp_path: Path, subprotocol: str
) -> None:
    """B06: one result per item, in order, naming the component and variable as asked; the heartbeat
    interval is the accepted BootNotification's, the rest the bridge's configuration."""
    items = [
        _item("OCPPCommCtrlr", "HeartbeatInterval"),
        _item("ocppcommctrlr", "HEARTBEATINTERVAL", attributeType="Actual"),  # names are case-insensitive
        _item("OCPPCommCtrlr", "MessageAttempts", vi="TransactionEvent"),
        _item("OCPPCommCtrlr", "MessageAttemptInterval", vi="TransactionEvent"),
        _item("OCPPCommCtrlr", "MessageTimeout", vi="Default"),
        _item("SampledDataCtrlr", "TxUpdatedInterval"),
        _item("ChargingStation", "VendorName"),
        _item("ChargingStation", "Model"),
        _item("FooCtrlr", "HeartbeatInterval"),
        _item("OCPPCommCtrlr", "HeartbeatInterval", ci="Other"),
        _item("OCPPCommCtrlr", "HeartbeatInterval", evse={"id": 1}),
        _item("OCPPCommCtrlr", "Foo"),
        _item("OCPPCommCtrlr", "MessageAttempts"),  # it has the TransactionEvent instance only
        _item("OCPPCommCtrlr", "HeartbeatInterval", attributeType="MaxSet"),
    ]

    async def scenario() -> list[dict[str, Any]]:
        async with _station(tmp_path, subprotocol, transaction_event_attempts=4, meter_interval=0.5) as (csms, _, _):
            return await _get(csms, *items)

    results = asyncio.run(scenario())
    assert [(r["attributeStatus"], r.get("attributeValue")) for r in results] == [
        ("Accepted", "300"),
        ("Accepted", "300"),
        ("Accepted", "4"),
        ("Accepted", "60"),
        ("Accepted", "30"),
        ("Accepted", "0.5"),
        ("Accepted", "v2gtool"),
        ("Accepted", "v2gtool-secc"),
        ("UnknownComponent", None),
        ("UnknownComponent", None),
        ("UnknownComponent", None),
        ("UnknownVariable", None),
        ("UnknownVariable", None),
        ("NotSupportedAttributeType", None),
    ]
    assert [(r["component"], r["variable"]) for r in results] == [(i["component"], i["variable"]) for i in items]
    assert [r["attributeType"] for r in results] == ["Actual"] * 13 + ["MaxSet"]


@pytest.mark.parametrize("subprotocol", [OCPP201, OCPP21])
def test_set_variables_validates_each_value_and_applies_the_accepted_ones(tmp_path: Path, subprotocol: str) -> None:
    """B05: an accepted value is what the bridge runs with from then on (and reported); a value that
    is no integer (B05.FR.07) or out of bounds is Rejected, as is a ReadOnly variable (B05.FR.08),
    and nothing of them is applied."""
    items = [
        _item("OCPPCommCtrlr", "MessageAttempts", "7", vi="TransactionEvent"),
        _item("OCPPCommCtrlr", "MessageAttemptInterval", " 2 ", vi="TransactionEvent"),
        _item("SampledDataCtrlr", "TxUpdatedInterval", "5", attributeType="Actual"),
        _item("OCPPCommCtrlr", "HeartbeatInterval", "abc"),
        _item("OCPPCommCtrlr", "HeartbeatInterval", "1.5"),
        _item("OCPPCommCtrlr", "HeartbeatInterval", "0"),
        _item("OCPPCommCtrlr", "HeartbeatInterval", "86401"),
        _item("OCPPCommCtrlr", "HeartbeatInterval", "1_000"),
        _item("ChargingStation", "Model", "other"),
        _item("OCPPCommCtrlr", "MessageTimeout", "10", vi="Default"),
        _item("OCPPCommCtrlr", "HeartbeatInterval", "60", attributeType="Target"),
        _item("BarCtrlr", "HeartbeatInterval", "60"),
        _item("OCPPCommCtrlr", "Bar", "60"),
    ]

    async def scenario() -> tuple[list[dict[str, Any]], list[dict[str, Any]], StationBridge, list[Event]]:
        async with _station(tmp_path, subprotocol) as (csms, bridge, events):
            results = await _set(csms, *items)
            read = await _get(
                csms,
                _item("OCPPCommCtrlr", "MessageAttempts", vi="TransactionEvent"),
                _item("OCPPCommCtrlr", "HeartbeatInterval"),
                _item("ChargingStation", "Model"),
            )
            return results, read, bridge, events

    results, read, bridge, events = asyncio.run(scenario())
    assert _statuses(results) == [
        ("Accepted", None),
        ("Accepted", None),
        ("Accepted", None),
        ("Rejected", "InvalidValue"),
        ("Rejected", "InvalidValue"),
        ("Rejected", "ValueOutOfRange"),
        ("Rejected", "ValueOutOfRange"),
        ("Rejected", "InvalidValue"),
        ("Rejected", "ReadOnly"),
        ("Rejected", "ReadOnly"),
        ("NotSupportedAttributeType", None),
        ("UnknownComponent", None),
        ("UnknownVariable", None),
    ]
    assert all("attributeValue" not in r for r in results)
    assert [r["attributeType"] for r in results] == ["Actual"] * 10 + ["Target", "Actual", "Actual"]
    assert (bridge.config.transaction_event_attempts, bridge.config.transaction_event_interval) == (7, 2)
    assert bridge.config.meter_interval == 5 and bridge.config.model == "v2gtool-secc"
    assert [r["attributeValue"] for r in read] == ["7", "300", "v2gtool-secc"]
    changed = [(e.component, e.variable, e.value) for e in events if isinstance(e, VariableSet)]
    assert changed == [
        ("OCPPCommCtrlr", "MessageAttempts", "7"),
        ("OCPPCommCtrlr", "MessageAttemptInterval", "2"),
        ("SampledDataCtrlr", "TxUpdatedInterval", "5"),
    ]


def test_a_heartbeat_interval_set_paces_the_heartbeats_at_once(tmp_path: Path) -> None:
    """OCPPCommCtrlr.HeartbeatInterval = 1 after a BootNotification that said 300: a Heartbeat every
    second from then on, not in five minutes. Three beats are waited for (however long a loaded
    machine takes); none comes sooner than the interval, and each within a few seconds, far from the
    300 s it would take without the change."""

    async def scenario() -> tuple[list[dict[str, Any]], list[float]]:
        async with _station(tmp_path) as (csms, _, _):
            results = await _set(csms, _item("OCPPCommCtrlr", "HeartbeatInterval", "1"))
            since = time.monotonic()
            assert await until(lambda: len(csms.sent("Heartbeat")) >= 3, 20.0)
            return results, [t - since for t, action, _ in csms.calls if action == "Heartbeat"]

    results, beats = asyncio.run(scenario())
    assert _statuses(results) == [("Accepted", None)]
    assert 0.5 <= beats[0] <= 4.0, beats
    assert all(0.8 <= later - earlier <= 4.0 for earlier, later in itertools.pairwise(beats)), beats


def test_set_message_attempts_govern_the_retries_of_a_refused_transaction_event(tmp_path: Path) -> None:
    """MessageAttempts / MessageAttemptInterval (TransactionEvent) set to 2 and 1 s (the bridge
    started with 3 and 60 s): a refused Started goes again after 1 s, and is given up after its
    second refusal (E13.FR.01-04)."""

    async def scenario() -> tuple[list[float], list[Event]]:
        csms = RawCsms(refuse_transactions=True)
        async with _station(tmp_path, csms=csms) as (_, bridge, events):
            results = await _set(
                csms,
                _item("OCPPCommCtrlr", "MessageAttempts", "2", vi="TransactionEvent"),
                _item("OCPPCommCtrlr", "MessageAttemptInterval", "1", vi="TransactionEvent"),
            )
            assert _statuses(results) == [("Accepted", None)] * 2
            bridge.on_event(PhaseChanged(t=0.0, role="SECC", phase="SessionSetup"))
            assert await until(lambda: any(isinstance(e, TransactionEventDiscarded) for e in events), 20)
            return [t for t, action, _ in csms.calls if action == "TransactionEvent"], events

    sent, events = asyncio.run(scenario())
    assert len(sent) == 2 and 0.9 <= sent[1] - sent[0] <= 4.5, sent  # 1 s (x3 for load), not the 60 s it had
    discarded = [e for e in events if isinstance(e, TransactionEventDiscarded)]
    assert [(e.event_type, e.attempts) for e in discarded] == [("Started", 2)]


def test_a_tx_updated_interval_set_paces_the_periodic_meter_values(tmp_path: Path) -> None:
    """SampledDataCtrlr.TxUpdatedInterval = 1 (the bridge started with 10 s): power flowing for 1.5 s
    gives one TransactionEvent MeterValuePeriodic (no more than one per second of wall clock it really
    took, on a loaded machine more than 1.5 s)."""

    async def scenario() -> tuple[list[dict[str, Any]], float]:
        async with _station(tmp_path) as (csms, bridge, _):
            assert _statuses(await _set(csms, _item("SampledDataCtrlr", "TxUpdatedInterval", "1"))) == [
                ("Accepted", None)
            ]
            started = time.time()
            bridge.on_event(PhaseChanged(t=0.0, role="SECC", phase="SessionSetup"))
            for step in range(15):
                bridge.on_event(PowerFlow(t=step * 0.1, role="SECC", voltage=400.0, current=25.0, power=10_000.0))
                await asyncio.sleep(0.1)
            took = time.time() - started
            assert await until(lambda: not len(bridge.outbox), 20)
            return csms.sent("TransactionEvent"), took

    sent, took = asyncio.run(scenario())
    reasons = [p["triggerReason"] for p in sent]
    assert reasons[0] == "CablePluggedIn" and set(reasons[1:]) == {"MeterValuePeriodic"}
    assert 1 <= len(reasons) - 1 <= int(took), (reasons, took)


@pytest.mark.parametrize("subprotocol", [OCPP201, OCPP21])
def test_trigger_message_sends_what_it_accepts_right_after_the_answer(tmp_path: Path, subprotocol: str) -> None:
    """F06: Heartbeat and StatusNotification at once, after the answer (F06.FR.04); MeterValues and
    TransactionEvent only while a transaction runs (context and triggerReason Trigger); a
    BootNotification is Rejected once accepted (F06.FR.17); another EVSE is Rejected; a message this
    station does not send on request is NotImplemented."""

    async def trigger(csms: RawCsms, message: str, **evse: int) -> tuple[str, str | None]:
        payload: dict[str, Any] = {"requestedMessage": message} | ({"evse": evse} if evse else {})
        answer = await csms.call("TriggerMessage", payload)
        return answer["status"], answer.get("statusInfo", {}).get("reasonCode")

    async def sent_after(csms: RawCsms, action: str, before: int) -> dict[str, Any]:
        assert await until(lambda: len(csms.sent(action)) > before, 1.0), action
        return csms.sent(action)[-1]

    async def scenario() -> None:
        async with _station(tmp_path, subprotocol) as (csms, bridge, _):
            log_at = len(csms.log)
            assert await trigger(csms, "Heartbeat") == ("Accepted", None)
            await sent_after(csms, "Heartbeat", 0)
            assert csms.log[log_at].startswith("answer") and csms.log[log_at + 1] == "call Heartbeat"

            assert await trigger(csms, "StatusNotification", id=1, connectorId=1) == ("Accepted", None)
            status = await sent_after(csms, "StatusNotification", 1)
            assert (status["connectorStatus"], status["evseId"], status["connectorId"]) == ("Available", 1, 1)

            assert await trigger(csms, "StatusNotification", id=2) == ("Rejected", "UnknownEvse")
            assert await trigger(csms, "StatusNotification", id=1, connectorId=2) == ("Rejected", "UnknownConnectorId")
            assert await trigger(csms, "MeterValues") == ("Rejected", "TxNotFound")
            assert await trigger(csms, "TransactionEvent", id=1) == ("Rejected", "TxNotFound")
            assert await trigger(csms, "BootNotification") == ("Rejected", "Unspecified")
            assert await trigger(csms, "LogStatusNotification") == ("NotImplemented", "UnsupportedRequest")
            assert await trigger(csms, "FirmwareStatusNotification") == ("NotImplemented", "UnsupportedRequest")

            bridge.on_event(PhaseChanged(t=0.0, role="SECC", phase="SessionSetup"))
            bridge.on_event(PowerFlow(t=0.0, role="SECC", voltage=400.0, current=25.0, power=10_000.0))
            started = await sent_after(csms, "TransactionEvent", 0)
            tx = started["transactionInfo"]["transactionId"]

            assert await trigger(csms, "TransactionEvent", id=1) == ("Accepted", None)
            event = await sent_after(csms, "TransactionEvent", 1)
            assert (event["eventType"], event["triggerReason"], event["seqNo"]) == ("Updated", "Trigger", 1)
            assert event["transactionInfo"]["transactionId"] == tx
            assert {s["context"] for s in event["meterValue"][0]["sampledValue"]} == {"Trigger"}

            assert await trigger(csms, "MeterValues") == ("Accepted", None)
            meter = await sent_after(csms, "MeterValues", 0)
            assert meter["evseId"] == 1 and {s["context"] for s in meter["meterValue"][0]["sampledValue"]} == {
                "Trigger"
            }
            assert len(csms.sent("BootNotification")) == 1

    asyncio.run(scenario())


def test_a_boot_notification_triggered_while_pending_goes_at_once(tmp_path: Path) -> None:
    """B02 Pending with interval 60: the CSMS's TriggerMessage BootNotification is Accepted and the
    next BootNotification goes right away, reason Triggered (F06)."""

    async def scenario() -> tuple[tuple[str, str], list[tuple[float, str, dict[str, Any]]], float]:
        async with _station(tmp_path, csms=RawCsms(boot="Pending")) as (csms, _, _):
            answer = await csms.call("TriggerMessage", {"requestedMessage": "BootNotification"})
            asked = time.monotonic()
            assert await until(lambda: len(csms.sent("BootNotification")) == 2, 20)
            status = await csms.call("TriggerMessage", {"requestedMessage": "Heartbeat"})
            return (answer["status"], status["status"]), csms.calls, asked

    (status, heartbeat), calls, asked = asyncio.run(scenario())
    boots = [(t, p["reason"]) for t, action, p in calls if action == "BootNotification"]
    assert status == "Accepted" and [reason for _, reason in boots] == ["PowerUp", "Triggered"]
    assert boots[1][0] - asked < 5.0  # at once (with room for a loaded machine), not after the 60 s interval
    assert heartbeat == "Accepted" and {action for _, action, _ in calls} == {"BootNotification"}


@pytest.mark.parametrize("subprotocol", [OCPP201, OCPP21])
def test_request_start_transaction_is_rejected_with_its_reason(tmp_path: Path, subprotocol: str) -> None:
    """F01: the bridge cannot start an ISO 15118-20 session (the EV does, by plugging in): Rejected
    with a statusInfo, no CALLERROR; with a transaction running, its transactionId says which."""
    start = {"idToken": {"idToken": "CSMS-1", "type": "Central"}, "remoteStartId": 5}

    async def scenario() -> list[dict[str, Any]]:
        async with _station(tmp_path, subprotocol) as (csms, bridge, _):
            answers = [
                await csms.call("RequestStartTransaction", start),
                await csms.call("RequestStartTransaction", start | {"evseId": 2}),
            ]
            bridge.on_event(PhaseChanged(t=0.0, role="SECC", phase="SessionSetup"))
            answers.append(await csms.call("RequestStartTransaction", start | {"evseId": 1}))
            assert bridge.transaction is not None
            return [*answers, {"running": bridge.transaction.id}]

    free, other, busy, running = asyncio.run(scenario())
    assert (free["status"], free["statusInfo"]["reasonCode"]) == ("Rejected", "UnsupportedRequest")
    assert "transactionId" not in free and "plugs in" in free["statusInfo"]["additionalInfo"]
    assert (other["status"], other["statusInfo"]["reasonCode"]) == ("Rejected", "UnknownEvse")
    assert (busy["status"], busy["statusInfo"]["reasonCode"]) == ("Rejected", "TxInProgress")
    assert busy["transactionId"] == running["running"]
