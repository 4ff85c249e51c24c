"""The sans-IO engines on a virtual clock: sequence rules, unknown sessions, every timeout kind."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from v2gtool import v2gtp
from v2gtool.cli.live import SessionTimeout
from v2gtool.cli.session import _report
from v2gtool.hw.backends import sim_station
from v2gtool.hw.isolation import Edition, IsolationProfile
from v2gtool.hw.station import StationConfig
from v2gtool.iso20 import messages
from v2gtool.iso20.evcc import Evcc, EvccConfig
from v2gtool.iso20.events import PowerFlow, SessionEnded
from v2gtool.iso20.ports import CableCheckStatus, PowerLimits
from v2gtool.iso20.secc import Secc, SeccConfig, SessionStore
from v2gtool.iso20.timeouts import Timeouts
from v2gtool.iso20.values import ControlMode, ServiceID, header
from v2gtool.messages import apphand
from v2gtool.messages import iso20_cm as cm
from v2gtool.messages import iso20_ct as ct
from v2gtool.messages import iso20_dc as dc
from v2gtool.net.v2g_tcp import Ending
from v2gtool.session import scenario as scenarios
from v2gtool.session.plant import SimVehiclePort, StationCharger
from v2gtool.session.runner import run_sim

LIMITS = scenarios.CHARGER_LIMITS


class IdleCharger:
    """A charger that is never asked for power in these tests (the sequence stops before)."""

    def limits(self) -> PowerLimits:
        return LIMITS

    def present_limits(self) -> PowerLimits:
        return LIMITS

    def advance(self, now: float) -> None:
        pass

    def cable_check(self, ev_max_voltage: float) -> CableCheckStatus:
        raise AssertionError("not reached")

    def precharge(self, target_voltage: float) -> float:
        raise AssertionError("not reached")

    def start_energy_transfer(self, battery_voltage: float) -> str | None:
        raise AssertionError("not reached")

    def regulate(self, current: float, voltage_limit: float) -> tuple[float, float]:
        raise AssertionError("not reached")

    def stop(self) -> None:
        pass

    def present_voltage(self) -> float:
        return 0.0

    def fault(self) -> str | None:
        return None


def frame(name: str, body: Any) -> v2gtp.V2GTPFrame:
    return v2gtp.decode_frame(messages.encode(name, body))


def response(outputs: list[Any]) -> messages.Message:
    (data,) = [o for o in outputs if isinstance(o, bytes)]
    return messages.decode(v2gtp.decode_frame(data))


def set_up(secc: Secc) -> bytes:
    protocol = apphand.AppProtocolType(ProtocolNamespace="urn:iso:std:iso:15118:-20:DC", VersionNumberMajor=1,
                                       VersionNumberMinor=0, SchemaID=7, Priority=1)
    res = response(secc.receive(frame("supportedAppProtocolReq", apphand.supportedAppProtocolReqType(
        AppProtocol=(protocol,))), 0.0))
    assert res.body.SchemaID == 7
    res = response(secc.receive(frame("SessionSetupReq", cm.SessionSetupReqType(
        Header=header(bytes(8), 0), EVCCID="WMI")), 0.1))
    assert res.body.ResponseCode.value == "OK_NewSessionEstablished"
    session_id: bytes = res.body.Header.SessionID
    return session_id


def test_request_out_of_sequence_gets_failed_sequence_error() -> None:
    secc = Secc(SeccConfig(), IdleCharger(), 0.0, session_id=lambda: b"\x01" * 8)
    sid = set_up(secc)
    loop = messages.minimal("DC_ChargeLoopReq", Header=header(sid, 1))
    res = response(secc.receive(frame("DC_ChargeLoopReq", loop), 0.2))
    assert res.name == "DC_ChargeLoopRes" and res.body.ResponseCode.value == "FAILED_SequenceError"
    assert secc.ended and "allowed: AuthorizationSetupReq, SessionStopReq" in secc.end_reason


def test_unknown_session_id_gets_failed_unknown_session() -> None:
    secc = Secc(SeccConfig(), IdleCharger(), 0.0, session_id=lambda: b"\x01" * 8)
    set_up(secc)
    res = response(secc.receive(frame("AuthorizationSetupReq", cm.AuthorizationSetupReqType(
        Header=header(b"\x02" * 8, 1))), 0.2))
    assert res.body.ResponseCode.value == "FAILED_UnknownSession"


def test_secc_sequence_timeout() -> None:
    secc = Secc(SeccConfig(), IdleCharger(), 0.0)
    set_up(secc)
    assert secc.on_timeout(30.0) == []  # 60 s V2G_SECC_Sequence_Timeout not yet over
    (ended,) = [e for e in secc.on_timeout(secc.deadline) if isinstance(e, SessionEnded)]
    assert "V2G_SECC_Sequence_Timeout" in ended.reason and secc.ended


def test_communication_setup_timeout_before_the_handshake() -> None:
    secc = Secc(SeccConfig(), IdleCharger(), 0.0)
    assert secc.deadline == 20.0  # V2G_EVCC_CommunicationSetup_Timeout


class StillVehicle:
    def limits(self) -> PowerLimits:
        return scenarios.VEHICLE_LIMITS

    def soc_percent(self) -> float:
        return 50.0

    def battery_voltage(self) -> float:
        return 375.0

    def close_contactors(self) -> None:
        pass

    def open_contactors(self) -> None:
        pass


def test_evcc_message_timeouts_per_request() -> None:
    evcc = Evcc(EvccConfig(), StillVehicle())
    evcc.start(0.0)
    evcc.sent(0.0)
    assert evcc.deadline == 2.0  # supportedAppProtocolReq: 2 s
    assert evcc.on_timeout(1.9) == []
    (ended,) = [e for e in evcc.on_timeout(2.0) if isinstance(e, SessionEnded)]
    assert ended.reason == "timeout waiting for supportedAppProtocolRes" and not ended.ok
    loop = Evcc(EvccConfig(), StillVehicle())
    loop.pending = "DC_ChargeLoopReq"
    loop.sent(10.0)
    assert loop.deadline == 10.5  # DC_ChargeLoop: 0.5 s


def test_evcc_communication_setup_timeout_spans_the_handshake_and_session_setup() -> None:
    """V2G_EVCC_CommunicationSetup_Timeout runs from the first request to SessionSetupRes: a slow
    but in-time handshake answer leaves SessionSetupReq less than its own message timeout."""
    evcc = Evcc(EvccConfig(timeouts=Timeouts(communication_setup=3.0)), StillVehicle())
    evcc.start(0.0)
    handshake = apphand.supportedAppProtocolResType(
        ResponseCode=apphand.responseCodeType.OK_SuccessfulNegotiation, SchemaID=1
    )
    out = evcc.receive(frame("supportedAppProtocolRes", handshake), 1.9)
    assert any(isinstance(o, bytes) for o in out) and evcc.pending == "SessionSetupReq"
    evcc.sent(1.9)
    assert evcc.deadline == 3.0  # not 1.9 + 2 s: the setup time is nearly gone
    (ended,) = [e for e in evcc.on_timeout(3.0) if isinstance(e, SessionEnded)]
    assert ended.reason.startswith("V2G_EVCC_CommunicationSetup_Timeout")
    fresh = Evcc(EvccConfig(timeouts=Timeouts(communication_setup=3.0)), StillVehicle())
    fresh.start(0.0)
    fresh.receive(frame("supportedAppProtocolRes", handshake), 0.1)
    setup = cm.SessionSetupResType(
        Header=header(b"\x01" * 8, 0), ResponseCode=ct.responseCodeType.OK_NewSessionEstablished, EVSEID="E"
    )
    fresh.receive(frame("SessionSetupRes", setup), 0.2)
    fresh.sent(2.9)
    assert fresh.deadline == 4.9  # after SessionSetupRes only the message timeout counts


def test_evcc_rejects_an_unexpected_response() -> None:
    evcc = Evcc(EvccConfig(), StillVehicle())
    evcc.start(0.0)
    wrong = dc.DC_CableCheckResType(Header=header(bytes(8), 0), ResponseCode=ct.responseCodeType.OK,
                                    EVSEProcessing=ct.processingType.Finished)
    (ended,) = [e for e in evcc.receive(frame("DC_CableCheckRes", wrong), 0.1) if isinstance(e, SessionEnded)]
    assert "expected supportedAppProtocolRes, received DC_CableCheckRes" in ended.reason


def test_ev_asking_for_more_than_the_charger_allows_is_limited(tmp_path: Path) -> None:
    path = tmp_path / "greedy.toml"
    path.write_text("[vehicle]\nmax_charge_current = 400\nmax_charge_power = 200000\nmax_voltage = 450\n"
                    "[charger]\nmax_charge_current = 100\n")
    result = asyncio.run(run_sim(scenarios.load(path, duration=5.0)))
    assert result.ok, result.reason
    flows = [e for e in result.events if isinstance(e, PowerFlow) and e.role == "SECC"]
    assert max(f.current for f in flows) <= 100.0 + 1e-6
    assert max(f.current for f in flows) > 95.0


def select_service(secc: Secc, sid: bytes) -> None:
    """AuthorizationSetup .. ServiceSelection (DC_BPT, Dynamic) on an SECC after SessionSetup."""
    h = header(sid, 1)
    steps: list[tuple[str, Any]] = [
        ("AuthorizationSetupReq", cm.AuthorizationSetupReqType(Header=h)),
        ("AuthorizationReq", cm.AuthorizationReqType(Header=h, SelectedAuthorizationService=cm.authorizationType.EIM,
                                                     EIM_AReqAuthorizationMode=cm.EIM_AReqAuthorizationModeType())),
        ("ServiceDiscoveryReq", cm.ServiceDiscoveryReqType(Header=h)),
        ("ServiceDetailReq", cm.ServiceDetailReqType(Header=h, ServiceID=6)),
        ("ServiceSelectionReq", cm.ServiceSelectionReqType(
            Header=h, SelectedEnergyTransferService=cm.SelectedServiceType(ServiceID=6, ParameterSetID=2))),
    ]
    for name, body in steps:
        res = response(secc.receive(frame(name, body), 1.0))
        assert res.body.ResponseCode.value == "OK", (name, res.body.ResponseCode)


def test_paused_session_is_resumed_with_its_service() -> None:
    store = SessionStore()
    first = Secc(SeccConfig(), IdleCharger(), 0.0, store, session_id=lambda: b"\x05" * 8)
    sid = set_up(first)
    select_service(first, sid)
    res = response(first.receive(frame("SessionStopReq", cm.SessionStopReqType(
        Header=header(sid, 2), ChargingSession=cm.chargingSessionType.Pause)), 2.0))
    assert res.body.ResponseCode.value == "OK" and first.ended
    # The EV comes back (a new TCP connection) with the paused session's ID: OK_OldSessionJoined.
    second = Secc(SeccConfig(), IdleCharger(), 10.0, store, session_id=lambda: b"\x06" * 8)
    protocol = apphand.AppProtocolType(ProtocolNamespace="urn:iso:std:iso:15118:-20:DC", VersionNumberMajor=1,
                                       VersionNumberMinor=0, SchemaID=1, Priority=1)
    second.receive(frame("supportedAppProtocolReq", apphand.supportedAppProtocolReqType(AppProtocol=(protocol,))), 10)
    res = response(second.receive(frame("SessionSetupReq", cm.SessionSetupReqType(
        Header=header(sid, 10), EVCCID="WMI")), 10.1))
    assert res.body.ResponseCode.value == "OK_OldSessionJoined"
    assert res.body.Header.SessionID == sid
    assert second.service == ServiceID.DC_BPT and second.control_mode == ControlMode.DYNAMIC
    # the paused entry is used up by the resume
    assert sid not in store.paused


def test_a_sim_session_the_secc_answers_too_late_ends_as_a_timeout() -> None:
    """The loop's message timeout shrunk below what any real answer takes: the EVCC gives up, the
    result says the transport timed out, and ``session run`` maps that to the timeout exit status."""
    timeouts = Timeouts(message={"DC_ChargeLoopReq": 1e-6})
    result = asyncio.run(run_sim(scenarios.load(None, duration=5.0), speed=1.0, timeouts=timeouts))
    assert not result.ok and result.ending is Ending.TIMEOUT
    assert result.reason == "timeout waiting for DC_ChargeLoopRes"

    with pytest.raises(SessionTimeout, match="DC_ChargeLoop") as raised:
        _report(None, result, as_json=True)  # type: ignore[arg-type]  # JSON output needs no console
    assert raised.value.exit_code == 3


def _pump(evcc: Evcc, secc: Secc, charger: StationCharger) -> None:
    """EVCC against SECC without sockets, simulated time advancing by the EV's pace."""
    outputs = evcc.start(charger.now())
    while not evcc.ended:
        request = next(o for o in outputs if isinstance(o, bytes))
        charger.advance(charger.now() + evcc.pace)
        evcc.sent(charger.now())
        answer = next(o for o in secc.receive(v2gtp.decode_frame(request), charger.now()) if isinstance(o, bytes))
        outputs = evcc.receive(v2gtp.decode_frame(answer), charger.now() + 0.01)


