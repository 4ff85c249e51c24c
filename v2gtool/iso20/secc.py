"""The sans-IO SECC of an ISO 15118-20 DC / DC_BPT session.

Feed it each received V2GTP frame with a clock reading (:meth:`Secc.receive`); it returns the
frames to send and the events that happened, and says when it must hear from the EVCC again
(:attr:`Secc.deadline`, V2G_SECC_Sequence_Timeout). Sockets, TLS and sleeping live elsewhere.
The sequence rules come from :mod:`v2gtool.iso20.states`; power requests go to a
:class:`~v2gtool.iso20.ports.ChargerPort`, which puts every one through the safety interlock.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from v2gtool import v2gtp
from v2gtool.iso20 import messages, pnc
from v2gtool.iso20.events import (
    EVChargingNeeds,
    MessageReceived,
    MessageSent,
    MeteringConfirmed,
    PhaseChanged,
    PowerFlow,
    SessionEnded,
)
from v2gtool.iso20.metering import EnergyMeter
from v2gtool.iso20.ports import WIRE_PRECISION, CableCheckStatus, ChargerPort, GridRequest, PowerLimits
from v2gtool.iso20.states import SERVICE_RENEGOTIATION, State, allowed, next_state, request_key
from v2gtool.iso20.timeouts import Timeouts
from v2gtool.iso20.values import (
    ControlMode,
    ServiceID,
    SignConvention,
    WallClock,
    clamp,
    dc_parameter_sets,
    header,
    parameter_value,
    rational,
    to_float,
)
from v2gtool.messages import apphand
from v2gtool.messages import iso20_cm as cm
from v2gtool.messages import iso20_ct as ct
from v2gtool.messages import iso20_dc as dc
from v2gtool.session.events import Event

DC_NAMESPACE = "urn:iso:std:iso:15118:-20:DC"
RC = ct.responseCodeType
# DC_ChargeLoopRes EVSEVoltageLimitAchieved: the output is this close to its ceiling (Secc._voltage_ceiling),
# where the power module's constant-voltage limit holds it.
_VOLTAGE_LIMIT_BAND_V = 0.5
# The ScheduleTupleID of the one schedule this SECC offers (any numericIDType would do).
SCHEDULE_TUPLE_ID = 1
# An EVPowerProfile entry is checked against the schedule steps it overlaps by more than this: the EV's
# and the SECC's Unix clocks are not synchronised and both TimeAnchors are whole seconds.
_CLOCK_TOLERANCE_S = 2
Output = bytes | Event


@dataclass(frozen=True)
class _Slot:
    """One step of an offered ScheduleTuple: Unix seconds [start, end) and the most W the EV may
    charge (ChargingSchedule) and discharge (DischargingSchedule, a magnitude; 0 without one)."""

    start: int
    end: int
    charge: float
    discharge: float


@dataclass
class SeccConfig:
    """What this charger offers (ISO 15118-20 ServiceDiscovery / ServiceDetail)."""

    evse_id: str = "DE*V2G*E0001*1"
    bpt: bool = True
    control_modes: tuple[ControlMode, ...] = (ControlMode.SCHEDULED, ControlMode.DYNAMIC)
    timeouts: Timeouts = field(default_factory=Timeouts)
    # Dynamic mode: the grid's request (None: the EV's maximum charge power).
    grid: GridRequest | None = None
    # EVSEPresentCurrent's convention once the EV selected a BPT channel (signed without one: Secc._wire_convention)
    sign_convention: SignConvention = SignConvention.SIGNED
    # Trust anchors for contract certificates (MO / V2G roots): PnC is offered when set.
    pnc_roots: tuple[x509.Certificate, ...] | None = None
    # EVSEProcessing=Ongoing answers before Finished, per phase (cable check always polls once).
    authorization_ongoing: int = 0
    # The operator's or the CSMS's wish to end the session: "Terminate" or "Pause" (EVSENotification).
    stop_request: Callable[[], str | None] | None = None
    # The station's state-of-charge floor refuses discharging now (EVSE_Shutdown_Rejected,
    # Station.discharge_refused): a session asked to discharge then ends (EVSENotification Terminate).
    discharge_refused: Callable[[], bool] | None = None
    # The energy transfer services the operator allows now (e.g. the CSMS's OCPP 2.1
    # NotifyAllowedEnergyTransfer); None: all this charger has. When the set changes during the
    # loop, the SECC asks the EV to renegotiate its service (EVSENotification ServiceRenegotiation).
    allowed_services: Callable[[], frozenset[ServiceID]] | None = None
    # Ask the EV to confirm the meter reading (EVSENotification MeteringConfirmation) this often, s.
    metering_confirmation_interval: float | None = None
    meter_id: str = "V2GTOOL-METER-1"
    # Unix time of clock reading 0 for TimeStamp, TimeAnchor and MeterTimestamp (values.WallClock): a
    # simulation's, its trace's epoch; None on a real link: the wall clock's present time.
    epoch: float | None = None


@dataclass
class SessionStore:
    """Paused sessions (SessionStop Pause) that a later SessionSetup may resume (OK_OldSessionJoined)."""

    paused: dict[bytes, tuple[ServiceID, ControlMode]] = field(default_factory=dict)


class Secc:
    """One SECC session (one TCP connection)."""

    def __init__(
        self,
        config: SeccConfig,
        charger: ChargerPort,
        now: float,
        store: SessionStore | None = None,
        session_id: Callable[[], bytes] | None = None,
    ) -> None:
        self.config = config
        self.charger = charger
        self.store = store if store is not None else SessionStore()
        self._new_session_id = session_id or (lambda: os.urandom(8))
        self.state = State.SUPPORTED_APP_PROTOCOL
        self.session_id = bytes(8)
        self.service: ServiceID | None = None
        self.control_mode: ControlMode | None = None
        self.ev_limits: PowerLimits | None = None  # from DC_ChargeParameterDiscoveryReq
        self._wall = WallClock(config.epoch)
        self.ev_present_voltage = 0.0
        # PowerDeliveryReq Start's BPT_ChannelSelection: the one direction energy may flow ([V2G20-2123])
        self.channel: cm.channelSelectionType | None = None
        self.ended = False
        self.end_reason = ""
        self.deadline = now + config.timeouts.communication_setup
        self._ongoing: dict[str, int] = {}
        self._transferring = False
        self.meter = EnergyMeter()
        self._contract: x509.Certificate | None = None  # PnC: it signs the metering confirmations
        self._meter_info: ct.MeterInfoType | None = None  # the reading the EV was asked to confirm
        self._confirmation_due: float | None = None
        self._schedule_revision: int | None = None  # the grid request's revision the EV was sent
        self._schedules: dict[int, list[_Slot]] = {}  # the last ScheduleExchangeRes: ScheduleTupleID -> steps
        self._discovered: list[ServiceID] = []  # the services the last ServiceDiscoveryRes offered
        self._ev_supports: frozenset[int] | None = None  # ServiceDiscoveryReq SupportedServiceIDs, if given
        self._challenge: bytes | None = None
        self._out: list[Output] = []

    # -- driving ---------------------------------------------------------------------------------------
    def receive(self, frame: v2gtp.V2GTPFrame, now: float) -> list[Output]:
        """Handle one request; returns the response frame and the events, in order.

        A request after :attr:`deadline` comes too late: every response sets V2G_SECC_Sequence_Timeout
        for the next request (ISO 15118-20 Table 215, e.g. [V2G20-2006]), in Standby too, so the
        session ends as in :meth:`on_timeout`. A transport on a real clock calls that at the deadline; this
        catches a clock that jumped past it (a simulated plant advanced by the EV's pause)."""
        self._out = []
        if self.ended:
            return []
        if now > self.deadline:
            return self.on_timeout(now)
        try:
            message = messages.decode(frame)
        except Exception as exc:  # a malformed request ends the session (no response is possible)
            self._end(now, f"undecodable request: {exc}", ok=False)
            return self._out
        self._emit(
            MessageReceived(
                t=now, role="SECC", message=message.name, size=len(frame.payload), summary=_summary(message.body)
            )
        )
        self.charger.advance(now)
        self._handle(message, now)
        self.deadline = now + self.config.timeouts.sequence
        return self._out

    def on_timeout(self, now: float) -> list[Output]:
        """Call when :attr:`deadline` has passed without a request."""
        self._out = []
        if not self.ended and now >= self.deadline:
            self.charger.advance(now)  # the power path up to now: the stop is stamped when it happens
            self.charger.stop()
            if self.state == State.SUPPORTED_APP_PROTOCOL:  # nothing heard since the connection opened
                reason = "V2G_SECC_CommunicationSetup_Timeout: no supportedAppProtocolReq"
            else:
                reason = f"V2G_SECC_Sequence_Timeout: no request in state {self.state.value}"
            self._end(now, reason, ok=False)
        return self._out

    def abort(self, now: float, reason: str) -> list[Output]:
        """End the session from outside (the connection failed or closed): stop the power path."""
        self._out = []
        if not self.ended:
            self.charger.advance(now)
            self.charger.stop()
            self._end(now, reason, ok=False)
        return self._out

    # -- dispatch --------------------------------------------------------------------------------------
    def _handle(self, message: messages.Message, now: float) -> None:
        body = message.body
        name = message.name
        if not name.endswith("Req"):
            self._end(now, f"{name} is not a request", ok=False)
            return
        if name == "supportedAppProtocolReq":
            self._supported_app_protocol(body, now)
            return
        res_name = name[:-3] + "Res"
        if (
            self.state not in (State.SUPPORTED_APP_PROTOCOL, State.SESSION_SETUP)
            and body.Header.SessionID != self.session_id
        ):
            self._fail(res_name, RC.FAILED_UnknownSession, now)
            return
        qualifier = (
            body.ChargeProgress.value
            if name == "PowerDeliveryReq"
            else body.ChargingSession.value if name == "SessionStopReq" else None
        )
        key = request_key(name, qualifier)
        if next_state(self.state, key) is None:
            self._fail(
                res_name,
                RC.FAILED_SequenceError,
                now,
                detail=f"{key} in state {self.state.value}; allowed: {', '.join(allowed(self.state))}",
            )
            return
        handler = getattr(self, "_" + name[:-3].lower(), None)
        assert handler is not None, name
        handler(body, now)

    def _respond(
        self, name: str, body: Any, now: float, key: str | None = None, ongoing: bool = False, detail: str = ""
    ) -> None:
        frame = messages.encode(name, body)
        self._emit(
            MessageSent(t=now, role="SECC", message=name, size=len(frame) - v2gtp.HEADER_LENGTH, summary=_summary(body))
        )
        self._out.append(frame)
        code = getattr(body, "ResponseCode", None)
        if code is not None and code.value.startswith("FAILED"):
            self.charger.stop()
            self._end(now, f"{name} {code.value}" + (f": {detail}" if detail else ""), ok=False, code=code.value)
            return
        if key is not None:
            target = next_state(self.state, key, ongoing)
            if target is not None and target != self.state:
                self.state = target
                self._emit(PhaseChanged(t=now, role="SECC", phase=target.value))

    def _fail(self, res_name: str, code: RC, now: float, detail: str = "") -> None:
        body = messages.minimal(res_name, Header=self._header(now), ResponseCode=code)
        self._respond(res_name, body, now, detail=detail)

    def _end(self, now: float, reason: str, ok: bool, code: str | None = None) -> None:
        if not self.ended:
            self.ended = True
            self.end_reason = reason
            self.state = State.ENDED
            self._emit(SessionEnded(t=now, role="SECC", reason=reason, ok=ok, response_code=code))

    def _emit(self, event: Event) -> None:
        self._out.append(event)

    def _header(self, now: float) -> ct.MessageHeaderType:
        return header(self.session_id, self._wall.unix(now))

    # -- the handlers, in session order -----------------------------------------------------------------
    def _supported_app_protocol(self, body: apphand.supportedAppProtocolReqType, now: float) -> None:
        if self.state != State.SUPPORTED_APP_PROTOCOL:
            self._end(now, "supportedAppProtocolReq after the handshake", ok=False)
            return
        candidates = sorted(
            (p for p in body.AppProtocol if p.ProtocolNamespace == DC_NAMESPACE and p.VersionNumberMajor == 1),
            key=lambda p: p.Priority,
        )
        if not candidates:
            res = apphand.supportedAppProtocolResType(ResponseCode=apphand.responseCodeType.Failed_NoNegotiation)
            self._respond("supportedAppProtocolRes", res, now)
            offered = ", ".join(p.ProtocolNamespace for p in body.AppProtocol)
            self._end(now, f"no common protocol (EV offered {offered})", ok=False)
            return
        chosen = candidates[0]
        code = (
            apphand.responseCodeType.OK_SuccessfulNegotiation
            if chosen.VersionNumberMinor == 0
            else apphand.responseCodeType.OK_SuccessfulNegotiationWithMinorDeviation
        )
        self._respond(
            "supportedAppProtocolRes",
            apphand.supportedAppProtocolResType(ResponseCode=code, SchemaID=chosen.SchemaID),
            now,
            key="supportedAppProtocolReq",
        )

    def _sessionsetup(self, body: cm.SessionSetupReqType, now: float) -> None:
        requested = body.Header.SessionID
        resumed = self.store.paused.pop(requested, None) if any(requested) else None
        if resumed is not None:
            self.session_id = requested
            self.service, self.control_mode = resumed
            code = RC.OK_OldSessionJoined
        else:
            self.session_id = self._new_session_id()
            code = RC.OK_NewSessionEstablished
        res = cm.SessionSetupResType(Header=self._header(now), ResponseCode=code, EVSEID=self.config.evse_id)
        self._respond("SessionSetupRes", res, now, key="SessionSetupReq")

    def _authorizationsetup(self, body: cm.AuthorizationSetupReqType, now: float) -> None:
        if self.config.pnc_roots is not None:  # PnC offered: the challenge the EV must sign (8.3.4.2)
            self._challenge = os.urandom(16)
            modes: dict[str, Any] = {
                "PnC_ASResAuthorizationMode": cm.PnC_ASResAuthorizationModeType(GenChallenge=self._challenge)
            }
            services: tuple[cm.authorizationType, ...] = (cm.authorizationType.EIM, cm.authorizationType.PnC)
        else:
            modes = {"EIM_ASResAuthorizationMode": cm.EIM_ASResAuthorizationModeType()}
            services = (cm.authorizationType.EIM,)
        res = cm.AuthorizationSetupResType(
            Header=self._header(now),
            ResponseCode=RC.OK,
            AuthorizationServices=services,
            CertificateInstallationService=False,
            **modes,
        )
        self._respond("AuthorizationSetupRes", res, now, key="AuthorizationSetupReq")

    def _authorization(self, body: cm.AuthorizationReqType, now: float) -> None:
        if body.SelectedAuthorizationService == cm.authorizationType.PnC:
            self._authorization_pnc(body, now)
            return
        ongoing = self._count("Authorization") <= self.config.authorization_ongoing
        res = cm.AuthorizationResType(
            Header=self._header(now),
            ResponseCode=RC.OK,
            EVSEProcessing=ct.processingType.Ongoing if ongoing else ct.processingType.Finished,
        )
        self._respond("AuthorizationRes", res, now, key="AuthorizationReq", ongoing=ongoing)

    def _authorization_pnc(self, body: cm.AuthorizationReqType, now: float) -> None:
        if self.config.pnc_roots is None or self._challenge is None:
            code, reason = RC.WARNING_AuthorizationSelectionInvalid, "PnC was not offered"
        else:
            try:
                authorized = pnc.verify(body, self._challenge, self.config.pnc_roots)
            except pnc.PncRejected as exc:
                code, reason = ct.responseCodeType[exc.response_code], str(exc)
            else:
                self._contract = authorized.contract
                code, reason = ct.responseCodeType[authorized.response_code], ""
        if code.value.startswith("FAILED"):
            self._fail("AuthorizationRes", code, now, detail=reason)
            return
        res = cm.AuthorizationResType(
            Header=self._header(now), ResponseCode=code, EVSEProcessing=ct.processingType.Finished
        )
        # OK and OK_CertificateExpiresSoon authorize; a WARNING leaves the session where it is: the EV
        # may select EIM instead
        authorizes = code.value.startswith("OK")
        self._respond("AuthorizationRes", res, now, key="AuthorizationReq" if authorizes else None)

    def _offered(self) -> list[ServiceID]:
        """What this charger has, as far as the operator allows it now."""
        offered = [ServiceID.DC] + ([ServiceID.DC_BPT] if self.config.bpt else [])
        allowed_now = self.config.allowed_services
        return offered if allowed_now is None else [s for s in offered if s in allowed_now()]

    def _servicediscovery(self, body: cm.ServiceDiscoveryReqType, now: float) -> None:
        supported = body.SupportedServiceIDs
        self._ev_supports = frozenset(supported.ServiceID) if supported is not None else None
        self._discovered = self._offered()
        if not self._discovered:  # the list must hold a service (ServiceListType)
            detail = "the operator allows none of this charger's energy transfer services"
            self._fail("ServiceDiscoveryRes", RC.FAILED, now, detail=detail)
            return
        services = tuple(cm.ServiceType(ServiceID=int(s), FreeService=False) for s in self._discovered)
        res = cm.ServiceDiscoveryResType(
            Header=self._header(now),
            ResponseCode=RC.OK,
            ServiceRenegotiationSupported=True,
            EnergyTransferServiceList=cm.ServiceListType(Service=services),
        )
        self._respond("ServiceDiscoveryRes", res, now, key="ServiceDiscoveryReq")

    def _servicedetail(self, body: cm.ServiceDetailReqType, now: float) -> None:
        if body.ServiceID not in [int(s) for s in self._offered()]:
            self._fail("ServiceDetailRes", RC.FAILED_ServiceIDInvalid, now)
            return
        sets = dc_parameter_sets(ServiceID(body.ServiceID), list(self.config.control_modes))
        res = cm.ServiceDetailResType(
            Header=self._header(now),
            ResponseCode=RC.OK,
            ServiceID=body.ServiceID,
            ServiceParameterList=cm.ServiceParameterListType(ParameterSet=sets),
        )
        self._respond("ServiceDetailRes", res, now, key="ServiceDetailReq")

    def _serviceselection(self, body: cm.ServiceSelectionReqType, now: float) -> None:
        selected = body.SelectedEnergyTransferService
        if selected.ServiceID not in [int(s) for s in self._offered()]:
            self._fail("ServiceSelectionRes", RC.FAILED_ServiceSelectionInvalid, now)
            return
        sets = {
            p.ParameterSetID: p
            for p in dc_parameter_sets(ServiceID(selected.ServiceID), list(self.config.control_modes))
        }
        if selected.ParameterSetID not in sets:
            self._fail("ServiceSelectionRes", RC.FAILED_ServiceSelectionInvalid, now)
            return
        self.service = ServiceID(selected.ServiceID)
        mode = parameter_value(sets[selected.ParameterSetID], "ControlMode")
        assert mode is not None  # every parameter set this SECC offers names its control mode
        self.control_mode = ControlMode(mode)
        res = cm.ServiceSelectionResType(Header=self._header(now), ResponseCode=RC.OK)
        self._respond("ServiceSelectionRes", res, now, key="ServiceSelectionReq")

    def _dc_chargeparameterdiscovery(self, body: dc.DC_ChargeParameterDiscoveryReqType, now: float) -> None:
        lim = self.charger.limits()
        bpt = body.BPT_DC_CPDReqEnergyTransferMode
        plain = body.DC_CPDReqEnergyTransferMode
        if (self.service == ServiceID.DC_BPT) != (bpt is not None) or (bpt is None and plain is None):
            self._fail("DC_ChargeParameterDiscoveryRes", RC.FAILED_WrongChargeParameter, now)
            return
        self.ev_limits = PowerLimits.from_message(bpt or plain, "EV")
        common: dict[str, Any] = dict(
            EVSEMaximumChargePower=rational(lim.max_charge_power),
            EVSEMinimumChargePower=rational(lim.min_charge_power),
            EVSEMaximumChargeCurrent=rational(lim.max_charge_current),
            EVSEMinimumChargeCurrent=rational(lim.min_charge_current),
            EVSEMaximumVoltage=rational(lim.max_voltage),
            EVSEMinimumVoltage=rational(lim.min_voltage),
        )
        if bpt is not None:
            mode = dc.BPT_DC_CPDResEnergyTransferModeType(
                **common,
                EVSEMaximumDischargePower=rational(lim.max_discharge_power),
                EVSEMinimumDischargePower=rational(lim.min_discharge_power),
                EVSEMaximumDischargeCurrent=rational(lim.max_discharge_current),
                EVSEMinimumDischargeCurrent=rational(lim.min_discharge_current),
            )
            res = dc.DC_ChargeParameterDiscoveryResType(
                Header=self._header(now), ResponseCode=RC.OK, BPT_DC_CPDResEnergyTransferMode=mode
            )
        else:
            res = dc.DC_ChargeParameterDiscoveryResType(
                Header=self._header(now),
                ResponseCode=RC.OK,
                DC_CPDResEnergyTransferMode=dc.DC_CPDResEnergyTransferModeType(**common),
            )
        self._respond("DC_ChargeParameterDiscoveryRes", res, now, key="DC_ChargeParameterDiscoveryReq")

    def _scheduleexchange(self, body: cm.ScheduleExchangeReqType, now: float) -> None:
        dynamic = body.Dynamic_SEReqControlMode is not None
        if dynamic != (self.control_mode == ControlMode.DYNAMIC):
            self._fail("ScheduleExchangeRes", RC.FAILED_ScheduleSelectionInvalid, now)
            return
        if self.ev_limits is not None and self.service is not None and self.control_mode is not None:
            self._emit(_charging_needs(body, self.ev_limits, self.service, self.control_mode, now))
        if dynamic:
            req = body.Dynamic_SEReqControlMode
            assert req is not None
            res = cm.ScheduleExchangeResType(
                Header=self._header(now),
                ResponseCode=RC.OK,
                EVSEProcessing=ct.processingType.Finished,
                Dynamic_SEResControlMode=cm.Dynamic_SEResControlModeType(
                    DepartureTime=req.DepartureTime, MinimumSOC=req.MinimumSOC, TargetSOC=req.TargetSOC
                ),
            )
        else:
            res = cm.ScheduleExchangeResType(
                Header=self._header(now),
                ResponseCode=RC.OK,
                EVSEProcessing=ct.processingType.Finished,
                Scheduled_SEResControlMode=cm.Scheduled_SEResControlModeType(
                    ScheduleTuple=(self._schedule_tuple(now, body.MaximumSupportingPoints),)
                ),
            )
        self._respond("ScheduleExchangeRes", res, now, key="ScheduleExchangeReq")

    def _schedule_tuple(self, now: float, points: int) -> cm.ScheduleTupleType:
        """One 24 h schedule within the charger's limits and the grid request (an OCPP charging
        profile), at most *points* entries (the EV's MaximumSupportingPoints); with BPT a
        discharging schedule too, its powers negative (8.3.5.3.30). The steps are kept to check the EV's
        EVPowerProfile against (:meth:`_power_profile_error`)."""
        lim = self.charger.limits()
        day = 86400
        grid = self.config.grid
        wanted = grid.schedule(now, day) if grid is not None else [(day, None)]
        self._schedule_revision = grid.revision if grid is not None else None
        wanted = wanted[: max(points, 1)]
        anchor = self._wall.unix(now)

        # One flat price level for the whole day (ServiceDetail Pricing = 2, price levels).
        prices = cm.PriceLevelScheduleType(
            TimeAnchor=anchor,
            PriceScheduleID=1,
            NumberOfPriceLevels=1,
            PriceLevelScheduleEntries=cm.PriceLevelScheduleEntryListType(
                PriceLevelScheduleEntry=(cm.PriceLevelScheduleEntryType(Duration=day, PriceLevel=0),)
            ),
        )

        def charging(watts: float | None) -> float:
            return lim.max_charge_power if watts is None else clamp(watts, 0.0, lim.max_charge_power)

        def discharging(watts: float | None) -> float:
            return lim.max_discharge_power if watts is None else clamp(-watts, 0.0, lim.max_discharge_power)

        bpt = self.service == ServiceID.DC_BPT
        slots: list[_Slot] = []
        for seconds, watts in wanted:
            start = slots[-1].end if slots else anchor
            end = start + max(1, round(seconds))
            slots.append(_Slot(start, end, charging(watts), discharging(watts) if bpt else 0.0))
        self._schedules = {SCHEDULE_TUPLE_ID: slots}

        def schedule(sign: float, power: Callable[[_Slot], float]) -> cm.ChargingScheduleType:
            entries = tuple(
                cm.PowerScheduleEntryType(Duration=slot.end - slot.start, Power=rational(sign * power(slot)))
                for slot in slots
            )
            return cm.ChargingScheduleType(
                PowerSchedule=cm.PowerScheduleType(
                    TimeAnchor=anchor,
                    PowerScheduleEntries=cm.PowerScheduleEntryListType(PowerScheduleEntry=entries),
                ),
                PriceLevelSchedule=prices,
            )

        return cm.ScheduleTupleType(
            ScheduleTupleID=SCHEDULE_TUPLE_ID,
            ChargingSchedule=schedule(1.0, lambda slot: slot.charge),
            DischargingSchedule=schedule(-1.0, lambda slot: slot.discharge) if bpt else None,
        )

    def _dc_cablecheck(self, body: dc.DC_CableCheckReqType, now: float) -> None:
        # The test voltage follows the EV's maximum (IEC 61851-23 CC.1); the EVSE's when none was declared.
        ev_max_voltage = self.ev_limits.max_voltage if self.ev_limits is not None else self.charger.limits().max_voltage
        status = self.charger.cable_check(ev_max_voltage)
        if status == CableCheckStatus.FAULT:
            res = dc.DC_CableCheckResType(
                Header=self._header(now), ResponseCode=RC.FAILED, EVSEProcessing=ct.processingType.Finished
            )
            self._respond("DC_CableCheckRes", res, now)
            return
        ongoing = status == CableCheckStatus.ONGOING
        res = dc.DC_CableCheckResType(
            Header=self._header(now),
            ResponseCode=RC.OK,
            EVSEProcessing=ct.processingType.Ongoing if ongoing else ct.processingType.Finished,
        )
        self._respond("DC_CableCheckRes", res, now, key="DC_CableCheckReq", ongoing=ongoing)

    def _dc_precharge(self, body: dc.DC_PreChargeReqType, now: float) -> None:
        """Regulate the output towards the EV's EVTargetVoltage (standards digest section 4.2 item 9),
        never above :meth:`_maximum_voltage`: the EV declared in DC_ChargeParameterDiscoveryReq that
        its side stands no more than EVMaximumVoltage. The digest names no response code for a
        target above it, so the SECC answers OK with the voltage it holds; an EV whose battery sits
        above its own maximum never sees its precharge match and ends the session by its
        V2G_EVCC_PreCharge_Timeout (section 4.4)."""
        target = to_float(body.EVTargetVoltage)
        self.ev_present_voltage = to_float(body.EVPresentVoltage)
        present = self.charger.precharge(min(target, self._maximum_voltage()))
        res = dc.DC_PreChargeResType(
            Header=self._header(now), ResponseCode=RC.OK, EVSEPresentVoltage=rational(present)
        )
        self._respond("DC_PreChargeRes", res, now, key="DC_PreChargeReq")

    def _powerdelivery(self, body: cm.PowerDeliveryReqType, now: float) -> None:
        progress = body.ChargeProgress
        key = request_key("PowerDeliveryReq", progress.value)
        ongoing = body.EVProcessing == ct.processingType.Ongoing
        if progress == cm.chargeProgressType.Start and not ongoing:
            error = self._power_profile_error(body.EVPowerProfile)
            if error is not None:
                self._fail("PowerDeliveryRes", error[0], now, detail=error[1])
                return
        if progress == cm.chargeProgressType.Start and ongoing:
            pass  # the EV is not ready yet (8.3.4.4.3): acknowledge, stay in precharge
        elif progress == cm.chargeProgressType.ScheduleRenegotiation:
            pass  # back to ScheduleExchange with the contactors closed; the loop resumes after it
        elif progress == cm.chargeProgressType.Standby and self._transferring:
            # The EV pauses energy transfer: no current, contactors closed, Start resumes at once.
            self.charger.regulate(0.0, self._maximum_voltage())
            self.meter.idle()
        elif progress == cm.chargeProgressType.Start and self._transferring:
            pass  # Start after a renegotiation: energy transfer never stopped
        elif progress == cm.chargeProgressType.Start:
            if body.BPT_ChannelSelection is not None and self.service != ServiceID.DC_BPT:
                self._fail("PowerDeliveryRes", RC.FAILED_PowerDeliveryNotApplied, now)
                return
            self.channel = body.BPT_ChannelSelection
            # The interlock compares the DC link with the battery voltage the EV reported in precharge.
            refusal = self.charger.start_energy_transfer(self.ev_present_voltage)
            if refusal is not None:
                self._fail("PowerDeliveryRes", RC.FAILED_PowerDeliveryNotApplied, now, detail=refusal)
                return
            self._transferring = True
        else:
            self.charger.stop()
            self.meter.idle()
            self._transferring = False
        res = cm.PowerDeliveryResType(Header=self._header(now), ResponseCode=RC.OK)
        self._respond("PowerDeliveryRes", res, now, key=key, ongoing=ongoing)

    def _power_profile_error(self, profile: cm.EVPowerProfileType | None) -> tuple[RC, str] | None:
        """What is wrong with a Scheduled-mode EVPowerProfile of PowerDeliveryReq Start, or None.

        Its SelectedScheduleTupleID must name a ScheduleTuple of the last ScheduleExchangeRes
        ([V2G20-479]; that requirement names FAILED_TariffSelectionInvalid, which the -20 schema
        lacks: FAILED_ScheduleSelectionInvalid, as EVerest and the iso15118 package answer), and no
        entry may ask for more power than that schedule offers in any step it overlaps by more than
        the clocks' tolerance ([V2G20-478]: FAILED_EVPowerProfileInvalid); a positive power against
        the ChargingSchedule, a negative one against the DischargingSchedule. The profile itself is
        optional in the schema and a Dynamic-mode profile has no schedule to be checked against:
        both pass."""
        scheduled = profile.Scheduled_EVPPTControlMode if profile is not None else None
        if profile is None or scheduled is None or self.control_mode != ControlMode.SCHEDULED:
            return None
        slots = self._schedules.get(scheduled.SelectedScheduleTupleID)
        if slots is None:
            offered = ", ".join(str(i) for i in self._schedules) or "none"
            detail = f"SelectedScheduleTupleID {scheduled.SelectedScheduleTupleID} was not offered (offered: {offered})"
            return RC.FAILED_ScheduleSelectionInvalid, detail
        start = profile.TimeAnchor
        for entry in profile.EVPowerProfileEntries.EVPowerProfileEntry:
            end, watts = start + entry.Duration, to_float(entry.Power)
            for slot in slots:
                offered_w = slot.charge if watts >= 0 else slot.discharge
                overlap = min(end, slot.end) - max(start, slot.start)
                if overlap > _CLOCK_TOLERANCE_S and abs(watts) > offered_w * (1 + WIRE_PRECISION):
                    tuple_id = scheduled.SelectedScheduleTupleID
                    detail = f"EVPowerProfile asks {watts:.0f} W where schedule {tuple_id} offers {offered_w:.0f} W"
                    return RC.FAILED_EVPowerProfileInvalid, detail
            start = end
        return None

    def _dc_chargeloop(self, body: dc.DC_ChargeLoopReqType, now: float) -> None:
        fault = self.charger.fault()
        if fault is not None:
            self._fail("DC_ChargeLoopRes", RC.FAILED, now, detail=fault)
            return
        ev_voltage = to_float(body.EVPresentVoltage)
        target, mode_res = self._loop_target(body, ev_voltage, now)
        if target is None:
            self._fail("DC_ChargeLoopRes", RC.FAILED_WrongChargeParameter, now)
            return
        allowed_current, at_current_limit, at_power_limit = self._deliverable(target, ev_voltage, now)
        status = None
        grid = self.config.grid
        if self.control_mode == ControlMode.SCHEDULED and grid is not None and grid.revision != self._schedule_revision:
            # a new schedule from the grid: renegotiate
            status = ct.EVSEStatusType(
                NotificationMaxDelay=0, EVSENotification=ct.evseNotificationType.ScheduleRenegotiation
            )
        voltage_limit = self._voltage_ceiling(body)
        voltage, current = self.charger.regulate(allowed_current, voltage_limit)
        soc = body.DisplayParameters.PresentSOC if body.DisplayParameters else None
        self.meter.sample(now, voltage, voltage * current, soc)
        meter_info = self._meter_reading(now) if body.MeterInfoRequested else None
        wanted = self.config.stop_request() if self.config.stop_request is not None else None
        if wanted is None and self._discharge_floor_reached(allowed_current):
            wanted = "Terminate"
        if status is None and wanted in ("Terminate", "Pause"):  # EVSENotification: the EV ends the session
            status = ct.EVSEStatusType(NotificationMaxDelay=0, EVSENotification=ct.evseNotificationType(wanted))
        if status is None and self._service_renegotiation_due():
            status = ct.EVSEStatusType(
                NotificationMaxDelay=0, EVSENotification=ct.evseNotificationType.ServiceRenegotiation
            )
        if status is None and self._metering_due(now):
            meter_info = self._meter_info = self._meter_reading(now)
            status = ct.EVSEStatusType(
                NotificationMaxDelay=0, EVSENotification=ct.evseNotificationType.MeteringConfirmation
            )
        res = dc.DC_ChargeLoopResType(
            Header=self._header(now),
            ResponseCode=RC.OK,
            EVSEPresentCurrent=rational(self._wire_convention().to_wire(current)),
            EVSEPresentVoltage=rational(voltage),
            EVSEPowerLimitAchieved=at_power_limit,
            EVSECurrentLimitAchieved=at_current_limit,
            EVSEVoltageLimitAchieved=voltage >= voltage_limit - _VOLTAGE_LIMIT_BAND_V,
            EVSEStatus=status,
            MeterInfo=meter_info,
            **mode_res,
        )
        self._emit(
            PowerFlow(
                t=now,
                role="SECC",
                voltage=voltage,
                current=current,
                power=voltage * current,
                soc=soc,
            )
        )
        self._respond("DC_ChargeLoopRes", res, now, key="DC_ChargeLoopReq")

    def _deliverable(self, target: float, ev_voltage: float, now: float) -> tuple[float, bool, bool]:
        """The signed current this loop delivers for the EV's (or the Dynamic mode's) *target*, and
        whether the EVSE's maximum current, and its maximum power or the schedule's, hold it there
        (EVSECurrentLimitAchieved, EVSEPowerLimitAchieved; the EV's own limits are neither).

        At most both sides' maximum current and power and, in Scheduled mode, the grid's schedule now;
        the power is taken at the higher of the EV's EVPresentVoltage and the charger's present output
        voltage (above the battery's while charging), so the delivered power stays within
        EVSEMaximumChargePower. 0 when the request is below either side's minimum current or power
        (ISO 15118-20 8.3.5.5): the EVSE cannot deliver less than its minimum and must not deliver
        more than the EV's EVTargetCurrent, so it delivers 0 (the EVCC raises a smaller wish to the
        minimum itself, :meth:`Evcc._signed_current`). The minimum is judged at *ev_voltage*, the
        voltage the EV computed its request with. The EVSE's maxima are those that hold now
        (:meth:`ChargerPort.present_limits`: under a thermal derating, the current the station holds
        the output to), so EVSECurrentLimitAchieved is set while the derating holds the current."""
        voltage = max(ev_voltage, self.charger.present_voltage())
        evse = self.charger.present_limits()
        sides = [evse] + ([self.ev_limits] if self.ev_limits is not None else [])
        current = target
        for side in sides:
            current = side.clamp_current(current, voltage)
        unscheduled = current
        grid = self.config.grid
        if self.control_mode == ControlMode.SCHEDULED and grid is not None:
            current = _within_schedule(current, grid.power(now), voltage)
        at_schedule = abs(current) < abs(unscheduled)
        if any(side.below_minimum(current, ev_voltage) for side in sides):
            return 0.0, False, at_schedule
        at_current, at_power = evse.at_maximum(current, voltage)
        return current, at_current, at_power or at_schedule

    def _voltage_ceiling(self, body: dc.DC_ChargeLoopReqType) -> float:
        """The output's constant-voltage limit: the lower of both sides' maximum voltage and, in
        Scheduled mode, the EV's EVTargetVoltage. The EV charges CC/CV: its target voltage is what
        the EVSE must not exceed (ISO 15118-20 8.3.5.5.6, Scheduled_DC_CLReqControlMode), and
        EVSEVoltageLimitAchieved says when this ceiling holds the output."""
        ceiling = self._maximum_voltage()
        scheduled = body.BPT_Scheduled_DC_CLReqControlMode or body.Scheduled_DC_CLReqControlMode
        if self.control_mode == ControlMode.SCHEDULED and scheduled is not None:
            ceiling = min(ceiling, to_float(scheduled.EVTargetVoltage))
        return ceiling

    def _wire_convention(self) -> SignConvention:
        """How EVSEPresentCurrent carries the direction: as configured once the EV selected a power
        channel in PowerDeliveryReq Start (BPT_ChannelSelection names the direction, [V2G20-2123],
        standards digest section 4.2 item 10, so :attr:`SignConvention.CHANNEL` may write magnitudes);
        signed without one (a DC session, or a DC_BPT EV that left the channel open, as ours does in
        Dynamic mode), where a magnitude would not say which way the energy flows."""
        return self.config.sign_convention if self.channel is not None else SignConvention.SIGNED

    def _maximum_voltage(self) -> float:
        """The most the output may be driven to: the lower of the EVSE's and the EV's maximum voltage
        (DC_ChargeParameterDiscovery EVSEMaximumVoltage / EVMaximumVoltage); the EVSE's alone before
        the EV declared its limits."""
        charger = self.charger.limits().max_voltage
        return charger if self.ev_limits is None else min(charger, self.ev_limits.max_voltage)

    def _discharge_floor_reached(self, allowed_current: float) -> bool:
        """This loop asks to discharge (the EV's target in Scheduled mode, the grid's request in
        Dynamic mode) and the station's SoC floor refuses it: the session has nothing left to
        transfer, so the SECC asks the EV to end it (EVSEStatus.EVSENotification Terminate, standards
        digest section 4.2; the EV answers with PowerDelivery Stop and SessionStop Terminate)."""
        refused = self.config.discharge_refused
        return allowed_current < 0 and refused is not None and refused()

    def _service_renegotiation_due(self) -> bool:
        """The operator's offer changed in a way that matters to this EV: the service it runs is no
        longer allowed, or a service it supports (SupportedServiceIDs; all, if it named none) now is."""
        if self.config.allowed_services is None:
            return False
        offered = self._offered()
        if not offered:
            return False  # nothing to select: renegotiating would only end the session
        supports = self._ev_supports
        added = [s for s in offered if s not in self._discovered and (supports is None or int(s) in supports)]
        return self.service not in offered or bool(added)

    def _meter_reading(self, now: float) -> ct.MeterInfoType:
        """The meter's registers as MeterInfoType (whole Wh; the discharge register with BPT)."""
        return ct.MeterInfoType(
            MeterID=self.config.meter_id,
            ChargedEnergyReadingWh=int(self.meter.imported_wh),
            BPT_DischargedEnergyReadingWh=int(self.meter.exported_wh) if self.service == ServiceID.DC_BPT else None,
            MeterTimestamp=self._wall.unix(now),
        )

    def _metering_due(self, now: float) -> bool:
        interval = self.config.metering_confirmation_interval
        if interval is None:
            return False
        if self._confirmation_due is None:
            self._confirmation_due = now + interval
        if now < self._confirmation_due:
            return False
        self._confirmation_due = now + interval
        return True

    def _meteringconfirmation(self, body: cm.MeteringConfirmationReqType, now: float) -> None:
        """The EV confirms the reading it was sent: same session, same registers, and in a PnC
        session signed with its contract key: the Header Signature references SignedMeteringData
        (V2G_CI_CommonMessages.xsd SignedMeteringDataType); a bad one is FAILED_MeteringSignatureNotValid."""
        data = body.SignedMeteringData
        sent = self._meter_info
        if sent is None or data.SessionID != self.session_id or data.MeterInfo != sent:
            self._fail("MeteringConfirmationRes", RC.FAILED, now, detail="not the meter reading this SECC sent")
            return
        if self._contract is not None:
            try:
                pnc.verify_element(
                    body.Header.Signature,
                    "SignedMeteringData",
                    data,
                    data.Id,
                    self._contract,
                    RC.FAILED_MeteringSignatureNotValid.value,
                )
            except pnc.PncRejected as exc:
                self._fail("MeteringConfirmationRes", RC.FAILED_MeteringSignatureNotValid, now, detail=str(exc))
                return
        self._meter_info = None
        self._emit(
            MeteringConfirmed(
                t=now,
                role="SECC",
                charged_wh=data.MeterInfo.ChargedEnergyReadingWh,
                discharged_wh=data.MeterInfo.BPT_DischargedEnergyReadingWh,
                signed=self._contract is not None,
            )
        )
        res = cm.MeteringConfirmationResType(Header=self._header(now), ResponseCode=RC.OK)
        self._respond("MeteringConfirmationRes", res, now, key="MeteringConfirmationReq")

    def _loop_target(
        self, body: dc.DC_ChargeLoopReqType, ev_voltage: float, now: float
    ) -> tuple[float | None, dict[str, Any]]:
        """The signed current the EV asks for (Scheduled) or the SECC decides (Dynamic), and the
        control-mode element of the response (ISO 15118-20 8.3.5.5.6/7).

        A DC_BPT EV that selected a power channel in PowerDeliveryReq Start (BPT_ChannelSelection,
        [V2G20-2123], standards digest section 4.2: it is how the EV switches the reverse power path by
        HLC) gets energy in that direction only. The channel, not the sign, says the direction: the
        EV's own EVTargetCurrent (Scheduled) is read as a magnitude in the channel's direction
        whatever the sign convention (a target of the other sign comes from an EV that writes
        magnitudes, :attr:`SignConvention.CHANNEL`, and still names how much it wants), while the
        grid's request (Dynamic), which the EV did not make, is held to the channel's side of zero:
        a request the other way transfers nothing. Without a channel the sign is the only thing that
        says the direction, so the target is read as signed (:meth:`_wire_convention`).

        The Dynamic mode's EVSEMaximum* values are the charger's present limits (under its thermal
        derating), not the rated ones of DC_ChargeParameterDiscoveryRes: what it can deliver now."""
        lim = self.charger.present_limits()
        bpt = self.service == ServiceID.DC_BPT
        discharge_channel = self.channel == cm.channelSelectionType.Discharge
        if self.control_mode == ControlMode.SCHEDULED:
            req = body.BPT_Scheduled_DC_CLReqControlMode if bpt else body.Scheduled_DC_CLReqControlMode
            if req is None:
                return None, {}
            if bpt:
                convention = SignConvention.CHANNEL if self.channel is not None else SignConvention.SIGNED
                target = convention.from_wire(to_float(req.EVTargetCurrent), discharge_channel)
                return target, {"BPT_Scheduled_DC_CLResControlMode": dc.BPT_Scheduled_DC_CLResControlModeType()}
            return to_float(req.EVTargetCurrent), {
                "Scheduled_DC_CLResControlMode": dc.Scheduled_DC_CLResControlModeType()
            }
        dyn = body.BPT_Dynamic_DC_CLReqControlMode if bpt else body.Dynamic_DC_CLReqControlMode
        if dyn is None:
            return None, {}
        # Dynamic: the SECC decides the power within the EV's momentary limits (the grid request; without
        # one, the EV's maximum in its channel's direction).
        ev_max_charge = to_float(dyn.EVMaximumChargePower)
        ev_max_discharge = to_float(getattr(dyn, "EVMaximumDischargePower", None)) if bpt else 0.0
        request = self.config.grid.power(now) if self.config.grid is not None else None
        if request is None:
            request = -ev_max_discharge if discharge_channel else ev_max_charge
        low = 0.0 if self.channel == cm.channelSelectionType.Charge else -ev_max_discharge
        high = 0.0 if discharge_channel else ev_max_charge
        current = clamp(request, low, high) / max(ev_voltage, 1.0)
        common: dict[str, Any] = dict(
            EVSEMaximumChargePower=rational(lim.max_charge_power),
            EVSEMinimumChargePower=rational(lim.min_charge_power),
            EVSEMaximumChargeCurrent=rational(lim.max_charge_current),
            EVSEMaximumVoltage=rational(lim.max_voltage),
        )
        if bpt:
            return current, {
                "BPT_Dynamic_DC_CLResControlMode": dc.BPT_Dynamic_DC_CLResControlModeType(
                    **common,
                    EVSEMaximumDischargePower=rational(lim.max_discharge_power),
                    EVSEMinimumDischargePower=rational(lim.min_discharge_power),
                    EVSEMaximumDischargeCurrent=rational(lim.max_discharge_current),
                    EVSEMinimumVoltage=rational(lim.min_voltage),
                )
            }
        return current, {"Dynamic_DC_CLResControlMode": dc.Dynamic_DC_CLResControlModeType(**common)}

    def _dc_weldingdetection(self, body: dc.DC_WeldingDetectionReqType, now: float) -> None:
        fault = self.charger.fault()
        if fault is not None:  # e.g. a welded K1/K2 found when they were told to open
            self._fail("DC_WeldingDetectionRes", RC.FAILED_ContactorError, now, detail=fault)
            return
        res = dc.DC_WeldingDetectionResType(
            Header=self._header(now),
            ResponseCode=RC.OK,
            EVSEPresentVoltage=rational(self.charger.present_voltage()),
        )
        self._respond("DC_WeldingDetectionRes", res, now, key="DC_WeldingDetectionReq")

    def _sessionstop(self, body: cm.SessionStopReqType, now: float) -> None:
        self.charger.stop()
        if body.ChargingSession == cm.chargingSessionType.ServiceRenegotiation:
            self._renegotiate_service(now)
            return
        pause = body.ChargingSession == cm.chargingSessionType.Pause
        if pause and self.service is not None and self.control_mode is not None:
            self.store.paused[self.session_id] = (self.service, self.control_mode)
        res = cm.SessionStopResType(Header=self._header(now), ResponseCode=RC.OK)
        self._respond("SessionStopRes", res, now, key="SessionStopReq")
        self._end(now, f"SessionStop {body.ChargingSession.value}", ok=True)

    def _renegotiate_service(self, now: float) -> None:
        """SessionStop ServiceRenegotiation: the session goes on from ServiceDiscovery; what the EV
        selected, its limits and the energy transfer are over (a new cable check comes first)."""
        self.meter.idle()
        self._transferring = False
        self.channel = None
        self.service = self.control_mode = self.ev_limits = None
        self._schedule_revision = self._meter_info = self._confirmation_due = None  # anew from the next loop
        res = cm.SessionStopResType(Header=self._header(now), ResponseCode=RC.OK)
        self._respond("SessionStopRes", res, now, key=SERVICE_RENEGOTIATION)

    def _count(self, phase: str) -> int:
        self._ongoing[phase] = self._ongoing.get(phase, 0) + 1
        return self._ongoing[phase]


def _within_schedule(current: float, watts: float | None, voltage: float) -> float:
    """A Scheduled loop's signed current within the schedule's power now (positive: the most it may
    charge, no discharge; negative: the most it may discharge, no charge)."""
    if watts is None:
        return current
    v = max(voltage, 1.0)
    if current >= 0:
        return min(current, max(watts, 0.0) / v)
    return max(current, min(watts, 0.0) / v)


def _charging_needs(
    body: cm.ScheduleExchangeReqType, limits: PowerLimits, service: ServiceID, mode: ControlMode, now: float
) -> EVChargingNeeds:
    """The EV's declared needs from its ScheduleExchangeReq (either control mode's element)."""
    req: Any = body.Dynamic_SEReqControlMode or body.Scheduled_SEReqControlMode

    def wh(name: str) -> float | None:
        value = getattr(req, name, None)
        return None if value is None else to_float(value)

    return EVChargingNeeds(
        t=now,
        role="SECC",
        service=service.name,
        control_mode=mode.name,
        limits=limits,
        departure_time=getattr(req, "DepartureTime", None),
        target_soc=getattr(req, "TargetSOC", None),
        min_soc=getattr(req, "MinimumSOC", None),
        target_energy=wh("EVTargetEnergyRequest"),
        max_energy=wh("EVMaximumEnergyRequest"),
        min_energy=wh("EVMinimumEnergyRequest"),
        max_v2x_energy=wh("EVMaximumV2XEnergyRequest"),
        min_v2x_energy=wh("EVMinimumV2XEnergyRequest"),
    )


def _summary(body: Any) -> dict[str, Any]:
    """The few fields worth a timeline line: response code, processing, the selected service,
    voltages and currents."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(body):
        value = getattr(body, f.name)
        if f.name == "SelectedEnergyTransferService":
            out["ServiceID"] = value.ServiceID
        elif (
            f.name
            in (
                "ResponseCode",
                "EVSEProcessing",
                "EVProcessing",
                "ChargeProgress",
                "ChargingSession",
                "BPT_ChannelSelection",
                "SelectedAuthorizationService",
            )
            and value is not None
        ):
            out[f.name] = value.value
        elif isinstance(value, ct.RationalNumberType):
            out[f.name] = round(to_float(value), 3)
    return out
