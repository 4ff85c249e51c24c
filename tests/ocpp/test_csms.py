"""The aggregator's CSMS side (``Vpp`` and its OCPP-J routing) against what a faulty or hostile station
sends: events it cannot read are refused with the RPC framework's CALLERROR before they are counted,
and every frame gets its answer (OCPP 2.0.1/2.1 part 4 4.2.3, 4.3) as one reported line, never a
traceback."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect

from v2gtool.ocpp.csms import CsmsError, Vpp, VppConfig
from v2gtool.ocpp.rpc_errors import CallRejected, FrameRejected
from v2gtool.session.events import Event


def iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat().replace("+00:00", "Z")


def tx_event(seq: int, event_type: str, tx: str = "tx-1", evse: int = 1, **extra: Any) -> dict[str, Any]:
    """A TransactionEvent payload as the handler gets it (snake_case)."""
    return {
        "event_type": event_type,
        "timestamp": iso(time.time()),
        "trigger_reason": "MeterValuePeriodic",
        "seq_no": seq,
        "transaction_info": {"transaction_id": tx},
        "evse": {"id": evse},
        **extra,
    }


def meter(at: str, soc: float = 50.0) -> list[dict[str, Any]]:
    return [{"timestamp": at, "sampled_value": [{"measurand": "SoC", "value": soc}]}]


def logged(state: Path) -> list[tuple[str, int]]:
    lines = (state / "transactions.jsonl").read_text().splitlines()
    return [(e["transaction_id"], e["seq_no"]) for e in map(json.loads, lines)]


def test_a_refused_transaction_event_is_not_counted_and_its_corrected_retry_is(tmp_path: Path) -> None:
    state = tmp_path / "state"
    vpp = Vpp(VppConfig(state))
    vpp.transaction_event("cs-1", tx_event(0, "Started"))
    with pytest.raises(CallRejected) as refused:
        vpp.transaction_event("cs-1", tx_event(1, "Updated", meter_value=meter("garbage")))
    assert refused.value.code == "TypeConstraintViolation" and "garbage" in refused.value.reason
    with pytest.raises(CallRejected):
        vpp.transaction_event("cs-1", {**tx_event(1, "Updated"), "timestamp": "yesterday"})
    assert logged(state) == [("tx-1", 0)]
    vpp.transaction_event("cs-1", tx_event(1, "Updated", meter_value=meter(iso(time.time()), soc=42.0)))
    assert logged(state) == [("tx-1", 0), ("tx-1", 1)] and vpp.log.duplicates == 0
    assert vpp.fleet.vehicles[("cs-1", 1)].soc == 42.0
    vpp.log.close()
    again = Vpp(VppConfig(state))  # a restart: the replay of both is a duplicate, the next one is new
    again.transaction_event("cs-1", tx_event(1, "Updated", meter_value=meter(iso(time.time()))))
    again.transaction_event("cs-1", tx_event(2, "Ended"))
    assert logged(state) == [("tx-1", 0), ("tx-1", 1), ("tx-1", 2)] and again.log.duplicates == 1
    again.log.close()


def ours(**extension: Any) -> dict[str, Any]:
    """2.0.1 needs with our discharge extension."""
    return {"requested_energy_transfer": "DC",
            "custom_data": {"vendor_id": "org.v2gtool", "bpt": True, **extension}}  # fmt: skip


@pytest.mark.parametrize(
    ("needs", "code"),
    [
        ({"requested_energy_transfer": "DC", "departure_time": "tomorrow"}, "TypeConstraintViolation"),
        (ours(max_discharge_power="lots"), "TypeConstraintViolation"),
        (ours(min_soc="x"), "TypeConstraintViolation"),
        (ours(min_soc=150), "PropertyConstraintViolation"),
        ({"requested_energy_transfer": "DC_BPT", "v2x_charging_parameters": {"max_discharge_power": 1e400}},
         "PropertyConstraintViolation"),
        (ours(max_discharge_power=1e308, ev_min_v2x_energy_request=-30_000), "PropertyConstraintViolation"),
        (ours(max_discharge_power=10_000, ev_min_v2x_energy_request=-1e308), "PropertyConstraintViolation"),
        (ours(max_discharge_power=-5), "PropertyConstraintViolation"),
        ({"requested_energy_transfer": "DC", "dc_charging_parameters": {"ev_max_power": 2e7}},
         "PropertyConstraintViolation"),
    ],
)  # fmt: skip
def test_charging_needs_it_cannot_read_are_refused_and_change_nothing(
    tmp_path: Path, needs: dict[str, Any], code: str
) -> None:
    vpp = Vpp(VppConfig(tmp_path / "state"))
    with pytest.raises(CallRejected) as refused:
        vpp.charging_needs("cs-1", 1, needs)
    assert refused.value.code == code
    vpp.transaction_event("cs-1", tx_event(0, "Started", meter_value=meter(iso(time.time()), soc=60.0)))
    vehicle = vpp.fleet.vehicles[("cs-1", 1)]
    assert vehicle.needs is None and vehicle.soc == 60.0
    vpp.log.close()


def test_a_grid_request_that_cannot_be_saved_is_not_applied(tmp_path: Path) -> None:
    vpp = Vpp(VppConfig(tmp_path / "state"))
    (tmp_path / "state" / "request.tmp").mkdir()
    with pytest.raises(CsmsError, match=r"cannot save the grid request in .*state: Is a directory"):
        vpp.dispatch(-10_000.0, 60.0)
    assert vpp.fleet.request is None and not (tmp_path / "state" / "request.json").exists()
    (tmp_path / "state" / "request.tmp").rmdir()
    vpp.dispatch(-10_000.0, 60.0)
    (tmp_path / "state" / "request.json").unlink()
    (tmp_path / "state" / "request.json").mkdir()
    with pytest.raises(CsmsError, match="cannot remove the grid request"):
        vpp.cancel()
    assert vpp.fleet.request is not None  # still what a restart would resume
    vpp.log.close()


Exchange = Callable[[str | bytes], Awaitable[Any]]


def with_station(
    tmp_path: Path, subprotocol: str, test: Callable[[Vpp, Exchange], Awaitable[None]], debug: bool = False
) -> list[Event]:
    """Run *test* with a raw websocket station connected to a live Vpp: it sends one frame and gets the
    decoded reply (None when there is none within 0.5 s). The Vpp's events are returned."""
    events: list[Event] = []

    async def main() -> None:
        vpp = Vpp(VppConfig(tmp_path / "state", debug=debug), listener=events.append)
        server = await vpp.serve("127.0.0.1", 0)
        port = next(iter(server.sockets)).getsockname()[1]
        ws: ClientConnection = await connect(
            f"ws://127.0.0.1:{port}/ocpp/cs-1", subprotocols=[websockets.Subprotocol(subprotocol)], proxy=None
        )

        async def exchange(frame: str | bytes) -> Any:
            await ws.send(frame)
            try:
                return json.loads(await asyncio.wait_for(ws.recv(), 0.5))
            except TimeoutError:
                return None

        try:
            await test(vpp, exchange)
        finally:
            await ws.close()
            server.close()
            await server.wait_closed()
            vpp.log.close()

    asyncio.run(main())
    return events