def test_a_paused_session_is_resumed_by_the_evcc() -> None:
    scenario = scenarios.load(None, duration=2.0)
    setup = sim_station(StationConfig(IsolationProfile(Edition.IEC_61851_23_2023, 920.0)), scenario.plant)
    setup.station.run(0.01)
    charger = StationCharger(setup, scenario.charger)
    vehicle = SimVehiclePort(setup, scenario.vehicle)
    store = SessionStore()
    first = Evcc(EvccConfig(duration=2.0, pause=True), vehicle)
    _pump(first, Secc(SeccConfig(), charger, charger.now(), store), charger)
    assert first.ok and first.end_reason == "SessionStop Pause" and not first.resumed
    assert set(store.paused) == {first.session_id}
    setup.station.run(2.0)  # the EV reconnects; meanwhile the DC link bleeds down below 60 V
    second = Evcc(EvccConfig(duration=2.0, resume_session_id=first.session_id), vehicle)
    _pump(second, Secc(SeccConfig(), charger, charger.now(), store), charger)
    assert second.ok and second.resumed and second.session_id == first.session_id
    assert second.end_reason == "SessionStop Terminate" and not store.paused
    setup.station.run(2.0)
    third = Evcc(EvccConfig(duration=2.0, resume_session_id=first.session_id), vehicle)
    _pump(third, Secc(SeccConfig(), charger, charger.now(), store), charger)
    assert third.ok and not third.resumed and third.session_id != first.session_id  # resumed only once


