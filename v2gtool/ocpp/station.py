"""The station side of the OCPP bridge: one ISO 15118-20 SECC session mapped to OCPP 2.0.1 / 2.1.

:class:`StationBridge` listens to the SECC's events (:meth:`StationBridge.on_event`, called from
the session, never blocking it) and keeps a websocket to the CSMS (:meth:`StationBridge.run`):

================================  ==========================================================
session                           OCPP (2.0.1 part 2 use cases)
================================  ==========================================================
SessionSetup                      StatusNotification Occupied; TransactionEvent Started (E02)
ScheduleExchange (the EV's needs)  NotifyEVChargingNeeds (K15; V2X parameters, see payloads)
DC_ChargeLoop begins / ends       TransactionEvent Updated ChargingStateChanged (Standby: SuspendedEV)
every ``meter_interval`` s        TransactionEvent Updated MeterValuePeriodic (both registers)
SessionStop / failure             TransactionEvent Ended; StatusNotification Available
a restart after a kill            TransactionEvent Ended PowerLoss of the transaction left open
                                  (:meth:`StationBridge.end_interrupted_transaction`)
SetChargingProfile                the session's grid request (:mod:`v2gtool.ocpp.profile`)
RequestStopTransaction            EVSENotification Terminate; Ended with stoppedReason Remote
NotifyAllowedEnergyTransfer       the services the SECC offers; a running session renegotiates
                                  its service (OCPP 2.1 Q02, EVSENotification ServiceRenegotiation)
InstallCertificate (V2G/MO root)  the TLS trust directory (:func:`v2gtool.pki.trust.install_roots`)
GetVariables / SetVariables       the station's device model (B06 / B05, :func:`_device_model`): the
                                  heartbeat, TransactionEvent retries, the meter interval, identity
TriggerMessage                    the message sent right after the answer (F06, :meth:`StationBridge.trigger`)
RequestStartTransaction           Rejected: the EV starts a session, not the CSMS (F01)
================================  ==========================================================

Transaction events go through the durable :class:`~v2gtool.ocpp.outbox.Outbox`, so a lost CSMS
never stops or slows a session (nor does a disk that refuses the outbox's writes: the events wait
in memory then, with a warning): they are delivered in order, flagged ``offline`` when they
happened while the station had no connection it could send on (none, or its BootNotification not
accepted yet), once the connection is back (E04); one the CSMS answers with a
CALLERROR is sent again, and given up only after its attempts (E13, :meth:`StationBridge._deliver`).
Security profiles (OCPP 2.0.1 part 2 A00.FR): 2 is TLS with HTTP Basic authentication (*password*),
3 is TLS with a client certificate (an *ssl* context that carries one).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import ssl
import time
import urllib.parse
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import websockets
from cryptography import x509
from websockets.asyncio.client import ClientConnection, connect
from websockets.frames import CloseCode

from v2gtool.iso20.events import EVChargingNeeds, PhaseChanged, PowerFlow, SessionEnded
from v2gtool.iso20.values import DC_SERVICES, ServiceID
from v2gtool.ocpp import rpc
from v2gtool.ocpp.device_model import Answer, DeviceModel, Variable, bound, number
from v2gtool.ocpp.outbox import Outbox, OutboxError, Record
from v2gtool.ocpp.payloads import Meter, charging_needs, read_meter_value, timestamp
from v2gtool.ocpp.profile import ProfileRejected, ProfileSetpoint
from v2gtool.ocpp.rpc_errors import AnswersEveryFrame, FrameRejected
from v2gtool.pki.profiles import CertificateError, PkiError
from v2gtool.pki.trust import install_roots
from v2gtool.session.events import Event

Listener = Callable[[Event], None]
# The ``ocpp`` package's logger of the station's RPC peer: the package warns of every CALLERROR it
# receives, which the bridge reports itself (CsmsRefused); its errors still come through.
RPC_LOG = logging.getLogger(f"{__name__}.rpc")
RPC_LOG.setLevel(logging.ERROR)
ROOT_TYPES = ("V2GRootCertificate", "MORootCertificate")
# Session phases without energy transfer and the OCPP chargingState they mean: the EV's Standby,
# and the end of the loop (welding detection).
IDLE_PHASES = {"PowerDelivery": "SuspendedEV", "DC_WeldingDetection": "EVConnected"}
# The OCPP 2.1 EnergyTransferModeEnumType values of the ISO 15118-20 DC services.
OCPP_MODES = {"DC": ServiceID.DC, "DC_BPT": ServiceID.DC_BPT}
PATH_SAFE = "*+=@"  # identity characters a URL path segment takes as they are (RFC 3986 3.3)
# The EV's energy requests: Wh from the SoC it had when it declared them to some SoC level (ISO
# 15118-20 8.3.5.3.30), so each moves by what flowed since.
ENERGY_REQUESTS = ("target_energy", "max_energy", "min_energy", "max_v2x_energy", "min_v2x_energy")
# What TriggerMessage (F06) sends on request; any other requestedMessage is NotImplemented.
TRIGGERABLE = frozenset({"BootNotification", "Heartbeat", "StatusNotification", "MeterValues", "TransactionEvent"})


@dataclass(frozen=True, kw_only=True)
class CsmsConnected(Event):
    url: str
    subprotocol: str


@dataclass(frozen=True, kw_only=True)
class CsmsDisconnected(Event):
    url: str
    reason: str
    queued: int


@dataclass(frozen=True, kw_only=True)
class CsmsRefused(Event):
    """The CSMS answered a CallError, or our payload failed the schema (a bug worth reporting)."""

    url: str
    action: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class TransactionEventDiscarded(Event):
    """A TransactionEvent the CSMS refused (CALLERROR) every one of its attempts: the station gave it
    up, and the ones behind it go on (OCPP 2.0.1 E13.FR.04)."""

    url: str
    transaction_id: str
    seq_no: int
    event_type: str
    attempts: int
    reason: str


@dataclass(frozen=True, kw_only=True)
class VariableSet(Event):
    """The CSMS set a device model variable (SetVariables, B05), and the station runs with it."""

    station: str
    component: str
    variable: str
    value: str


@dataclass(frozen=True, kw_only=True)
class ChargingProfileReceived(Event):
    station: str
    profile_id: int
    accepted: bool
    reason: str
    power_now: float | None


@dataclass
class BridgeConfig:
    """Where the CSMS is and how to talk to it."""

    url: str  # ws:// or wss:// up to the station id, which is appended (OCPP 2.0.1 part 4 3.2)
    station_id: str
    evse_id: int = 1
    subprotocols: tuple[str, ...] = rpc.SUBPROTOCOLS
    password: str | None = None
    ssl: ssl.SSLContext | None = None
    meter_interval: float = 10.0
    reconnect: tuple[float, float] = (0.5, 30.0)
    response_timeout: float = 30.0  # OCPPCommCtrlr.MessageTimeout's usual default
    # A TransactionEvent answered with a CALLERROR is sent this many times in all, the n-th retry
    # after n x the interval (s) (OCPPCommCtrlr.MessageAttempts/MessageAttemptIntervalTransactionEvent,
    # OCPP 2.0.1 E13.FR.01-03).
    transaction_event_attempts: int = 3
    transaction_event_interval: float = 60.0
    trust_dir: Path | None = None
    vendor: str = "v2gtool"
    model: str = "v2gtool-secc"
    services: frozenset[ServiceID] = DC_SERVICES  # what the station's charger has
    debug: bool = False  # tracebacks of our own handlers' failures (--debug)


@dataclass
class _Transaction:
    id: str
    seq: int = 0
    remote_stop: bool = False
    allowed: frozenset[ServiceID] | None = None  # NotifyAllowedEnergyTransfer's modes (None: not restricted)
    last_periodic: float = 0.0
    meter: Meter = field(default_factory=Meter)


def _status_info(code: str, reason: str) -> dict[str, str] | None:
    """A response's statusInfo: *reason* under *code*, None without one (additionalInfo is at most
    512 characters in OCPP 2.0.1, 1024 in 2.1)."""
    return {"reason_code": code, "additional_info": reason[:512]} if reason else None


def _variable_result(data: dict[str, Any], answer: Answer) -> dict[str, Any]:
    """A GetVariableResult or SetVariableResult: the component and variable as the request named them
    (B05.FR.02, B06.FR.02), and its attributeType, Actual when it had none (B05.FR.12, B06.FR.11)."""
    return {
        "attribute_status": answer.status,
        "attribute_status_info": _status_info(answer.code, answer.reason),
        "attribute_type": data.get("attribute_type", "Actual"),
        "attribute_value": answer.value,
        "component": data["component"],
        "variable": data["variable"],
    }


def _device_model(bridge: StationBridge) -> DeviceModel:
    """The variables of *bridge*, each what it runs with: the heartbeat interval, a TransactionEvent's
    attempts and the interval between them (E13.FR.01-04), the interval of periodic meter values (E02),
    the response timeout, and the identity its BootNotification reports. Bounds: a heartbeat at least
    every day, up to 100 attempts, retries and meter values at least every hour."""
    config = bridge.config
    tx = "TransactionEvent"  # the instance of the MessageAttempt variables
    return DeviceModel(
        [
            bound("OCPPCommCtrlr", "HeartbeatInterval", bridge, "heartbeat_interval", 1, 86400),
            bound("OCPPCommCtrlr", "MessageAttempts", config, "transaction_event_attempts", 1, 100, tx),
            bound("OCPPCommCtrlr", "MessageAttemptInterval", config, "transaction_event_interval", 1, 3600, tx),
            bound("SampledDataCtrlr", "TxUpdatedInterval", config, "meter_interval", 1, 3600),
            Variable("OCPPCommCtrlr", "MessageTimeout", lambda: number(config.response_timeout), "Default"),
            Variable("ChargingStation", "VendorName", lambda: config.vendor),
            Variable("ChargingStation", "Model", lambda: config.model),
        ]
    )


def _refusal(exc: rpc.OCPPError) -> str:
    """A CALLERROR the CSMS answered (or our payload that failed the schema) as one line of at most
    500 characters: its errorCode, errorDescription and, when there are any, its errorDetails as JSON
    (OCPP-J part 4 4.2.3); never the ``ocpp`` package's repr of the frame."""
    details = exc.details if isinstance(exc.details, dict) else {}
    details = {key: value for key, value in details.items() if key != "ocpp_message"}  # the package's own frame
    line = f"{exc.code}: {exc.description}"
    if details:
        line += " " + json.dumps(details, default=str, ensure_ascii=False)
    return line[:500]