def call(message_id: str, action: str, payload: dict[str, Any]) -> str:
    return json.dumps([2, message_id, action, payload])


@pytest.mark.parametrize("subprotocol", ["ocpp2.0.1", "ocpp2.1"])
def test_a_refused_event_is_a_type_constraint_violation_and_its_retry_counts(tmp_path: Path, subprotocol: str) -> None:
    camel = {"eventType": "Updated", "timestamp": iso(time.time()), "triggerReason": "MeterValuePeriodic",
             "seqNo": 1, "transactionInfo": {"transactionId": "tx-1"}, "evse": {"id": 1}}  # fmt: skip

    async def test(vpp: Vpp, exchange: Exchange) -> None:
        assert await exchange(call("a", "TransactionEvent", {**camel, "eventType": "Started", "seqNo": 0})) == [
            3, "a", {},
        ]  # fmt: skip
        garbage = [{"timestamp": "garbage", "sampledValue": [{"value": 1}]}]
        reply = await exchange(call("b", "TransactionEvent", {**camel, "meterValue": garbage}))
        assert reply[:3] == [4, "b", "TypeConstraintViolation"] and "garbage" in reply[3]
        fixed = [{"timestamp": iso(time.time()), "sampledValue": [{"value": 1}]}]
        assert await exchange(call("c", "TransactionEvent", {**camel, "meterValue": fixed})) == [3, "c", {}]
        assert len(vpp.log.seen) == 2 and vpp.log.duplicates == 0
        needs = {"evseId": 1, "chargingNeeds": {"requestedEnergyTransfer": "DC", "departureTime": "tomorrow"}}
        assert (await exchange(call("d", "NotifyEVChargingNeeds", needs)))[:3] == [4, "d", "TypeConstraintViolation"]

    with_station(tmp_path, subprotocol, test)