def test_abort_ends_a_session_from_outside() -> None:
    """A lost connection ends the engines at once, with that reason (not a timeout's)."""
    evcc = Evcc(EvccConfig(), StillVehicle())
    evcc.start(0.0)
    (ended,) = [e for e in evcc.abort(0.4, "the SECC closed the connection") if isinstance(e, SessionEnded)]
    assert ended.t == 0.4 and ended.reason == "the SECC closed the connection" and not ended.ok
    assert evcc.ended and evcc.deadline is None
    stopped: list[bool] = []

    class Charger(IdleCharger):
        def stop(self) -> None:
            stopped.append(True)

    secc = Secc(SeccConfig(), Charger(), 0.0)
    (ended,) = [e for e in secc.abort(1.0, "connection failed: reset") if isinstance(e, SessionEnded)]
    assert ended.reason == "connection failed: reset" and secc.ended and stopped == [True]
    assert secc.abort(2.0, "again") == []  # once ended, nothing more


def stop(secc: Secc, sid: bytes, kind: cm.chargingSessionType, now: float) -> messages.Message:
    return response(secc.receive(frame("SessionStopReq", cm.SessionStopReqType(
        Header=header(sid, int(now)), ChargingSession=kind)), now))


def test_service_renegotiation_needs_a_service_offered_first() -> None:
    secc = Secc(SeccConfig(), IdleCharger(), 0.0, session_id=lambda: b"\x07" * 8)
    sid = set_up(secc)
    res = stop(secc, sid, cm.chargingSessionType.ServiceRenegotiation, 0.2)
    assert res.body.ResponseCode.value == "FAILED_SequenceError" and secc.ended


