"""The sans-IO EVCC of an ISO 15118-20 DC / DC_BPT session.

:meth:`Evcc.start` gives the first request; :meth:`Evcc.receive` takes each response and gives the
next request (or nothing when the session is over). :attr:`Evcc.deadline` is when the pending
response times out (the per-message timeout of :mod:`v2gtool.iso20.timeouts`), and
:meth:`Evcc.on_timeout` ends the session then. The request sequence follows the same state table
as the SECC (:mod:`v2gtool.iso20.states`). :attr:`Evcc.pace` tells the transport how long to wait
before sending the next request (the EV's own cadence, e.g. 250 ms in the charge loop).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from v2gtool import v2gtp
from v2gtool.iso20 import messages, pnc
from v2gtool.iso20.events import (
    MessageReceived,
    MessageSent,
    NoEnergyTransferred,
    PhaseChanged,
    PowerFlow,
    SessionEnded,
)
from v2gtool.iso20.ports import WIRE_PRECISION, PowerLimits, VehiclePort
from v2gtool.iso20.states import SERVICE_RENEGOTIATION, State, next_state
from v2gtool.iso20.timeouts import Timeouts
from v2gtool.iso20.values import (
    ControlMode,
    ServiceID,
    SignConvention,
    WallClock,
    header,
    parameter_value,
    rational,
    service_name,
    to_float,
)
from v2gtool.messages import apphand
from v2gtool.messages import iso20_cm as cm
from v2gtool.messages import iso20_ct as ct
from v2gtool.messages import iso20_dc as dc
from v2gtool.session.events import Event

Output = bytes | Event
ONGOING = ct.processingType.Ongoing


class Direction(enum.Enum):
    CHARGE = "charge"
    DISCHARGE = "discharge"


@dataclass
class EvccConfig:
    """What the vehicle wants from this session."""

    evcc_id: str = "WMIV2GTOOLEV000001"
    # The service wanted; a DC_BPT vehicle that charges takes DC where DC_BPT is not offered, and
    # DC_BPT once a service renegotiation (EVSENotification ServiceRenegotiation) offers it.
    service: ServiceID = ServiceID.DC_BPT
    control_mode: ControlMode = ControlMode.SCHEDULED
    direction: Direction = Direction.CHARGE
    target_soc: float = 80.0
    min_soc: float = 20.0  # below this the EV stops discharging (its own floor)
    power: float | None = None  # requested |power| in W (Scheduled); None = the limits' maximum
    duration: float | None = None  # loop duration in seconds; None = until the SoC target/floor
    loop_interval: float = 0.25
    precharge_tolerance: float = 20.0  # V between EVSEPresentVoltage and the battery
    welding_rounds: int = 2
    departure_time: int = 3600
    battery_capacity_wh: float = 60_000.0
    sign_convention: SignConvention = SignConvention.SIGNED
    contract: pnc.Contract | None = None  # Plug & Charge when the SECC offers it, else EIM
    # SessionStop Pause instead of Terminate (8.3.4.3.1): the SECC keeps the session for a resume.
    pause: bool = False
    # PowerDelivery Standby this many seconds into the loop, for standby_for seconds, then Start again.
    standby_at: float | None = None
    standby_for: float = 5.0
    # A paused session's SessionID: SessionSetupReq asks to resume it (OK_OldSessionJoined).
    resume_session_id: bytes | None = None
    timeouts: Timeouts = field(default_factory=Timeouts)
    # Unix time of clock reading 0 for TimeStamp and TimeAnchor (values.WallClock): a simulation's, its
    # trace's epoch; None on a real link: the wall clock's present time.
    epoch: float | None = None


class Evcc:
    """One EVCC session."""

    def __init__(self, config: EvccConfig, vehicle: VehiclePort) -> None:
        self.config = config
        self.vehicle = vehicle
        self.state = State.SUPPORTED_APP_PROTOCOL
        self.session_id = bytes(8)
        self.resumed = False  # SessionSetupRes OK_OldSessionJoined: a paused session goes on
        self.pending: str | None = None
        self.sent_at = 0.0
        self.deadline: float | None = None
        self._setup_deadline: float | None = None  # V2G_EVCC_CommunicationSetup_Timeout, until SessionSetupRes
        self.pace = 0.0
        self.ended = False
        self.ok = False
        self.end_reason = ""
        self.loop_started: float | None = None
        self.phase_started = 0.0
        self.energy_wh = 0.0  # signed: + charged into the EV, - discharged
        self.evse_limits: PowerLimits | None = None  # from DC_ChargeParameterDiscoveryRes
        self._wall = WallClock(config.epoch)
        self._last_flow: tuple[float, float] | None = None  # (t, power)
        self._services: list[int] = []
        self.service = config.service  # the service selected: a bidirectional EV may charge on DC alone
        self._challenge: bytes | None = None
        self._parameter_set = 0
        self._welding = 0
        self._stopping = False
        # The SECC's schedule (Scheduled mode): (until, W) steps, the most W the EV may charge, and
        # discharge (a magnitude, whatever the sign on the wire: see _read_schedule).
        self._charge_schedule: list[tuple[float, float]] = []
        self._discharge_schedule: list[tuple[float, float]] = []
        self._schedule_tuple_id = 0  # the ScheduleTupleID selected from ScheduleExchangeRes
        self._asked = self._moved = False  # this loop asked for, and saw, a flow in the wanted direction
        self._reversed = False  # this loop saw a flow the other way
        self._precharged = False  # the last DC_PreChargeReq said EVProcessing Finished
        self._renegotiating = False  # between PowerDelivery ScheduleRenegotiation and the new schedule
        self._renegotiating_service = False  # from EVSENotification ServiceRenegotiation to SessionStopRes
        self._refusal = ""  # why the EV terminates the session: nothing the SECC offers suits it
        self._standby = ""  # "asked" after PowerDelivery Standby, "done" once it resumed
        self._paused_by_secc = False  # EVSENotification Pause: end with SessionStop Pause
        self._out: list[Output] = []

    # -- driving ---------------------------------------------------------------------------------------
    def start(self, now: float) -> list[Output]:
        self._out = []
        protocol = apphand.AppProtocolType(
            ProtocolNamespace="urn:iso:std:iso:15118:-20:DC",
            VersionNumberMajor=1,
            VersionNumberMinor=0,
            SchemaID=1,
            Priority=1,
        )
        self._setup_deadline = now + self.config.timeouts.communication_setup
        self._send("supportedAppProtocolReq", apphand.supportedAppProtocolReqType(AppProtocol=(protocol,)), now)
        return self._out

    def receive(self, frame: v2gtp.V2GTPFrame, now: float) -> list[Output]:
        self._out = []
        if self.ended:
            return []
        try:
            message = messages.decode(frame)
        except Exception as exc:
            self._end(now, f"undecodable response: {exc}", ok=False)
            return self._out
        expected = (self.pending or "")[:-3] + "Res"
        self._emit(
            MessageReceived(
                t=now,
                role="EVCC",
                message=message.name,
                size=len(frame.payload),
                summary={},
                response_time=now - self.sent_at,
            )
        )
        if message.name != expected:
            self._end(now, f"expected {expected}, received {message.name}", ok=False)
            return self._out
        code = getattr(message.body, "ResponseCode", None)
        if code is not None and code.value.startswith("FAILED"):
            self._end(now, f"{message.name} {code.value}", ok=False, code=code.value)
            return self._out
        handler = getattr(self, "_on_" + message.name[:-3].lower())
        handler(message.body, now)
        return self._out

    def on_timeout(self, now: float) -> list[Output]:
        self._out = []
        if not self.ended and self.deadline is not None and now >= self.deadline:
            if self._setup_deadline is not None and now >= self._setup_deadline:
                reason = "V2G_EVCC_CommunicationSetup_Timeout: no SessionSetupRes in time"
            else:
                reason = f"timeout waiting for {(self.pending or '')[:-3]}Res"
            self._end(now, reason, ok=False)
        return self._out

    def abort(self, now: float, reason: str) -> list[Output]:
        """End the session from outside (the connection failed or closed): no response can come."""
        self._out = []
        self._end(now, reason, ok=False)
        return self._out

    # -- helpers ----------------------------------------------------------------------------------------
    def _send(self, name: str, body: Any, now: float, pace: float = 0.0) -> None:
        frame = messages.encode(name, body)
        self.pending = name
        self.pace = pace
        self.sent(now + pace)
        self._emit(
            MessageSent(t=now + pace, role="EVCC", message=name, size=len(frame) - v2gtp.HEADER_LENGTH, summary={})
        )
        self._out.append(frame)

    def sent(self, now: float) -> None:
        """The transport sent the pending request at *now*: its message timeout starts (8.8.4.2)."""
        self.sent_at = now
        if self.pending is not None:
            self.deadline = now + self.config.timeouts.for_request(self.pending)
            if self._setup_deadline is not None:  # until SessionSetupRes, the sooner of the two
                self.deadline = min(self.deadline, self._setup_deadline)

    def _advance(self, key: str, now: float, ongoing: bool = False) -> None:
        target = next_state(self.state, key, ongoing)
        if target is not None and target != self.state:
            self.state = target
            self.phase_started = now
            self._emit(PhaseChanged(t=now, role="EVCC", phase=target.value))

    def _end(self, now: float, reason: str, ok: bool, code: str | None = None) -> None:
        if not self.ended:
            self.ended, self.ok, self.end_reason = True, ok, reason
            self.deadline = None
            self.vehicle.open_contactors()
            self._emit(SessionEnded(t=now, role="EVCC", reason=reason, ok=ok, response_code=code))

    def _emit(self, event: Event) -> None:
        self._out.append(event)

    def _h(self, now: float) -> ct.MessageHeaderType:
        return header(self.session_id, self._wall.unix(now))

    def _terminate(self, now: float, reason: str) -> None:
        """The EV cannot go on with what the SECC offers: end the session properly with SessionStop
        Terminate (allowed from any state after SessionSetup, ISO 15118-20 8.4.2); it ends failed
        with *reason* once the SECC confirms."""
        self._refusal = reason
        self._send("SessionStopReq", cm.SessionStopReqType(
            Header=self._h(now), ChargingSession=cm.chargingSessionType.Terminate), now)

    def _phase_timeout(self, now: float, limit: float, what: str) -> bool:
        if now - self.phase_started > limit:
            self._end(now, f"{what} timeout after {limit:.0f} s", ok=False)
            return True
        return False

    # -- responses, in session order ----------------------------------------------------------------------
    def _on_supportedappprotocol(self, body: apphand.supportedAppProtocolResType, now: float) -> None:
        if body.ResponseCode == apphand.responseCodeType.Failed_NoNegotiation:
            self._end(now, "SECC does not speak ISO 15118-20 DC", ok=False)
            return
        self._advance("supportedAppProtocolReq", now)
        if self.config.resume_session_id is not None:
            self.session_id = self.config.resume_session_id
        self._send("SessionSetupReq", cm.SessionSetupReqType(Header=self._h(now), EVCCID=self.config.evcc_id), now)

    def _on_sessionsetup(self, body: cm.SessionSetupResType, now: float) -> None:
        self._setup_deadline = None
        self.resumed = body.ResponseCode == ct.responseCodeType.OK_OldSessionJoined
        self.session_id = body.Header.SessionID
        self._advance("SessionSetupReq", now)
        self._send("AuthorizationSetupReq", cm.AuthorizationSetupReqType(Header=self._h(now)), now)

    def _on_authorizationsetup(self, body: cm.AuthorizationSetupResType, now: float) -> None:
        pnc_offered = cm.authorizationType.PnC in body.AuthorizationServices and body.PnC_ASResAuthorizationMode
        if self.config.contract is not None and pnc_offered:
            assert body.PnC_ASResAuthorizationMode is not None
            self._challenge = body.PnC_ASResAuthorizationMode.GenChallenge
        elif cm.authorizationType.EIM not in body.AuthorizationServices:
            self._end(now, "SECC offers no EIM authorization", ok=False)
            return
        self._advance("AuthorizationSetupReq", now)
        self._send_authorization(now)

    def _send_authorization(self, now: float, pace: float = 0.0) -> None:
        if self._challenge is not None and self.config.contract is not None:
            mode = pnc.authorization_mode(self._challenge, self.config.contract)
            signed = ct.MessageHeaderType(
                SessionID=self.session_id,
                TimeStamp=self._wall.unix(now),
                Signature=pnc.sign(mode, self.config.contract),
            )
            self._send(
                "AuthorizationReq",
                cm.AuthorizationReqType(
                    Header=signed, SelectedAuthorizationService=cm.authorizationType.PnC, PnC_AReqAuthorizationMode=mode
                ),
                now,
                pace,
            )
            return
        self._send(
            "AuthorizationReq",
            cm.AuthorizationReqType(
                Header=self._h(now),
                SelectedAuthorizationService=cm.authorizationType.EIM,
                EIM_AReqAuthorizationMode=cm.EIM_AReqAuthorizationModeType(),
            ),
            now,
            pace,
        )

    def _on_authorization(self, body: cm.AuthorizationResType, now: float) -> None:
        # OK_CertificateExpiresSoon authorizes too ([V2G20-2218]); a WARNING refuses (FAILED ended in receive)
        if not body.ResponseCode.value.startswith("OK"):
            self._end(now, f"authorization refused: {body.ResponseCode.value}", ok=False, code=body.ResponseCode.value)
            return
        if body.EVSEProcessing != ct.processingType.Finished:
            if not self._phase_timeout(now, self.config.timeouts.ongoing, "V2G_EVCC_Ongoing"):
                self._send_authorization(now, pace=0.5)
            return
        self._advance("AuthorizationReq", now)
        self._send_service_discovery(now)

    def _send_service_discovery(self, now: float) -> None:
        """ServiceDiscoveryReq naming the services this EV can use (a DC_BPT vehicle can charge on DC)."""
        supported = [ServiceID.DC] + ([ServiceID.DC_BPT] if self.config.service == ServiceID.DC_BPT else [])
        ids = cm.ServiceIDListType(ServiceID=tuple(int(s) for s in supported))
        self._send("ServiceDiscoveryReq", cm.ServiceDiscoveryReqType(Header=self._h(now), SupportedServiceIDs=ids), now)

    def _on_servicediscovery(self, body: cm.ServiceDiscoveryResType, now: float) -> None:
        self._services = [s.ServiceID for s in body.EnergyTransferServiceList.Service]
        wanted = self.config.service
        charging = self.config.direction == Direction.CHARGE
        if int(wanted) in self._services:
            self.service = wanted
        elif wanted == ServiceID.DC_BPT and charging and ServiceID.DC in self._services:
            self.service = ServiceID.DC  # charging needs no BPT; a later ServiceRenegotiation may offer it
        else:
            offered = ", ".join(service_name(s) for s in self._services)
            self._terminate(now, f"SECC does not offer {wanted.name} (offers {offered})")
            return
        self._advance("ServiceDiscoveryReq", now)
        self._send("ServiceDetailReq", cm.ServiceDetailReqType(Header=self._h(now), ServiceID=int(self.service)), now)

    def _on_servicedetail(self, body: cm.ServiceDetailResType, now: float) -> None:
        wanted = int(self.config.control_mode)
        chosen = next(
            (p for p in body.ServiceParameterList.ParameterSet if parameter_value(p, "ControlMode") == wanted), None
        )
        if chosen is None:
            self._terminate(now, f"SECC offers no {self.config.control_mode.name} control mode")
            return
        self._parameter_set = chosen.ParameterSetID
        self._advance("ServiceDetailReq", now)
        selected = cm.SelectedServiceType(ServiceID=int(self.service), ParameterSetID=self._parameter_set)
        self._send(
            "ServiceSelectionReq",
            cm.ServiceSelectionReqType(Header=self._h(now), SelectedEnergyTransferService=selected),
            now,
        )

    def _on_serviceselection(self, body: cm.ServiceSelectionResType, now: float) -> None:
        self._advance("ServiceSelectionReq", now)
        lim = self.vehicle.limits()
        common: dict[str, Any] = dict(
            EVMaximumChargePower=rational(lim.max_charge_power),
            EVMinimumChargePower=rational(lim.min_charge_power),
            EVMaximumChargeCurrent=rational(lim.max_charge_current),
            EVMinimumChargeCurrent=rational(lim.min_charge_current),
            EVMaximumVoltage=rational(lim.max_voltage),
            EVMinimumVoltage=rational(lim.min_voltage),
        )
        if self.service == ServiceID.DC_BPT:
            req = dc.DC_ChargeParameterDiscoveryReqType(
                Header=self._h(now),
                BPT_DC_CPDReqEnergyTransferMode=(
                    dc.BPT_DC_CPDReqEnergyTransferModeType(
                        **common,
                        EVMaximumDischargePower=rational(lim.max_discharge_power),
                        EVMinimumDischargePower=rational(lim.min_discharge_power),
                        EVMaximumDischargeCurrent=rational(lim.max_discharge_current),
                        EVMinimumDischargeCurrent=rational(lim.min_discharge_current),
                    )
                ),
            )
        else:
            req = dc.DC_ChargeParameterDiscoveryReqType(
                Header=self._h(now), DC_CPDReqEnergyTransferMode=dc.DC_CPDReqEnergyTransferModeType(**common)
            )
        self._send("DC_ChargeParameterDiscoveryReq", req, now)

    def _on_dc_chargeparameterdiscovery(self, body: dc.DC_ChargeParameterDiscoveryResType, now: float) -> None:
        mode = body.BPT_DC_CPDResEnergyTransferMode or body.DC_CPDResEnergyTransferMode
        assert mode is not None
        self.evse_limits = PowerLimits.from_message(mode, "EVSE")
        battery = self.vehicle.battery_voltage()
        if not self.evse_limits.min_voltage <= battery <= self.evse_limits.max_voltage:
            # No precharge could match the battery (8.8.6.3): stop now, not after V2G_EVCC_PreCharge_Timeout.
            self._terminate(now, f"battery at {battery:.1f} V is outside the EVSE's voltage range "
                                 f"{self.evse_limits.min_voltage:.1f}-{self.evse_limits.max_voltage:.1f} V")
            return
        discharge = self.config.direction == Direction.DISCHARGE
        mismatch = _no_common_range(self.vehicle.limits(), self.evse_limits, discharge)
        if mismatch is not None:  # nothing could flow: stop now, not after a cable check and precharge
            self._terminate(now, mismatch)
            return
        self._advance("DC_ChargeParameterDiscoveryReq", now)
        self._send_schedule_exchange(now)

    def _energy_request(self) -> ct.RationalNumberType:
        """Wh to the target SoC (ScheduleExchange / Dynamic loop EVTargetEnergyRequest)."""
        missing = (self.config.target_soc - self.vehicle.soc_percent()) / 100
        return rational(max(0.0, missing * self.config.battery_capacity_wh))

    def _v2x_energy_requests(self) -> dict[str, Any]:
        """DC_BPT: the energy the EV may still take up to its target (EVMaximumV2XEnergyRequest) and
        what it must keep (EVMinimumV2XEnergyRequest, negative: it may give that much before its
        minimum SoC), ISO 15118-20 8.3.5.3.30; nothing for a charge-only service."""
        if self.service != ServiceID.DC_BPT:
            return {}
        soc = self.vehicle.soc_percent()
        capacity = self.config.battery_capacity_wh
        return {
            "EVMaximumV2XEnergyRequest": rational((self.config.target_soc - soc) / 100 * capacity),
            "EVMinimumV2XEnergyRequest": rational((self.config.min_soc - soc) / 100 * capacity),
        }

    def _send_schedule_exchange(self, now: float, pace: float = 0.0) -> None:
        if self.config.control_mode == ControlMode.DYNAMIC:
            energy = self._energy_request()
            mode: dict[str, Any] = {
                "Dynamic_SEReqControlMode": cm.Dynamic_SEReqControlModeType(
                    DepartureTime=self.config.departure_time,
                    MinimumSOC=int(self.config.min_soc),
                    TargetSOC=int(self.config.target_soc),
                    EVTargetEnergyRequest=energy,
                    EVMaximumEnergyRequest=energy,
                    EVMinimumEnergyRequest=rational(0),
                    **self._v2x_energy_requests(),
                )
            }
        else:
            mode = {
                "Scheduled_SEReqControlMode": cm.Scheduled_SEReqControlModeType(
                    DepartureTime=self.config.departure_time
                )
            }
        self._send(
            "ScheduleExchangeReq",
            cm.ScheduleExchangeReqType(Header=self._h(now), MaximumSupportingPoints=12, **mode),
            now,
            pace,
        )

    def _on_scheduleexchange(self, body: cm.ScheduleExchangeResType, now: float) -> None:
        if body.EVSEProcessing == ONGOING:
            if not self._phase_timeout(now, self.config.timeouts.ongoing, "V2G_EVCC_Ongoing"):
                self._send_schedule_exchange(now, pace=0.5)
            return
        if not self._read_schedule(body, now):
            self._terminate(now, "ScheduleExchangeRes has no ScheduleTuple for the Scheduled control mode")
            return
        self._advance("ScheduleExchangeReq", now)
        if self._renegotiating:  # back to the loop with the new schedule (contactors still closed)
            self._renegotiating = False
            self._send_start(now)
            return
        self._send("DC_CableCheckReq", dc.DC_CableCheckReqType(Header=self._h(now)), now)

    def _read_schedule(self, body: cm.ScheduleExchangeResType, now: float) -> bool:
        """Select the first ScheduleTuple the SECC offers (its SelectedScheduleTupleID goes into
        PowerDeliveryReq, [V2G20-479]) and take its power steps from *now* on (8.3.5.3.30); False
        when a Scheduled session's response carries no schedule.

        The sign of DischargingSchedule entries differs in the field (this SECC sends them negative,
        the iso15118 package positive; EVerest made it a setting, EVerest PR #1473): the magnitude
        is the discharge allowance."""
        mode = body.Scheduled_SEResControlMode
        if mode is None:
            return self.config.control_mode != ControlMode.SCHEDULED

        def steps(schedule: cm.ChargingScheduleType | None, magnitude: bool) -> list[tuple[float, float]]:
            out: list[tuple[float, float]] = []
            end = now
            for entry in schedule.PowerSchedule.PowerScheduleEntries.PowerScheduleEntry if schedule else ():
                end += entry.Duration
                watts = to_float(entry.Power)
                out.append((end, abs(watts) if magnitude else watts))
            return out

        chosen = mode.ScheduleTuple[0]
        self._schedule_tuple_id = chosen.ScheduleTupleID
        self._charge_schedule = steps(chosen.ChargingSchedule, magnitude=False)
        self._discharge_schedule = steps(chosen.DischargingSchedule, magnitude=True)
        return True

    def _on_dc_cablecheck(self, body: dc.DC_CableCheckResType, now: float) -> None:
        if body.EVSEProcessing == ONGOING:
            if not self._phase_timeout(now, self.config.timeouts.cable_check, "V2G_EVCC_CableCheck"):
                self._send("DC_CableCheckReq", dc.DC_CableCheckReqType(Header=self._h(now)), now, pace=0.5)
            return
        self._advance("DC_CableCheckReq", now)
        self._send_precharge(now)

    def _send_precharge(self, now: float, processing: ct.processingType = ONGOING, pace: float = 0.0) -> None:
        self._send(
            "DC_PreChargeReq",
            dc.DC_PreChargeReqType(
                Header=self._h(now),
                EVProcessing=processing,
                EVPresentVoltage=rational(self.vehicle.battery_voltage()),
                EVTargetVoltage=rational(self.vehicle.battery_voltage()),
            ),
            now,
            pace,
        )

    def _on_dc_precharge(self, body: dc.DC_PreChargeResType, now: float) -> None:
        """Precharge goes on (EVProcessing Ongoing) until EVSEPresentVoltage is within the tolerance of
        the battery; then the EV ends it with one more DC_PreChargeReq saying EVProcessing Finished
        (DC_PreChargeReqType, V2G_CI_DC.xsd; so does the iso15118 package's EVCC), and once that is
        answered, still precharged, it closes its own contactors and asks for power (ISO 15118-20
        8.8.6.3). A voltage that left the tolerance meanwhile makes it go on."""
        present = to_float(body.EVSEPresentVoltage)
        precharged = abs(present - self.vehicle.battery_voltage()) <= self.config.precharge_tolerance
        if precharged and self._precharged:
            self._precharged = False
            self.vehicle.close_contactors()
            self._send_start(now)
            return
        self._precharged = precharged
        if precharged:
            self._send_precharge(now, ct.processingType.Finished)
        elif not self._phase_timeout(now, self.config.timeouts.precharge, "V2G_EVCC_PreCharge"):
            self._send_precharge(now, pace=0.1)

    def _send_start(self, now: float, pace: float = 0.0) -> None:
        """PowerDeliveryReq Start: the BPT channel and the EV's power profile.

        The EVPowerProfile (8.3.4.3.8.2, EVPowerProfileType) is optional in the schema, in either
        control mode; the EV sends it with EVProcessing Finished and ChargeProgress Start in both:
        in Scheduled mode with the SelectedScheduleTupleID it chose ([V2G20-479]) and a power that
        stays within that schedule's steps ([V2G20-478]), in Dynamic mode with an empty
        Dynamic_EVPPTControlMode (the iso15118 package's SECC does not answer a Start without one).

        A DC_BPT EV selects the channel of its direction (BPT_ChannelSelection, [V2G20-2123],
        standards digest section 4.2 item 10: optional, in either control mode) in Scheduled mode,
        where it chose the direction, and under :attr:`SignConvention.CHANNEL` in either mode: that
        convention writes magnitudes, so the channel is the only thing on the wire that says which
        way the current flows. A signed EV in Dynamic mode leaves it open: the grid's request then
        sets the direction, within the EV's limits (the VPP case). A channel-convention EV in
        Dynamic mode thus takes energy in its own direction only; a grid request the other way
        transfers nothing (:meth:`v2gtool.iso20.secc.Secc._loop_target`)."""
        channel = None
        scheduled = self.config.control_mode == ControlMode.SCHEDULED
        if self.service == ServiceID.DC_BPT and (scheduled or self.config.sign_convention is SignConvention.CHANNEL):
            channel = (
                cm.channelSelectionType.Discharge
                if self.config.direction == Direction.DISCHARGE
                else cm.channelSelectionType.Charge
            )
        mode: dict[str, Any]
        if self.config.control_mode == ControlMode.SCHEDULED:
            mode = {
                # The EV accepts the schedule's power tolerance (8.3.5.3.28); optional in the XSD, but
                # the iso15118 package's SECC rejects a profile without it.
                "Scheduled_EVPPTControlMode": cm.Scheduled_EVPPTControlModeType(
                    SelectedScheduleTupleID=self._schedule_tuple_id,
                    PowerToleranceAcceptance=cm.powerToleranceAcceptanceType.PowerToleranceConfirmed,
                )
            }
        else:
            mode = {"Dynamic_EVPPTControlMode": cm.Dynamic_EVPPTControlModeType()}
        profile = cm.EVPowerProfileType(
            TimeAnchor=self._wall.unix(now),
            EVPowerProfileEntries=cm.EVPowerProfileEntryListType(EVPowerProfileEntry=self._profile_entries(now)),
            **mode,
        )
        self._power_delivery(
            cm.chargeProgressType.Start, now, pace, EVPowerProfile=profile, BPT_ChannelSelection=channel
        )

    def _profile_entries(self, now: float) -> tuple[cm.PowerScheduleEntryType, ...]:
        """The EV's planned power from *now* for the loop's duration (an hour when open-ended): one
        entry per step of the schedule in its direction (none in Dynamic mode: one entry), each
        the power of what :meth:`_signed_current` asks for in that step."""
        end = max(1, round(self.config.duration or 3600))
        schedule = self._discharge_schedule if self.config.direction == Direction.DISCHARGE else self._charge_schedule
        offsets = sorted({round(until - now) for until, _ in schedule if 0 < round(until - now) < end} | {end})
        entries = []
        previous = 0
        for offset in offsets:  # whole seconds from the TimeAnchor; the power in the middle of each step
            power = self._signed_current(now + (previous + offset) / 2) * self._voltage()
            entries.append(cm.PowerScheduleEntryType(Duration=offset - previous, Power=rational(power)))
            previous = offset
        return tuple(entries)

    def _power_delivery(self, progress: cm.chargeProgressType, now: float, pace: float = 0.0, **extra: Any) -> None:
        self._send(
            "PowerDeliveryReq",
            cm.PowerDeliveryReqType(
                Header=self._h(now), EVProcessing=ct.processingType.Finished, ChargeProgress=progress, **extra
            ),
            now,
            pace,
        )

    def _goal_reached(self) -> bool:
        """The EV's battery needs nothing more this way: charged to its target SoC, or discharged to
        its own floor (DisplayParameters TargetSOC / MinimumSOC, 8.3.5.3)."""
        soc = self.vehicle.soc_percent()
        if self.config.direction == Direction.DISCHARGE:
            return soc <= self.config.min_soc
        return soc >= self.config.target_soc

    def _voltage(self) -> float:
        """The battery voltage the EV computes its requests with (EVPresentVoltage), at least 1 V."""
        return max(self.vehicle.battery_voltage(), 1.0)

    def _signed_current(self, now: float) -> float:
        """What the EV asks for (Scheduled mode), signed A at :meth:`_voltage`: its wish (``power``;
        None: its maximum, 0: none) within both sides' current and power ranges and the SECC's
        schedule at *now*.

        Neither side can transfer less than its minimum current or power (EV/EVSEMinimumCharge/
        DischargeCurrent and Power of DC_ChargeParameterDiscovery, ISO 15118-20 8.3.5.5), so the EV
        never asks for less: a smaller wish is raised to the highest of the minimums, and where the
        schedule or a maximum does not reach that minimum the EV asks for nothing."""
        discharge = self.config.direction == Direction.DISCHARGE
        voltage = self._voltage()
        ev = self.vehicle.limits()
        sides = [ev] + ([self.evse_limits] if self.evse_limits is not None else [])
        low = max(max(s.current_range(discharge)[0], s.power_range(discharge)[0] / voltage) for s in sides)
        high = min(min(s.current_range(discharge)[1], s.power_range(discharge)[1] / voltage) for s in sides)
        allowed = _step_at(self._discharge_schedule if discharge else self._charge_schedule, now)
        if allowed is not None:
            high = min(high, max(allowed, 0.0) / voltage)
        ev_max = ev.power_range(discharge)[1]
        wish = 0.0 if self._goal_reached() else ev_max if self.config.power is None else self.config.power
        amps = min(max(wish / voltage, low), high) if wish > 0 else 0.0
        if amps < low:
            amps = 0.0
        return -amps if discharge else amps

    def _on_powerdelivery(self, body: cm.PowerDeliveryResType, now: float) -> None:
        if self._stopping:
            self._advance("PowerDeliveryReq:Stop", now)
            self.vehicle.open_contactors()
            self._send_welding_detection(now, pace=0.1)
            return
        if self._renegotiating:
            self._advance("PowerDeliveryReq:ScheduleRenegotiation", now)
            self._send_schedule_exchange(now)
            return
        if self._standby == "asked":  # in standby: resume with Start after the pause (8.3.4.3.8.2)
            self._advance("PowerDeliveryReq:Standby", now)
            self._standby = "done"
            self._send_start(now, pace=self.config.standby_for)
            return
        self._advance("PowerDeliveryReq:Start", now)
        if self.loop_started is None:  # a renegotiation does not restart the loop's duration
            self.loop_started = now
        self._send_loop(now)

    def _send_loop(self, now: float, pace: float = 0.0) -> None:
        voltage = self.vehicle.battery_voltage()
        lim = self.vehicle.limits()
        bpt = self.service == ServiceID.DC_BPT
        mode: dict[str, Any]
        if self.config.control_mode == ControlMode.SCHEDULED:
            evse_max_voltage = self.evse_limits.max_voltage if self.evse_limits is not None else lim.max_voltage
            target_voltage = rational(min(lim.max_voltage, evse_max_voltage))
            current = self._signed_current(now)
            self._asked = self._asked or current != 0
            if bpt:
                mode = {
                    "BPT_Scheduled_DC_CLReqControlMode": dc.BPT_Scheduled_DC_CLReqControlModeType(
                        EVTargetCurrent=rational(self.config.sign_convention.to_wire(current)),
                        EVTargetVoltage=target_voltage,
                    )
                }
            else:
                mode = {
                    "Scheduled_DC_CLReqControlMode": dc.Scheduled_DC_CLReqControlModeType(
                        EVTargetCurrent=rational(max(current, 0.0)), EVTargetVoltage=target_voltage
                    )
                }
        else:
            energy = self._energy_request()
            common: dict[str, Any] = dict(
                EVTargetEnergyRequest=energy,
                EVMaximumEnergyRequest=energy,
                EVMinimumEnergyRequest=rational(0),
                EVMaximumChargePower=rational(lim.max_charge_power),
                EVMinimumChargePower=rational(lim.min_charge_power),
                EVMaximumChargeCurrent=rational(lim.max_charge_current),
                EVMaximumVoltage=rational(lim.max_voltage),
                EVMinimumVoltage=rational(lim.min_voltage),
            )
            if bpt:
                mode = {
                    "BPT_Dynamic_DC_CLReqControlMode": dc.BPT_Dynamic_DC_CLReqControlModeType(
                        **common,
                        EVMaximumDischargePower=rational(lim.max_discharge_power),
                        EVMinimumDischargePower=rational(lim.min_discharge_power),
                        EVMaximumDischargeCurrent=rational(lim.max_discharge_current),
                        **self._v2x_energy_requests(),
                    )
                }
            else:
                mode = {"Dynamic_DC_CLReqControlMode": dc.Dynamic_DC_CLReqControlModeType(**common)}
        display = ct.DisplayParametersType(
            PresentSOC=round(self.vehicle.soc_percent()),
            TargetSOC=int(self.config.target_soc),
            ChargingComplete=self.config.direction == Direction.CHARGE and self._goal_reached(),
        )
        self._send(
            "DC_ChargeLoopReq",
            dc.DC_ChargeLoopReqType(
                Header=self._h(now),
                DisplayParameters=display,
                MeterInfoRequested=False,
                EVPresentVoltage=rational(voltage),
                **mode,
            ),
            now,
            pace,
        )

    def _on_dc_chargeloop(self, body: dc.DC_ChargeLoopResType, now: float) -> None:
        discharging = self.config.direction == Direction.DISCHARGE
        voltage = to_float(body.EVSEPresentVoltage)
        current = self.config.sign_convention.from_wire(to_float(body.EVSEPresentCurrent), discharging)
        power = voltage * current
        self._moved = self._moved or (current < 0 if discharging else current > 0)
        self._reversed = self._reversed or (current > 0 if discharging else current < 0)
        if self._last_flow is not None:
            self.energy_wh += self._last_flow[1] * (now - self._last_flow[0]) / 3600.0
        self._last_flow = (now, power)
        soc = self.vehicle.soc_percent()
        self._emit(PowerFlow(t=now, role="EVCC", voltage=voltage, current=current, power=power, soc=soc))
        assert self.loop_started is not None
        done = self.config.duration is not None and now - self.loop_started >= self.config.duration
        done = done or self._goal_reached()
        notification = body.EVSEStatus.EVSENotification if body.EVSEStatus is not None else None
        renegotiate = notification == ct.evseNotificationType.ScheduleRenegotiation
        other_service = notification == ct.evseNotificationType.ServiceRenegotiation
        confirm = notification == ct.evseNotificationType.MeteringConfirmation and body.MeterInfo is not None
        if notification in (ct.evseNotificationType.Terminate, ct.evseNotificationType.Pause):
            done = True  # the SECC ends the session: stop now, and pause if it asked for a pause
            self._paused_by_secc = notification == ct.evseNotificationType.Pause
        standby = (
            self.config.standby_at is not None
            and not self._standby
            and now - self.loop_started >= self.config.standby_at
        )
        if done:
            self._warn_if_nothing_moved(now)
            self._stop_power(now)
        elif other_service:  # the offer changed: stop, then SessionStop ServiceRenegotiation and select again
            self._renegotiating_service = True
            self._stop_power(now)
        elif standby:
            self._standby = "asked"
            self._last_flow = None  # no energy moves in standby
            self._power_delivery(cm.chargeProgressType.Standby, now)
        elif confirm:
            assert body.MeterInfo is not None
            self._confirm_metering(body.MeterInfo, now)
        elif renegotiate:  # the SECC has a new schedule (8.3.4.3.8.2): fetch it, power keeps flowing
            self._renegotiating = True
            self._power_delivery(cm.chargeProgressType.ScheduleRenegotiation, now)
        else:
            self._send_loop(now, pace=self.config.loop_interval)

    def _warn_if_nothing_moved(self, now: float) -> None:
        """The loop ends: an EV that wanted energy moved (``power`` not 0) and saw no current flow
        that way in the whole loop says so (:class:`NoEnergyTransferred`), rather than ending silently
        OK, with the cause: the SECC moved energy the other way, the EV asked for nothing (the
        schedule or the limits, minimums included, allowed no flow: :meth:`_signed_current`), or the
        SECC delivered nothing."""
        if self._moved or self.config.power == 0 or (self._goal_reached() and not self._asked):
            return  # it wanted nothing: no power asked for, or its battery was where it wanted it
        direction = self.config.direction.value
        if self._reversed:
            other = "charged" if self.config.direction == Direction.DISCHARGE else "discharged"
            reason = f"the SECC {other} the EV although it asked to {direction}"
        elif self.config.control_mode == ControlMode.SCHEDULED and not self._asked:
            reason = "the EV asked for no current: the SECC's schedule or the limits allowed none"
        else:
            reason = "the SECC delivered no current"
        self._emit(NoEnergyTransferred(t=now, role="EVCC", direction=direction, reason=reason))

    def _confirm_metering(self, reading: ct.MeterInfoType, now: float) -> None:
        """MeteringConfirmationReq: the SECC's reading back, signed with the contract key in a PnC
        session (the Header Signature references SignedMeteringData, V2G_CI_CommonMessages.xsd)."""
        mode: dict[str, Any] = (
            {
                "Scheduled_SMDTControlMode": cm.Scheduled_SMDTControlModeType(
                    SelectedScheduleTupleID=self._schedule_tuple_id
                )
            }
            if self.config.control_mode == ControlMode.SCHEDULED
            else {"Dynamic_SMDTControlMode": cm.Dynamic_SMDTControlModeType()}
        )
        data = cm.SignedMeteringDataType(Id=pnc.REFERENCE_ID, SessionID=self.session_id, MeterInfo=reading, **mode)
        signature = None
        if self._challenge is not None and self.config.contract is not None:  # authorized by PnC
            signature = pnc.sign_element("SignedMeteringData", data, data.Id, self.config.contract.key)
        head = ct.MessageHeaderType(SessionID=self.session_id, TimeStamp=self._wall.unix(now), Signature=signature)
        self._send(
            "MeteringConfirmationReq", cm.MeteringConfirmationReqType(Header=head, SignedMeteringData=data), now
        )

    def _on_meteringconfirmation(self, body: cm.MeteringConfirmationResType, now: float) -> None:
        self._send_loop(now, pace=self.config.loop_interval)

    def _stop_power(self, now: float) -> None:
        self._stopping = True
        self._power_delivery(cm.chargeProgressType.Stop, now)

    def _send_welding_detection(self, now: float, pace: float) -> None:
        """One of the EV's ``welding_rounds`` DC_WeldingDetectionReq: EVProcessing Ongoing, and Finished
        in the last, which ends its welding detection (DC_WeldingDetectionReqType, V2G_CI_DC.xsd; so
        does the iso15118 package's EVCC before its SessionStopReq)."""
        self._welding += 1
        last = self._welding >= self.config.welding_rounds
        processing = ct.processingType.Finished if last else ONGOING
        self._send(
            "DC_WeldingDetectionReq",
            dc.DC_WeldingDetectionReqType(Header=self._h(now), EVProcessing=processing),
            now,
            pace=pace,
        )

    def _on_dc_weldingdetection(self, body: dc.DC_WeldingDetectionResType, now: float) -> None:
        if self._welding < self.config.welding_rounds:
            self._send_welding_detection(now, pace=0.5)
            return
        if self._renegotiating_service:
            kind = cm.chargingSessionType.ServiceRenegotiation
        else:
            kind = cm.chargingSessionType.Pause if self._pausing else cm.chargingSessionType.Terminate
        self._send("SessionStopReq", cm.SessionStopReqType(Header=self._h(now), ChargingSession=kind), now)

    def _on_sessionstop(self, body: cm.SessionStopResType, now: float) -> None:
        if self._renegotiating_service:  # the session goes on: discover and select a service again
            # loop_started and the standby plan stay: duration and standby_at count from the first loop
            self._advance(SERVICE_RENEGOTIATION, now)
            self._renegotiating_service = self._stopping = False
            self._welding = 0
            self._last_flow = None
            self._charge_schedule, self._discharge_schedule = [], []
            self._send_service_discovery(now)
            return
        self._advance("SessionStopReq", now)
        if self._refusal:
            self._end(now, self._refusal, ok=False)
            return
        kind = "Pause" if self._pausing else "Terminate"
        self._end(now, f"SessionStop {kind}", ok=True)

    @property
    def _pausing(self) -> bool:
        return self.config.pause or self._paused_by_secc


def _step_at(steps: list[tuple[float, float]], now: float) -> float | None:
    """The power of the schedule step in force at *now* (the last one past its end; None: none)."""
    for until, watts in steps:
        if now < until:
            return watts
    return steps[-1][1] if steps else None


def _no_common_range(ev: PowerLimits, evse: PowerLimits, discharge: bool) -> str | None:
    """Why no flow in the wanted direction suits both sides' DC_ChargeParameterDiscovery limits (one
    side's maximum current or power below the other's minimum: neither side transfers less than its
    minimum, ISO 15118-20 8.3.5.5), naming both values; None when some flow does. The EVSE's values
    crossed the wire as RationalNumbers, so equal values pass at the wire's precision."""
    way = "discharge" if discharge else "charge"
    ranges = (
        ("current", "A", ".1f", ev.current_range(discharge), evse.current_range(discharge)),
        ("power", "W", ".0f", ev.power_range(discharge), evse.power_range(discharge)),
    )
    for quantity, unit, form, (ev_min, ev_max), (evse_min, evse_max) in ranges:
        for side, maximum, other, minimum in (("EVSE", evse_max, "EV", ev_min), ("EV", ev_max, "EVSE", evse_min)):
            if maximum < minimum * (1.0 - WIRE_PRECISION):
                return (f"the {side}'s maximum {way} {quantity} {maximum:{form}} {unit} is below the "
                        f"{other}'s minimum {minimum:{form}} {unit}")
    return None