def _check_evse(purpose: object, evse_id: int) -> None:
    """Whether a profile of *purpose* may be set on *evse_id* (OCPP 2.0.1 K01): a TxProfile on the
    EVSE of its transaction, never on 0, the whole station (K01.FR.16); a ChargingStationMaxProfile
    on 0 only (K01.FR.03). :class:`~v2gtool.ocpp.profile.ProfileRejected` (InvalidValue) when not."""
    if purpose == "TxProfile" and evse_id == 0:
        raise ProfileRejected("a TxProfile is set on the EVSE of its transaction, not on evseId 0", "InvalidValue")
    if purpose == "ChargingStationMaxProfile" and evse_id != 0:
        raise ProfileRejected(
            f"a ChargingStationMaxProfile is set on evseId 0 (the whole station), not on {evse_id}", "InvalidValue"
        )


def _net_wh(meter: Meter) -> float:
    """The net energy the meter counted into the EV (Wh)."""
    return meter.imported_wh - meter.exported_wh


class _StationHandlers(AnswersEveryFrame):
    """The CSMS-initiated messages a station answers (mixed into the ``ocpp`` ChargePoint); any other
    CALL, and any frame that cannot be read, gets its CALLERROR (:mod:`v2gtool.ocpp.rpc_errors`)."""

    bridge: StationBridge

    def frame_rejected(self, event: FrameRejected) -> None:
        self.bridge.report(event)

    @rpc.handles("SetChargingProfile")
    def on_set_charging_profile(self, evse_id: int, charging_profile: dict[str, Any], **_: Any) -> Any:
        status, code, reason = self.bridge.set_charging_profile(evse_id, charging_profile)
        return rpc.result(self, "SetChargingProfile", status=status, status_info=_status_info(code, reason))

    @rpc.handles("RequestStopTransaction")
    def on_request_stop_transaction(self, transaction_id: str, **_: Any) -> Any:
        accepted = self.bridge.request_stop(transaction_id)
        return rpc.result(self, "RequestStopTransaction", status="Accepted" if accepted else "Rejected")

    @rpc.handles("NotifyAllowedEnergyTransfer")
    def on_notify_allowed_energy_transfer(
        self, transaction_id: str, allowed_energy_transfer: list[str], **_: Any
    ) -> Any:
        status, reason = self.bridge.allow_energy_transfer(transaction_id, allowed_energy_transfer)
        info = _status_info("InvalidValue", reason)
        return rpc.result(self, "NotifyAllowedEnergyTransfer", status=status, status_info=info)

    @rpc.handles("ClearChargingProfile")
    def on_clear_charging_profile(
        self,
        charging_profile_id: int | None = None,
        charging_profile_criteria: dict[str, Any] | None = None,
        **_: Any,
    ) -> Any:
        criteria = charging_profile_criteria or {}
        gone = self.bridge.setpoint.clear(
            charging_profile_id,
            criteria.get("charging_profile_purpose"),
            criteria.get("stack_level"),
            criteria.get("evse_id"),
        )
        return rpc.result(self, "ClearChargingProfile", status="Accepted" if gone else "Unknown")

    @rpc.handles("InstallCertificate")
    def on_install_certificate(self, certificate_type: str, certificate: str, **_: Any) -> Any:
        status, code, reason = self.bridge.install_certificate(certificate_type, certificate)
        return rpc.result(self, "InstallCertificate", status=status, status_info=_status_info(code, reason))

    @rpc.handles("GetVariables")
    def on_get_variables(self, get_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        """B06: one result per GetVariableData, in its order (B06.FR.01)."""
        results = [_variable_result(data, self.bridge.device_model.get(data)) for data in get_variable_data]
        return rpc.result(self, "GetVariables", get_variable_result=results)

    @rpc.handles("SetVariables")
    def on_set_variables(self, set_variable_data: list[dict[str, Any]], **_: Any) -> Any:
        """B05: one result per SetVariableData, in its order (B05.FR.01)."""
        results = [_variable_result(data, self.bridge.set_variable(data)) for data in set_variable_data]
        return rpc.result(self, "SetVariables", set_variable_result=results)

    @rpc.handles("TriggerMessage")
    def on_trigger_message(self, requested_message: str, evse: dict[str, Any] | None = None, **_: Any) -> Any:
        status, code, reason = self.bridge.trigger(requested_message, evse)
        return rpc.result(self, "TriggerMessage", status=status, status_info=_status_info(code, reason))

    @rpc.handles("RequestStartTransaction")
    def on_request_start_transaction(self, evse_id: int | None = None, **_: Any) -> Any:
        code, reason, transaction_id = self.bridge.request_start(evse_id)
        info = _status_info(code, reason)
        return rpc.result(
            self, "RequestStartTransaction", status="Rejected", status_info=info, transaction_id=transaction_id
        )


class StationBridge:
    """One station (one EVSE) between its SECC sessions and a CSMS."""

    def __init__(
        self, config: BridgeConfig, outbox: Outbox, setpoint: ProfileSetpoint, listener: Listener | None = None
    ) -> None:
        self.config = config
        self.outbox = outbox
        self.setpoint = setpoint
        self.listener = listener
        self.transaction: _Transaction | None = None
        self.subprotocol: str | None = None
        self._needs: EVChargingNeeds | None = None
        self._needs_at = 0.0  # when the EV declared them (epoch s), and the meter's net Wh into the EV then
        self._needs_net_wh = 0.0
        self._needs_sent = False
        self._status = "Available"
        self._status_sent = False
        self.stopping = False  # the station is shutting down: no session runs on (stop_locally)
        self._wake = asyncio.Event()
        self._peer: Any = None
        self._accepted = False  # the CSMS accepted this connection's BootNotification
        self._refusals = (0, 0)  # the outbox record the CSMS refused (its n) and how many times
        self._retry_at = 0.0  # (monotonic) when that record is sent again
        # OCPPCommCtrlr.HeartbeatInterval (s): the accepted BootNotificationResponse's interval (B01),
        # or what SetVariables made it since; 0 before a BootNotification was accepted.
        self.heartbeat_interval = 0.0
        self._last_heartbeat = 0.0  # (monotonic) when the last Heartbeat went, or the boot was accepted
        self._triggered: list[str] = []  # messages TriggerMessage asked for, not yet sent (F06)
        self._boot_now = asyncio.Event()  # TriggerMessage BootNotification while not accepted (F06)
        # Set once the first connection attempt has its outcome: the BootNotification accepted or
        # refused, or the connection failed. Before it, an event is not known to be offline.
        self.attempted = asyncio.Event()
        self.device_model = _device_model(self)

    # -- the session's side (synchronous, never blocks on the network) ---------------------------------
    def on_event(self, event: Event) -> None:
        """Feed every event of the station's SECC here."""
        if getattr(event, "role", "SECC") != "SECC":
            return
        now = time.time()
        if isinstance(event, PhaseChanged) and event.phase == "SessionSetup":
            self._start_transaction(now)
        elif self.transaction is None:
            return
        elif isinstance(event, EVChargingNeeds):
            self._needs, self._needs_sent = event, False
            self._needs_at, self._needs_net_wh = now, _net_wh(self.transaction.meter)
            self._wake.set()
        elif isinstance(event, PhaseChanged) and event.phase == "DC_ChargeLoop":
            self._transaction_event("Updated", "ChargingStateChanged", now, charging_state="Charging")
        elif isinstance(event, PowerFlow):
            tx = self.transaction
            tx.meter.sample(event.t, event.voltage, event.power, event.soc)
            if now - tx.last_periodic >= self.config.meter_interval:
                tx.last_periodic = now
                self._transaction_event("Updated", "MeterValuePeriodic", now, meter=True)
        elif isinstance(event, PhaseChanged) and event.phase in IDLE_PHASES:
            self.transaction.meter.idle()
            state = IDLE_PHASES[event.phase]
            self._transaction_event("Updated", "ChargingStateChanged", now, charging_state=state, meter=True)
        elif isinstance(event, SessionEnded):
            self._end_transaction(event, now)

    def _start_transaction(self, now: float) -> None:
        self.transaction = _Transaction(id=uuid.uuid4().hex, last_periodic=now)
        self.setpoint.transaction_id = self.transaction.id
        self.setpoint.transaction_start = now
        self._status, self._status_sent = "Occupied", False
        self._transaction_event(
            "Started",
            "CablePluggedIn",
            now,
            charging_state="EVConnected",
            evse={"id": self.config.evse_id, "connector_id": 1},
            meter=True,  # the registers at the begin (SampledDataCtrlr.TxStartedMeasurands, E01): the CSMS's baseline
            context="Transaction.Begin",
        )

    def _end_transaction(self, event: SessionEnded | None, now: float) -> None:
        """TransactionEvent Ended (E06) of a session that ended (*event*), or that the station gave up
        on while shutting down (None). Stopped on request, its stoppedReason is the request's: Remote
        (F03), or Local with StopAuthorized when the station was stopped where it stands (E07's
        reason; no idToken: the operator stopped the station)."""
        assert self.transaction is not None
        self.transaction.meter.idle()
        if self.transaction.remote_stop:
            reason, trigger = "Remote", "RemoteStop"
        elif self.stopping:
            reason, trigger = "Local", "StopAuthorized"
        elif event is not None and event.ok:
            reason, trigger = "StoppedByEV", "EVDeparted"
        else:
            reason = "Timeout" if event is not None and "Timeout" in event.reason else "Other"
            trigger = "AbnormalCondition"
        self._transaction_event(
            "Ended",
            trigger,
            now,
            charging_state="Idle",
            stopped_reason=reason,
            meter=True,
            context="Transaction.End",
        )
        self.transaction = None
        self.setpoint.end_transaction()
        self._needs = None
        self._status, self._status_sent = "Available", False

    def _transaction_event(
        self,
        event_type: str,
        trigger: str,
        now: float,
        *,
        charging_state: str | None = None,
        stopped_reason: str | None = None,
        evse: dict[str, int] | None = None,
        meter: bool = False,
        context: str = "Sample.Periodic",
    ) -> None:
        tx = self.transaction
        assert tx is not None
        info: dict[str, Any] = {"transaction_id": tx.id}
        if charging_state is not None:
            info["charging_state"] = charging_state
        if stopped_reason is not None:
            info["stopped_reason"] = stopped_reason
        payload: dict[str, Any] = {
            "event_type": event_type,
            "timestamp": timestamp(now),
            "trigger_reason": trigger,
            "seq_no": tx.seq,
            "transaction_info": info,
        }
        if self._peer is None:  # no connection to send on: not connected, or the boot not accepted yet
            payload["offline"] = True
        if evse is not None:
            payload["evse"] = evse
        if meter:
            payload["meter_value"] = [tx.meter.meter_value(now, context)]
        tx.seq += 1
        self.outbox.put("TransactionEvent", payload)
        self._wake.set()  # the sender takes it (every status change comes with one of these)

    # -- CSMS-initiated ------------------------------------------------------------------------------
    def request_stop(self, transaction_id: str) -> bool:
        """RequestStopTransaction (F03): the running session is asked to end (EVSENotification
        Terminate at its next loop); False when no such transaction runs here."""
        if self.transaction is None or self.transaction.id != transaction_id:
            return False
        self.transaction.remote_stop = True
        return True

    def set_variable(self, data: dict[str, Any]) -> Answer:
        """SetVariables (B05) of one SetVariableData: the device model's answer; an accepted value is
        reported, and the sender woken, for a new HeartbeatInterval moves the next heartbeat."""
        answer = self.device_model.set(data)
        if answer.status == "Accepted":
            self.report(
                VariableSet(
                    t=time.time(),
                    station=self.config.station_id,
                    component=data["component"]["name"],
                    variable=data["variable"]["name"],
                    value=data["attribute_value"].strip(),
                )
            )
            self._wake.set()
        return answer

    def trigger(self, requested: str, evse: dict[str, Any] | None) -> tuple[str, str, str]:
        """TriggerMessage (F06): its status, statusInfo reasonCode and why. The message goes out once
        the answer did (F06.FR.04; the handler only asks the sender, which runs after the answer is
        written): a BootNotification while the CSMS has not accepted one (Rejected after, F06.FR.17),
        a Heartbeat, the connector's StatusNotification, and, while a transaction runs, MeterValues
        (context Trigger) or a TransactionEvent Updated with triggerReason Trigger, queued behind the
        transaction's events. Without one they are Rejected (TxNotFound: the meter counts a
        session's energy). The evse, when given, must be this station's (connector 1); a Heartbeat
        or BootNotification ignores it (F06.FR.02). Anything else is NotImplemented. While the CSMS
        has not accepted a BootNotification (B02 Pending), all but a BootNotification wait for it."""
        if requested not in TRIGGERABLE:
            return "NotImplemented", "UnsupportedRequest", f"this station does not send {requested} on request"
        if requested == "BootNotification":
            if self._accepted:
                return "Rejected", "Unspecified", "the CSMS accepted this connection's BootNotification (F06.FR.17)"
            self._boot_now.set()
            return "Accepted", "", ""
        if requested != "Heartbeat" and evse is not None:
            if evse["id"] != self.config.evse_id:
                return "Rejected", "UnknownEvse", f"this station has EVSE {self.config.evse_id} only"
            if evse.get("connector_id", 1) != 1:
                return "Rejected", "UnknownConnectorId", f"EVSE {self.config.evse_id} has connector 1 only"
        if requested in ("MeterValues", "TransactionEvent") and self.transaction is None:
            return "Rejected", "TxNotFound", f"no transaction runs on EVSE {self.config.evse_id}"
        if requested == "TransactionEvent":
            self._transaction_event("Updated", "Trigger", time.time(), meter=True, context="Trigger")
        elif requested not in self._triggered:
            self._triggered.append(requested)
            self._wake.set()
        return "Accepted", "", ""

    def request_start(self, evse_id: int | None) -> tuple[str, str, str | None]:
        """RequestStartTransaction (F01), always Rejected: an ISO 15118-20 session starts when an EV
        plugs in and talks to the SECC, and the bridge cannot start one. Its statusInfo reasonCode,
        why, and the transaction already running on the EVSE (the response's transactionId)."""
        if evse_id is not None and evse_id != self.config.evse_id:
            return "UnknownEvse", f"this station has EVSE {self.config.evse_id} only", None
        if self.transaction is not None:
            tx = self.transaction.id
            return "TxInProgress", f"transaction {tx} already runs on EVSE {self.config.evse_id}", tx
        return "UnsupportedRequest", "a session starts when an EV plugs in; the station cannot start one", None

    def stop_request(self) -> str | None:
        """The SECC's question at every loop: does the station want the session ended?"""
        tx = self.transaction
        return "Terminate" if tx is not None and (tx.remote_stop or self.stopping) else None

    # -- the station's own ---------------------------------------------------------------------------
    def stop_locally(self) -> None:
        """The station shuts down (SIGTERM/SIGINT): the running session is asked to end
        (EVSENotification Terminate at its next loop), its Ended says stoppedReason Local."""
        self.stopping = True

    def end_open_transaction(self) -> None:
        """Queue the Ended of a transaction whose session will not end it any more (the station
        stops before the session did): nothing of a transaction is lost on the way down."""
        if self.transaction is not None:
            self._end_transaction(None, time.time())

    def end_interrupted_transaction(self) -> None:
        """Queue the Ended of the transaction a previous run of this station left open (the process was
        killed mid-session; :attr:`~v2gtool.ocpp.outbox.Outbox.open_transaction`): behind that
        transaction's queued events, before any new transaction, so that a CSMS does not keep it
        open for ever. Its session did not survive the restart, as a charger's does not survive a
        power loss: stoppedReason PowerLoss, triggerReason AbnormalCondition, the registers of its
        last meter value, and ``offline`` as every event queued before the connection. Call it
        before the first session."""
        open_tx = self.outbox.open_transaction
        if open_tx is None or self.transaction is not None:
            return
        meter = Meter()
        if open_tx.meter_value is not None:
            try:
                reading = read_meter_value(open_tx.meter_value)
            except (ValueError, TypeError, KeyError) as exc:
                raise OutboxError(
                    f"outbox {self.outbox.directory}: the last meter value of transaction "
                    f"{open_tx.transaction_id}: {exc}"
                ) from None
            meter = Meter(
                imported_wh=reading.imported_wh or 0.0, exported_wh=reading.exported_wh or 0.0, soc=reading.soc
            )
        self.transaction = _Transaction(id=open_tx.transaction_id, seq=open_tx.seq_no + 1, meter=meter)
        self._transaction_event(
            "Ended",
            "AbnormalCondition",
            time.time(),
            charging_state="Idle",
            stopped_reason="PowerLoss",
            meter=open_tx.meter_value is not None,
            context="Transaction.End",
        )
        self.transaction = None

    @property
    def connected(self) -> bool:
        """Whether the CSMS accepted this station (BootNotification Accepted) and is connected."""
        return self._peer is not None

    def report(self, event: Event) -> None:
        """Tell the listener of a bridge event (a frame the CSMS sent that was refused, ...)."""
        if self.listener is not None:
            self.listener(event)

    def allow_energy_transfer(self, transaction_id: str, modes: list[str]) -> tuple[str, str]:
        """NotifyAllowedEnergyTransfer (OCPP 2.1, use case Q02): the energy transfer modes the CSMS
        accepts for the transaction. ("Accepted", "") or ("Rejected", why)."""
        if self.transaction is None or self.transaction.id != transaction_id:
            return "Rejected", f"no transaction {transaction_id} runs here"
        services = frozenset(OCPP_MODES[mode] for mode in modes if mode in OCPP_MODES) & self.config.services
        if not services:
            has = ", ".join(sorted(s.name for s in self.config.services))
            return "Rejected", f"none of {', '.join(modes)} is a service of this station (it has {has})"
        self.transaction.allowed = services
        return "Accepted", ""

    def allowed_services(self) -> frozenset[ServiceID]:
        """The SECC's ``allowed_services``: what the CSMS allowed for the running transaction; a
        change during the loop makes the SECC ask the EV to renegotiate its service."""
        tx = self.transaction
        return tx.allowed if tx is not None and tx.allowed is not None else self.config.services

    def set_charging_profile(self, evse_id: int, data: dict[str, Any]) -> tuple[str, str, str]:
        """SetChargingProfile (K01): the status, its statusInfo reasonCode and why: ("Rejected", the
        :class:`~v2gtool.ocpp.profile.ProfileRejected`'s code, why), ("Accepted", "LimitCapped", how)
        when the profile asks more than the charger can do and is capped at its maximum
        (:meth:`~v2gtool.ocpp.profile.ProfileSetpoint.capped`, "" when not)."""
        now = time.time()
        try:
            if evse_id not in (0, self.config.evse_id):
                raise ProfileRejected(f"unknown EVSE {evse_id}")
            _check_evse(data.get("charging_profile_purpose"), evse_id)
            profile = self.setpoint.install(data, evse_id)
        except ProfileRejected as exc:
            self.report(
                ChargingProfileReceived(
                    t=now,
                    station=self.config.station_id,
                    profile_id=int(data.get("id", -1)),
                    accepted=False,
                    reason=str(exc),
                    power_now=None,
                )
            )
            return "Rejected", exc.code, str(exc)
        capped = self.setpoint.capped(profile)
        self.report(
            ChargingProfileReceived(
                t=now,
                station=self.config.station_id,
                profile_id=profile.id,
                accepted=True,
                reason=capped,
                power_now=self.setpoint.power(now),
            )
        )
        return "Accepted", "LimitCapped", capped

    def install_certificate(self, certificate_type: str, pem: str) -> tuple[str, str, str]:
        """InstallCertificate (M05) of a V2G or MO root into the trust directory: the status, its
        statusInfo reasonCode and why. Another certificate type is UnsupportedRequest, a station
        without a trust directory (``ocpp-bridge --sim`` without ``--trust-dir``) NotEnabled, a
        certificate that is no PEM V2G root InvalidCertificate; a trust directory that cannot be
        written is Failed (InternalError)."""
        if certificate_type not in ROOT_TYPES:
            return "Rejected", "UnsupportedRequest", f"{certificate_type} is not installed by this station"
        if self.config.trust_dir is None:
            return "Rejected", "NotEnabled", f"this station has no trust directory to install a {certificate_type} in"
        try:
            install_roots(x509.load_pem_x509_certificates(pem.encode()), self.config.trust_dir)
        except ValueError as exc:
            return "Rejected", "InvalidCertificate", f"not a PEM root certificate: {exc}"
        except CertificateError as exc:  # not a self-signed V2G root CA
            return "Rejected", "InvalidCertificate", str(exc)
        except PkiError as exc:  # the trust directory cannot be written
            return "Failed", "InternalError", str(exc)
        return "Accepted", "", ""

    async def get_15118_ev_certificate(self, action: str, exi_request: bytes) -> tuple[str, bytes]:
        """Get15118EVCertificate (M01/M02): pass the EV's CertificateInstallationReq (EXI) through."""
        res = await self._peer_call(
            "Get15118EVCertificate",
            {
                "iso15118_schema_version": "urn:iso:std:iso:15118:-20:CommonMessages",
                "action": action,
                "exi_request": base64.b64encode(exi_request).decode(),
            },
        )
        return str(res.status), base64.b64decode(res.exi_response)

    async def _peer_call(self, action: str, payload: dict[str, Any]) -> Any:
        if self._peer is None:
            raise ConnectionError(f"{action}: not connected to the CSMS")
        return await self._call(self._peer, action, payload)

    # -- the connection ------------------------------------------------------------------------------
    async def run(self) -> None:
        """Connect, and reconnect with back-off, until cancelled; the session never waits on it.

        The back-off (``reconnect``: first and longest wait, doubling in between) starts over only
        once the CSMS accepted a BootNotification: a CSMS that refuses or garbles the boot is not
        stormed with reconnections (OCPP 2.0.1 B03, part 4 5.3 "reconnecting")."""
        delay = self.config.reconnect[0]
        url = self.config.url.rstrip("/") + "/" + urllib.parse.quote(self.config.station_id, safe=PATH_SAFE)
        headers = {}
        if self.config.password is not None:
            token = base64.b64encode(f"{self.config.station_id}:{self.config.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        while True:
            reason = "closed"
            try:
                async with connect(
                    url,
                    subprotocols=[websockets.Subprotocol(p) for p in self.config.subprotocols],
                    additional_headers=headers,
                    ssl=self.config.ssl,
                    proxy=None,
                    open_timeout=self.config.response_timeout,
                ) as ws:
                    try:
                        await self._serve(ws, url)
                    except asyncio.CancelledError:  # the station stops: a normal closure, not 1011
                        await ws.close(CloseCode.NORMAL_CLOSURE, "station stopped")
                        raise
            except rpc.OCPPError as exc:  # the BootNotification refused with a CALLERROR, or garbled
                reason = _refusal(exc)
            except (TimeoutError, OSError, websockets.WebSocketException, ValueError) as exc:
                reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            finally:
                self._peer = None
            self.report(CsmsDisconnected(t=time.time(), url=url, reason=reason, queued=len(self.outbox)))
            self.attempted.set()
            if self._accepted:
                self._accepted = False
                delay = self.config.reconnect[0]
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.config.reconnect[1])

    async def _serve(self, ws: ClientConnection, url: str) -> None:
        cls = rpc.for_version(ws.subprotocol, _StationHandlers)
        peer = cls(self.config.station_id, ws, response_timeout=self.config.response_timeout, logger=RPC_LOG)
        peer.bridge = self
        peer.debug = self.config.debug
        self.subprotocol = ws.subprotocol
        self._triggered.clear()  # what the CSMS asked of an earlier connection
        reader = asyncio.create_task(peer.start())
        sender = asyncio.create_task(self._send_all(peer, url))
        try:
            done, _ = await asyncio.wait({reader, sender}, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()
        finally:
            self._peer = None
            for task in (reader, sender):
                task.cancel()
            await asyncio.gather(reader, sender, return_exceptions=True)

    async def _boot(self, peer: Any, url: str) -> float:
        """BootNotification until the CSMS accepts it; the heartbeat interval it gave (s).

        Pending or Rejected (OCPP 2.0.1 B02, B03): nothing else is sent, and the next
        BootNotification waits the response's ``interval``, at least the reconnection back-off,
        which doubles on every refusal (an interval of 0 is no licence to retry at once), unless
        the CSMS asks for it with a TriggerMessage (F06, reason Triggered)."""
        backoff = self.config.reconnect[0]
        reason = "PowerUp"
        self._boot_now.clear()
        while True:
            boot = await self._call(
                peer,
                "BootNotification",
                {
                    "charging_station": {"vendor_name": self.config.vendor, "model": self.config.model},
                    "reason": reason,
                },
            )
            if boot.status == "Accepted":
                self._accepted = True
                return max(float(boot.interval), 1.0)
            wait = max(float(boot.interval), backoff)
            self.report(
                CsmsRefused(
                    t=time.time(),
                    url=url,
                    action="BootNotification",
                    reason=f"{boot.status}, next BootNotification in {wait:g} s",
                )
            )
            self.attempted.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._boot_now.wait(), wait)
            reason = "Triggered" if self._boot_now.is_set() else "PowerUp"
            self._boot_now.clear()
            backoff = min(backoff * 2, self.config.reconnect[1])

    async def _send_all(self, peer: Any, url: str) -> None:
        self.heartbeat_interval = await self._boot(peer, url)
        self._last_heartbeat = time.monotonic()
        self._peer = peer
        self._status_sent = self._needs_sent = False
        self.report(CsmsConnected(t=time.time(), url=url, subprotocol=str(self.subprotocol)))
        self.attempted.set()
        while True:
            self._wake.clear()
            while self._triggered:  # what TriggerMessage asked for, at once (F06)
                await self._send_triggered(peer, url, self._triggered.pop(0))
            # The transaction's own events first: a CSMS must know the transaction before its needs,
            # and a refused one waits for its retry with everything behind it (E13).
            record = self.outbox.peek()
            if record is not None:
                if time.monotonic() >= self._retry_at:
                    await self._deliver(peer, url, record)
                    continue
            elif not self._status_sent:
                self._status_sent = True
                await self._send_status(peer, url)
            if record is None and self._needs is not None and not self._needs_sent:
                self._needs_sent = True
                assert self.subprotocol is not None
                await self._notify(
                    peer,
                    url,
                    "NotifyEVChargingNeeds",
                    charging_needs(self._needs_now(), self.subprotocol, self._needs_at, self.config.evse_id),
                )
            next_heartbeat = self._last_heartbeat + self.heartbeat_interval
            if time.monotonic() >= next_heartbeat:
                await self._heartbeat(peer, url)
                next_heartbeat = self._last_heartbeat + self.heartbeat_interval
            until = next_heartbeat if record is None else min(next_heartbeat, self._retry_at)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), max(0.0, until - time.monotonic()))

    async def _send_status(self, peer: Any, url: str) -> None:
        """The connector's StatusNotification (G01)."""
        payload = {
            "timestamp": timestamp(time.time()),
            "connector_status": self._status,
            "evse_id": self.config.evse_id,
            "connector_id": 1,
        }
        await self._notify(peer, url, "StatusNotification", payload)

    async def _heartbeat(self, peer: Any, url: str) -> None:
        """A Heartbeat (G02); the next one is due HeartbeatInterval after it."""
        await self._notify(peer, url, "Heartbeat", {})
        self._last_heartbeat = time.monotonic()

    async def _send_triggered(self, peer: Any, url: str, message: str) -> None:
        """A message TriggerMessage asked for (F06; :meth:`trigger`). MeterValues (J01) carries the
        transaction's meter, context Trigger; the transaction may have ended since the request."""
        if message == "Heartbeat":
            await self._heartbeat(peer, url)
        elif message == "StatusNotification":
            await self._send_status(peer, url)
        elif self.transaction is not None:
            meter_value = self.transaction.meter.meter_value(time.time(), "Trigger")
            await self._notify(peer, url, "MeterValues", {"evse_id": self.config.evse_id, "meter_value": [meter_value]})

    async def _deliver(self, peer: Any, url: str, record: Record) -> None:
        """Send the outbox's oldest TransactionEvent; it leaves the outbox once the CSMS answered it.

        A CALLERROR (or a payload the schema refuses) is no answer: the event is sent again after
        ``transaction_event_interval`` x the number of times it was sent (E13.FR.01-03), and given up
        only after ``transaction_event_attempts`` (E13.FR.04: :class:`TransactionEventDiscarded`).
        It stays first in the outbox, on disk, meanwhile: later events wait behind it, and a restart
        sends it again."""
        try:
            await self._call(peer, record.action, record.payload)
        except rpc.OCPPError as exc:
            reason = _refusal(exc)
            self.report(CsmsRefused(t=time.time(), url=url, action=record.action, reason=reason))
            n, refused = self._refusals
            refused = refused + 1 if n == record.n else 1
            if refused < self.config.transaction_event_attempts:
                self._refusals = (record.n, refused)
                self._retry_at = time.monotonic() + self.config.transaction_event_interval * refused
                return
            self.report(
                TransactionEventDiscarded(
                    t=time.time(),
                    url=url,
                    transaction_id=str(record.payload.get("transaction_info", {}).get("transaction_id")),
                    seq_no=int(record.payload.get("seq_no", -1)),
                    event_type=str(record.payload.get("event_type")),
                    attempts=refused,
                    reason=reason,
                )
            )
        self.outbox.ack(record)
        self._refusals, self._retry_at = (0, 0), 0.0

    def _needs_now(self) -> EVChargingNeeds:
        """The EV's needs as NotifyEVChargingNeeds (K15) sends them, however late (a reconnection, a
        BootNotification not yet accepted): its energy requests less the net energy the meter counted
        into the EV since it declared them (what it exported is no longer above its minimum SoC).
        Its departureTime stays relative to when it declared it: :func:`charging_needs` is given that
        moment, not the sending's."""
        tx = self.transaction
        assert self._needs is not None and tx is not None
        charged = _net_wh(tx.meter) - self._needs_net_wh
        moved = {name: value - charged for name in ENERGY_REQUESTS if (value := getattr(self._needs, name)) is not None}
        return dataclasses.replace(self._needs, **moved)

    async def _call(self, peer: Any, action: str, payload: dict[str, Any]) -> Any:
        """*action*'s answer. A cancellation that came with the answer is not lost: Python 3.11's
        ``asyncio.wait_for`` (under the package's call) then returns the answer and drops it
        (CPython gh-86296), and the station would go on sending, with no reader, until a response
        timeout, instead of closing at once."""
        answer = await peer.call(rpc.make_call(peer, action, payload), suppress=False)
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise asyncio.CancelledError
        return answer

    async def _notify(self, peer: Any, url: str, action: str, payload: dict[str, Any]) -> None:
        """A message whose refusal (a CallError, a payload the schema refuses, or an answer with status
        Rejected: NotifyEVChargingNeeds, K15) ends nothing: it is reported and the connection goes on."""
        try:
            answer = await self._call(peer, action, payload)
        except rpc.OCPPError as exc:
            self.report(CsmsRefused(t=time.time(), url=url, action=action, reason=_refusal(exc)))
            return
        if getattr(answer, "status", None) == "Rejected":
            info = getattr(answer, "status_info", None) or {}
            why = ": ".join(str(info[key]) for key in ("reason_code", "additional_info") if info.get(key))
            reason = f"Rejected ({why})" if why else "Rejected"
            self.report(CsmsRefused(t=time.time(), url=url, action=action, reason=reason))