def authorize(secc: Secc, sid: bytes) -> None:
    h = header(sid, 1)
    for name, body in [("AuthorizationSetupReq", cm.AuthorizationSetupReqType(Header=h)),
                       ("AuthorizationReq", cm.AuthorizationReqType(
                           Header=h, SelectedAuthorizationService=cm.authorizationType.EIM,
                           EIM_AReqAuthorizationMode=cm.EIM_AReqAuthorizationModeType()))]:
        assert response(secc.receive(frame(name, body), 1.0)).body.ResponseCode.value == "OK", name


def discover(secc: Secc, sid: bytes, now: float) -> list[int]:
    res = response(secc.receive(frame("ServiceDiscoveryReq", cm.ServiceDiscoveryReqType(
        Header=header(sid, int(now)))), now))
    assert res.body.ServiceRenegotiationSupported
    return [s.ServiceID for s in res.body.EnergyTransferServiceList.Service]


def choose(secc: Secc, sid: bytes, service: ServiceID, now: float) -> str:
    res = response(secc.receive(frame("ServiceSelectionReq", cm.ServiceSelectionReqType(
        Header=header(sid, int(now)),
        SelectedEnergyTransferService=cm.SelectedServiceType(ServiceID=int(service), ParameterSetID=1))), now))
    code: str = res.body.ResponseCode.value
    return code