BOOT = '{"chargingStation": {"vendorName": %s, "model": "y"}, "reason": %s}'
FRAMES = [
    ("not json", [4, "-1", "RpcFrameworkError"]),  # its MessageId cannot be read (part 4 4.3)
    ('[2, "x", "Heartbeat", {"a": NaN}]', [4, "-1", "RpcFrameworkError"]),
    ("[]", [4, "-1", "RpcFrameworkError"]),
    ("{}", [4, "-1", "RpcFrameworkError"]),
    ("[2, 7, \"Heartbeat\", {}]", [4, "-1", "RpcFrameworkError"]),
    ('[2, "m1"]', [4, "m1", "ProtocolError"]),
    ('[2, "m2", "Heartbeat", []]', [4, "m2", "ProtocolError"]),
    ('[2, "m3", ["Heartbeat"], {}]', [4, "m3", "ProtocolError"]),
    ('[9, "m4", "Heartbeat", {}]', [4, "m4", "MessageTypeNotSupported"]),
    ('[2, "m5", "Authorize", {"idToken": {"idToken": "x", "type": "Central"}}]', [4, "m5", "NotSupported"]),
    ('[2, "m6", "MeterValues", {"evseId": 1, "meterValue": []}]', [4, "m6", "NotSupported"]),
    ('[2, "m7", "SecurityEventNotification", {"type": "x", "timestamp": "2025-01-01T00:00:00Z"}]',
     [4, "m7", "NotSupported"]),
    ('[2, "m8", "Frobnicate", {}]', [4, "m8", "NotImplemented"]),
    ('[2, "m9", "BootNotification", {}]', [4, "m9", "OccurrenceConstraintViolation"]),  # the schema's "required"
    ('[2, "m12", "BootNotification", %s]' % (BOOT % ('{"a": 1}', '"PowerUp"')), [4, "m12", "TypeConstraintViolation"]),
    ('[2, "m13", "BootNotification", %s]' % (BOOT % ('"x"', '"Nope"')), [4, "m13", "PropertyConstraintViolation"]),
    ('[2, "m14", "BootNotification", %s]' % (BOOT % ('"%s"' % ("x" * 51), '"PowerUp"')),
     [4, "m14", "PropertyConstraintViolation"]),
    ('[2, "m15", "Heartbeat", {"foo": {"a": 1}}]', [4, "m15", "FormatViolation"]),  # no such field
    ('[3, "m10"]', None),  # a malformed response is never answered
    ('[3, "m11", {}]', None),  # nor one no CALL awaits
    ('[4, "m16", "GenericError", "", {}]', None),
]  # fmt: skip
DESCRIPTIONS = {
    "m9": "BootNotification has no reason, chargingStation",
    "m12": "BootNotification chargingStation.vendorName is not a string",
    "m14": "BootNotification chargingStation.vendorName",
    "m15": "Heartbeat has no field foo",
}


