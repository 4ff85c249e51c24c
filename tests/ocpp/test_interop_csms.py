"""Our station bridge against a CSMS written with the ``ocpp`` package alone (none of our CSMS code).

The CSMS below is the package's own ChargePoint with its JSON-schema validation on every message
both ways; it drives a real ``session run --sim`` engine through our bridge: SetChargingProfile
must change the power of the running DC_BPT loop, the TransactionEvents must carry both energy
registers in order, and the Plug & Charge and certificate messages must pass through.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websockets
from ocpp.routing import on
from ocpp.v21 import ChargePoint as Cp21
from ocpp.v21 import call as call21
from ocpp.v201 import ChargePoint as Cp201
from ocpp.v201 import call as call201
from websockets.asyncio.server import serve

from tests.ocpp.wire import until
from v2gtool.iso20.events import MessageReceived, PhaseChanged, PowerFlow, SessionEnded
from v2gtool.iso20.values import DC_SERVICES, ServiceID
from v2gtool.ocpp.outbox import Outbox
from v2gtool.ocpp.profile import ProfileSetpoint
from v2gtool.ocpp.station import BridgeConfig, StationBridge
from v2gtool.pki.create import init_pki
from v2gtool.pki.profiles import KeyType
from v2gtool.pki.trust import TrustStore
from v2gtool.session import scenario as scenarios
from v2gtool.session.events import Event
from v2gtool.session.runner import SessionResult, run_sim


def iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass
class Seen:
    """What the package-only CSMS received."""

    boots: list[dict[str, Any]] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    needs: list[dict[str, Any]] = field(default_factory=list)
    transactions: list[dict[str, Any]] = field(default_factory=list)
    certificate_requests: list[dict[str, Any]] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    charging: asyncio.Event = field(default_factory=asyncio.Event)
    peer: Any = None


def csms_class(base: type[Any]) -> type[Any]:
    class PackageCsms(base):  # type: ignore[misc,valid-type]
        seen: Seen

        @on("BootNotification")
        def boot(self, **kwargs: Any) -> Any:
            self.seen.boots.append(kwargs)
            return self._call_result.BootNotification(current_time=iso(time.time()), interval=30, status="Accepted")

        @on("Heartbeat")
        def heartbeat(self, **_: Any) -> Any:
            return self._call_result.Heartbeat(current_time=iso(time.time()))

        @on("StatusNotification")
        def status(self, connector_status: str, **_: Any) -> Any:
            self.seen.statuses.append(connector_status)
            return self._call_result.StatusNotification()

        @on("NotifyEVChargingNeeds")
        def needs(self, **kwargs: Any) -> Any:
            self.seen.needs.append(kwargs)
            return self._call_result.NotifyEVChargingNeeds(status="Accepted")

        @on("TransactionEvent")
        def transaction(self, **kwargs: Any) -> Any:
            self.seen.transactions.append(kwargs)
            if kwargs["event_type"] == "Started":
                self.seen.started.set()
            if kwargs["transaction_info"].get("charging_state") == "Charging":
                self.seen.charging.set()
            return self._call_result.TransactionEvent()

        @on("Get15118EVCertificate")
        def ev_certificate(self, **kwargs: Any) -> Any:
            self.seen.certificate_requests.append(kwargs)
            answer = base64.b64encode(b"\x80\x90CertificateInstallationRes" + base64.b64decode(kwargs["exi_request"]))
            return self._call_result.Get15118EVCertificate(status="Accepted", exi_response=answer.decode())

    return PackageCsms


async def start_csms(version: str, seen: Seen) -> tuple[Any, int]:
    base = Cp21 if version == "ocpp2.1" else Cp201
    cls = csms_class(base)

    async def handler(ws: Any) -> None:
        peer = cls(ws.request.path.rsplit("/", 1)[-1], ws)
        peer.seen = seen
        seen.peer = peer
        with contextlib.suppress(websockets.ConnectionClosed):
            await peer.start()

    server = await serve(handler, "127.0.0.1", 0, subprotocols=[websockets.Subprotocol(version)])
    return server, next(iter(server.sockets)).getsockname()[1]


async def bridged_session(
    tmp: Path, version: str, profile: dict[str, Any], seen: Seen, scheduled_charge: float | None = None
) -> list[Event]:
    """One DC_BPT session through our bridge, Dynamic (idle until told), or Scheduled with the EV
    wishing to charge *scheduled_charge* W; the CSMS sends *profile* once the transaction started
    (Scheduled: once the loop runs, so that it needs a renegotiation).
    Returns the session's and the bridge's events."""
    server, port = await start_csms(version, seen)
    events: list[Event] = []
    if scheduled_charge is None:
        scenario = scenarios.load(None, control_mode=scenarios.ControlMode.DYNAMIC, duration=6.0, power=0.0)
    else:
        scenario = scenarios.load(
            None, control_mode=scenarios.ControlMode.SCHEDULED, duration=8.0, power=scheduled_charge
        )
    setpoint = ProfileSetpoint(fallback=scenario.grid_request())
    bridge = StationBridge(
        BridgeConfig(
            url=f"ws://127.0.0.1:{port}/ocpp", station_id="CS-PKG", meter_interval=0.5, trust_dir=tmp / "trust"
        ),
        Outbox(tmp / "outbox"),
        setpoint,
        listener=events.append,
    )
    link = asyncio.create_task(bridge.run())

    async def send_profile() -> None:
        await (seen.started if scheduled_charge is None else seen.charging).wait()
        await asyncio.sleep(0.3)
        call = (call21 if version == "ocpp2.1" else call201).SetChargingProfile
        profile["transaction_id"] = seen.transactions[0]["transaction_info"]["transaction_id"]
        result = await seen.peer.call(call(evse_id=1, charging_profile=profile))
        events.append(Event(t=time.time()))  # a marker: the profile is in force from here
        assert result.status == "Accepted", result

    sender = asyncio.create_task(send_profile())

    def listen(event: Event) -> None:
        events.append(event)
        bridge.on_event(event)

    try:
        result = await run_sim(scenario, speed=1.0, listener=listen, grid=setpoint)
        assert result.ok, result.reason
        await until(lambda: not len(bridge.outbox), 5.0)
        await sender
        bridge.transaction = None
        assert len(bridge.outbox) == 0
        # The bridge answers a Get15118EVCertificate pass-through while connected.
        status, exi = await bridge.get_15118_ev_certificate("Install", b"\x80\x01\x02")
        assert status == "Accepted" and exi.endswith(b"\x80\x01\x02")
    finally:
        link.cancel()
        await asyncio.gather(link, return_exceptions=True)
        server.close()
    return events


def loop_power_after_profile(events: list[Event]) -> list[float]:
    marker = next(i for i, e in enumerate(events) if type(e) is Event)
    return [e.power for e in events[marker:] if isinstance(e, PowerFlow) and e.role == "SECC"]


def check_transactions(seen: Seen) -> None:
    kinds = [t["event_type"] for t in seen.transactions]
    assert kinds[0] == "Started" and kinds[-1] == "Ended" and set(kinds[1:-1]) == {"Updated"}
    assert [t["seq_no"] for t in seen.transactions] == list(range(len(kinds)))
    assert len({t["transaction_info"]["transaction_id"] for t in seen.transactions}) == 1
    assert "Occupied" in seen.statuses and seen.statuses[-1] == "Available"
    final = {sv["measurand"]: sv["value"] for sv in seen.transactions[-1]["meter_value"][0]["sampled_value"]}
    assert final["Energy.Active.Export.Register"] + final["Energy.Active.Import.Register"] > 0
    # The registers at the begin too: a CSMS counts the energy a transaction moved from there (E01).
    (begin,) = seen.transactions[0]["meter_value"]
    assert {sv["context"] for sv in begin["sampled_value"]} == {"Transaction.Begin"}
    assert {"Energy.Active.Export.Register", "Energy.Active.Import.Register"} <= {
        sv["measurand"] for sv in begin["sampled_value"]}
    assert seen.transactions[-1]["transaction_info"]["stopped_reason"] == "StoppedByEV"


@pytest.mark.interop
def test_ocpp201_csms_negative_limit_discharges_the_running_session(tmp_path: Path) -> None:
    seen = Seen()
    profile = {
        "id": 7,
        "stack_level": 1,
        "charging_profile_purpose": "TxProfile",
        "charging_profile_kind": "Relative",
        "charging_schedule": [
            {"id": 1, "charging_rate_unit": "W", "charging_schedule_period": [{"start_period": 0, "limit": -5000.0}]}
        ],
    }
    events = asyncio.run(bridged_session(tmp_path, "ocpp2.0.1", profile, seen))
    powers = loop_power_after_profile(events)
    assert len(powers) >= 8
    assert all(abs(p + 5000) <= 250 for p in powers[2:]), powers  # within 5 % once the loop took it
    check_transactions(seen)
    needs = seen.needs[0]["charging_needs"]
    assert needs["requested_energy_transfer"] == "DC"  # 2.0.1 knows no DC_BPT ...
    custom = needs["custom_data"]
    assert custom["vendor_id"] == "org.v2gtool" and custom["max_discharge_power"] == 11000  # ... the extension does
    assert custom["ev_min_v2x_energy_request"] < 0
    assert seen.certificate_requests[0]["action"] == "Install"
    assert any(isinstance(e, SessionEnded) and e.ok for e in events)


@pytest.mark.interop
def test_ocpp21_csms_setpoint_with_operation_mode(tmp_path: Path) -> None:
    seen = Seen()
    profile = {
        "id": 8,
        "stack_level": 0,
        "charging_profile_purpose": "TxProfile",
        "charging_profile_kind": "Absolute",
        "charging_schedule": [
            {
                "id": 1,
                "start_schedule": iso(time.time() - 1),
                "charging_rate_unit": "W",
                "charging_schedule_period": [
                    {
                        "start_period": 0,
                        "operation_mode": "CentralSetpoint",
                        "setpoint": -4000.0,
                        "discharge_limit": -9000.0,
                    }
                ],
            }
        ],
    }
    events = asyncio.run(bridged_session(tmp_path, "ocpp2.1", profile, seen))
    powers = loop_power_after_profile(events)
    assert all(abs(p + 4000) <= 200 for p in powers[2:]), powers
    check_transactions(seen)
    needs = seen.needs[0]["charging_needs"]
    assert needs["requested_energy_transfer"] == "DC_BPT" and needs["control_mode"] == "DynamicControl"
    v2x = needs["v2x_charging_parameters"]
    assert v2x["max_discharge_power"] == 11000 and v2x["ev_min_v2x_energy_request"] < 0


@pytest.mark.interop
def test_install_certificate_from_a_package_csms(tmp_path: Path) -> None:
    base = tmp_path / "pki"
    init_pki(base / "certs", base / "trust", KeyType.SECP521R1)
    root_pem = next((base / "trust").glob("*.pem")).read_text()
    leaf_pem = (base / "certs" / "secc.pem").read_text() if (base / "certs" / "secc.pem").exists() else None

    async def scenario() -> list[str]:
        seen = Seen()
        server, port = await start_csms("ocpp2.0.1", seen)
        connected = asyncio.Event()
        bridge = StationBridge(
            BridgeConfig(url=f"ws://127.0.0.1:{port}/ocpp", station_id="CS-CERT", trust_dir=tmp_path / "trust"),
            Outbox(tmp_path / "outbox"),
            ProfileSetpoint(),
            listener=lambda e: connected.set() if type(e).__name__ == "CsmsConnected" else None,
        )
        link = asyncio.create_task(bridge.run())
        try:
            await asyncio.wait_for(connected.wait(), 10)
            answers = []
            for kind, pem in (
                ("V2GRootCertificate", root_pem),
                ("V2GRootCertificate", "garbage"),
                ("CSMSRootCertificate", root_pem),
            ):
                res = await seen.peer.call(call201.InstallCertificate(certificate_type=kind, certificate=pem))
                answers.append(res.status)
            if leaf_pem is not None:  # not a self-signed root: refused as a whole
                res = await seen.peer.call(
                    call201.InstallCertificate(certificate_type="MORootCertificate", certificate=leaf_pem)
                )
                answers.append(res.status)
            return answers
        finally:
            link.cancel()
            await asyncio.gather(link, return_exceptions=True)
            server.close()

    answers = asyncio.run(scenario())
    assert answers[:3] == ["Accepted", "Rejected", "Rejected"]
    assert all(a == "Rejected" for a in answers[3:])
    installed = TrustStore.load(tmp_path / "trust")
    assert len(installed.roots) == 1


@pytest.mark.interop
def test_ocpp201_profile_renegotiates_a_scheduled_session(tmp_path: Path) -> None:
    """Scheduled mode: the profile becomes the -20 schedule through a ScheduleRenegotiation."""
    seen = Seen()
    profile = {
        "id": 9,
        "stack_level": 0,
        "charging_profile_purpose": "TxProfile",
        "charging_profile_kind": "Relative",
        "charging_schedule": [
            {"id": 1, "charging_rate_unit": "W", "charging_schedule_period": [{"start_period": 0, "limit": 4000.0}]}
        ],
    }
    events = asyncio.run(bridged_session(tmp_path, "ocpp2.0.1", profile, seen, scheduled_charge=30000.0))
    powers = loop_power_after_profile(events)
    assert max(p for e in events if isinstance(e, PowerFlow) and e.role == "SECC" for p in [e.power]) > 25000
    assert len(powers) >= 8 and all(abs(p - 4000) <= 200 for p in powers[4:]), powers
    check_transactions(seen)
    phases = [e.phase for e in events if type(e).__name__ == "PhaseChanged" and getattr(e, "role", "") == "SECC"]
    assert "ScheduleExchange (renegotiation)" in phases


async def session_with_csms(
    tmp: Path, version: str, station_id: str, csms_side: Callable[[Seen], Awaitable[list[str]]], **run: Any
) -> tuple[SessionResult, list[Event], Seen, list[str]]:
    """One ``session run --sim`` engine (*run*: run_sim's arguments) bridged to the package-only CSMS
    while *csms_side* acts on it; returns the session's result, its and the bridge's events, what the
    CSMS saw and the answers *csms_side* got."""
    seen = Seen()
    server, port = await start_csms(version, seen)
    events: list[Event] = []
    bridge = StationBridge(
        BridgeConfig(url=f"ws://127.0.0.1:{port}/ocpp", station_id=station_id, meter_interval=0.5),
        Outbox(tmp / "outbox"),
        ProfileSetpoint(),
        listener=events.append,
    )
    link = asyncio.create_task(bridge.run())
    acting = asyncio.create_task(csms_side(seen))

    def listen(event: Event) -> None:
        events.append(event)
        bridge.on_event(event)

    try:
        result = await run_sim(
            listener=listen, stop_request=bridge.stop_request, allowed_services=bridge.allowed_services, **run
        )
        answers = await acting
        await until(lambda: not len(bridge.outbox), 5.0)
    finally:
        link.cancel()
        await asyncio.gather(link, return_exceptions=True)
        server.close()
    return result, events, seen, answers


@pytest.mark.interop
def test_request_stop_transaction_ends_the_session_through_an_evse_notification(tmp_path: Path) -> None:
    async def stop_it(seen: Seen) -> list[str]:
        await seen.charging.wait()
        await asyncio.sleep(1.0)
        tx = seen.transactions[0]["transaction_info"]["transaction_id"]
        answers = []
        for transaction_id in ("not-running-here", tx):
            res = await seen.peer.call(call201.RequestStopTransaction(transaction_id=transaction_id))
            answers.append(res.status)
        return answers

    result, events, seen, answers = asyncio.run(session_with_csms(
        tmp_path, "ocpp2.0.1", "CS-STOP", stop_it, scenario=scenarios.load(None, duration=60.0), speed=1.0))
    assert answers == ["Rejected", "Accepted"]
    assert result.ok and result.reason == "SessionStop Terminate"
    loop = [e.t for e in events if isinstance(e, PowerFlow) and e.role == "EVCC"]
    assert loop[-1] - loop[0] < 10.0  # ended on the notification, long before its 60 s
    ended = seen.transactions[-1]
    assert ended["event_type"] == "Ended" and ended["trigger_reason"] == "RemoteStop"
    assert ended["transaction_info"]["stopped_reason"] == "Remote"


@pytest.mark.interop
def test_ocpp21_allowed_energy_transfer_renegotiates_the_service(tmp_path: Path) -> None:
    """NotifyAllowedEnergyTransfer (OCPP 2.1 Q02) mid-loop: the CSMS withdraws DC_BPT, the SECC asks
    the EV for a ServiceRenegotiation, and the EV goes on charging on DC in the same transaction."""

    async def allow_dc_only(seen: Seen) -> list[str]:
        await seen.charging.wait()
        tx = seen.transactions[0]["transaction_info"]["transaction_id"]
        answers = []
        for transaction_id, modes in (("not-running-here", ["DC"]), (tx, ["AC_single_phase"]), (tx, ["DC"])):
            res = await seen.peer.call(call21.NotifyAllowedEnergyTransfer(
                transaction_id=transaction_id, allowed_energy_transfer=modes))
            answers.append(res.status)
        return answers

    result, events, seen, answers = asyncio.run(session_with_csms(
        tmp_path, "ocpp2.1", "CS-Q02", allow_dc_only, scenario=scenarios.load(None, duration=25.0), speed=20.0))
    assert answers == ["Rejected", "Rejected", "Accepted"]
    assert result.ok and result.reason == "SessionStop Terminate"
    stops = [e.summary["ChargingSession"] for e in events
             if isinstance(e, MessageReceived) and e.role == "SECC" and e.message == "SessionStopReq"]
    assert stops == ["ServiceRenegotiation", "Terminate"]
    # charged before and after the renegotiation, all in one OCPP transaction
    renegotiated = next(e.t for e in events if isinstance(e, MessageReceived) and e.message == "SessionStopReq")
    flows = [e for e in events if isinstance(e, PowerFlow) and e.role == "SECC"]
    assert any(f.t < renegotiated and f.power > 1000 for f in flows)
    assert any(f.t > renegotiated and f.power > 1000 for f in flows)
    check_transactions(seen)
    # the EV's needs were sent again for the new service: DC_BPT first, then DC
    assert [n["charging_needs"]["requested_energy_transfer"] for n in seen.needs] == ["DC_BPT", "DC"]


def test_allowed_energy_transfer_is_checked_against_what_the_station_has(tmp_path: Path) -> None:
    """An allowance must leave the station something to offer; it holds for the running transaction only."""

    def bridge_with(services: frozenset[ServiceID], name: str) -> tuple[StationBridge, str]:
        config = BridgeConfig(url="ws://127.0.0.1:9/ocpp", station_id=name, services=services)
        bridge = StationBridge(config, Outbox(tmp_path / name), ProfileSetpoint())
        assert bridge.allow_energy_transfer("none", ["DC"])[0] == "Rejected"  # no transaction runs yet
        bridge.on_event(PhaseChanged(t=0.0, role="SECC", phase="SessionSetup"))
        assert bridge.transaction is not None
        return bridge, bridge.transaction.id

    dc_only, tx = bridge_with(frozenset({ServiceID.DC}), "CS-DC")
    assert dc_only.allow_energy_transfer(tx, ["DC_BPT"]) == (
        "Rejected", "none of DC_BPT is a service of this station (it has DC)")
    dc_only.outbox.close()

    both, tx = bridge_with(DC_SERVICES, "CS-BPT")
    assert both.allowed_services() == DC_SERVICES
    assert both.allow_energy_transfer(tx, ["AC_single_phase"])[0] == "Rejected"
    assert both.allow_energy_transfer(tx, ["DC", "AC_three_phase"]) == ("Accepted", "")
    assert both.allowed_services() == {ServiceID.DC}
    both.on_event(SessionEnded(t=1.0, role="SECC", reason="SessionStop Terminate", ok=True, response_code=None))
    assert both.allow_energy_transfer(tx, ["DC"])[0] == "Rejected"  # that transaction is over
    assert both.allowed_services() == DC_SERVICES  # the next session is offered everything again
    both.outbox.close()