def test_a_service_the_operator_does_not_allow_is_neither_offered_nor_selectable() -> None:
    secc = Secc(SeccConfig(allowed_services=lambda: frozenset({ServiceID.DC})), IdleCharger(), 0.0)
    sid = set_up(secc)
    authorize(secc, sid)
    assert discover(secc, sid, 1.0) == [int(ServiceID.DC)]
    assert choose(secc, sid, ServiceID.DC_BPT, 1.5) == "FAILED_ServiceSelectionInvalid"


def test_service_renegotiation_keeps_the_session_and_offers_what_is_allowed_now() -> None:
    allowed = {ServiceID.DC}
    secc = Secc(SeccConfig(allowed_services=lambda: frozenset(allowed)), IdleCharger(), 0.0)
    sid = set_up(secc)
    authorize(secc, sid)
    assert discover(secc, sid, 1.0) == [int(ServiceID.DC)]
    assert choose(secc, sid, ServiceID.DC, 1.5) == "OK" and secc.service == ServiceID.DC
    allowed.add(ServiceID.DC_BPT)
    res = stop(secc, sid, cm.chargingSessionType.ServiceRenegotiation, 2.0)
    assert res.body.ResponseCode.value == "OK" and not secc.ended
    assert secc.state.value == "ServiceDiscovery" and secc.service is None
    assert discover(secc, sid, 2.1) == [int(ServiceID.DC), int(ServiceID.DC_BPT)]
    assert choose(secc, sid, ServiceID.DC_BPT, 2.2) == "OK" and secc.service == ServiceID.DC_BPT
    # the same session ends as any other
    assert stop(secc, sid, cm.chargingSessionType.Terminate, 3.0).body.ResponseCode.value == "OK" and secc.ended


def test_an_offer_with_no_service_fails_service_discovery_instead_of_crashing() -> None:
    """The operator allows only DC_BPT on a charger without it: nothing to offer, and a
    ServiceDiscoveryRes needs at least one service (ServiceListType)."""
    secc = Secc(SeccConfig(bpt=False, allowed_services=lambda: frozenset({ServiceID.DC_BPT})), IdleCharger(), 0.0)
    sid = set_up(secc)
    authorize(secc, sid)
    res = response(secc.receive(frame("ServiceDiscoveryReq", cm.ServiceDiscoveryReqType(Header=header(sid, 1))), 1.0))
    assert res.body.ResponseCode.value == "FAILED" and secc.ended
    assert "allows none of this charger's energy transfer services" in secc.end_reason