@pytest.mark.parametrize("subprotocol", ["ocpp2.0.1", "ocpp2.1"])
def test_every_frame_gets_its_rpc_framework_answer_and_one_line_without_traceback(
    tmp_path: Path, subprotocol: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)

    async def test(vpp: Vpp, exchange: Exchange) -> None:
        for frame, expected in FRAMES:
            reply = await exchange(frame)
            assert (reply if reply is None else reply[:3]) == expected, frame
            if reply is not None:
                assert len(reply) == 5 and isinstance(reply[3], str) and len(reply[3]) <= 255 and reply[4] == {}
        assert (await exchange('[2, "ok", "Heartbeat", {}]'))[:2] == [3, "ok"]  # the connection carries on

    events = with_station(tmp_path, subprotocol, test)
    rejected = [e for e in events if isinstance(e, FrameRejected)]
    assert len(rejected) == len(FRAMES)  # the responses no CALL awaits too, as one event each
    assert all("\n" not in e.reason and "{'" not in e.reason for e in rejected)  # no Python dict repr
    reasons = {e.message_id: e.reason for e in rejected}
    assert {m: reasons[m][: len(text)] for m, text in DESCRIPTIONS.items()} == DESCRIPTIONS
    assert reasons["m11"] == reasons["m16"] == "an answer to no CALL awaiting one: dropped"
    assert not [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]


def test_ocpp21_send_and_callresulterror_are_never_answered(tmp_path: Path) -> None:
    async def test(vpp: Vpp, exchange: Exchange) -> None:
        assert await exchange('[6, "s1", "NotifyPeriodicEventStream", {}]') is None
        assert await exchange('[5, "s2", "GenericError", "", {}]') is None

    events = with_station(tmp_path, "ocpp2.1", test)
    assert [e.code for e in events if isinstance(e, FrameRejected)] == ["MessageTypeNotSupported"] * 2


@pytest.mark.parametrize("debug", [False, True])
def test_a_bug_of_ours_is_an_internal_error_with_its_traceback_only_in_debug(
    tmp_path: Path, debug: bool, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: Vpp, station: str, payload: dict[str, Any]) -> None:
        raise RuntimeError("oops")

    monkeypatch.setattr(Vpp, "transaction_event", broken)
    payload = {"eventType": "Started", "timestamp": iso(time.time()), "triggerReason": "CablePluggedIn",
               "seqNo": 0, "transactionInfo": {"transactionId": "tx-1"}}  # fmt: skip

    async def test(vpp: Vpp, exchange: Exchange) -> None:
        assert await exchange(call("t", "TransactionEvent", payload)) == [
            4, "t", "InternalError", "RuntimeError: oops", {},
        ]  # fmt: skip

    events = with_station(tmp_path, "ocpp2.1", test, debug=debug)
    assert [e.code for e in events if isinstance(e, FrameRejected)] == ["InternalError"]
    assert bool([r for r in caplog.records if r.exc_info]) == debug


def test_meter_values_count_in_their_unit_and_impossible_ones_are_refused(tmp_path: Path) -> None:
    vpp = Vpp(VppConfig(tmp_path / "state"))
    vpp.transaction_event("cs-1", tx_event(0, "Started"))
    at = iso(time.time())
    kilo = [{"timestamp": at, "sampled_value": [
        {"measurand": "Power.Active.Export", "value": 7.5, "unit_of_measure": {"unit": "kW"}},
        {"measurand": "Power.Active.Export", "value": 2500, "phase": "L1"},
        {"measurand": "Energy.Active.Export.Register", "value": 2, "unit_of_measure": {"unit": "kWh"}}]}]  # fmt: skip
    vpp.transaction_event("cs-1", tx_event(1, "Updated", meter_value=kilo))
    vehicle = vpp.fleet.vehicles[("cs-1", 1)]
    assert (vehicle.power, vehicle.exported_wh) == (-7500.0, 2000.0)
    with pytest.raises(CallRejected) as refused:
        vpp.transaction_event("cs-1", tx_event(2, "Updated", meter_value=meter(at, soc=150)))
    assert refused.value.code == "PropertyConstraintViolation" and "SoC" in refused.value.reason
    assert logged(tmp_path / "state") == [("tx-1", 0), ("tx-1", 1)]
    vpp.log.close()
