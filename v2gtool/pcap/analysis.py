"""The questions engineers ask of a V2G trace, answered from the dissected records in one pass.

:class:`TraceAnalysis` consumes records as they stream by and keeps only bounded state: per-message
response-time statistics, the phases, the first findings of each kind and a decimated V/I/P series.
Timeouts are the EVCC message timeouts of ISO 15118-20 (clause 8.8.3), ISO 15118-2 Table 109 and
DIN SPEC 70121 Table 75 (../shared/spec/standards.md section 4.4; josev's timeouts.py of each):
-20 DC/AC_ChargeLoop 0.5 s, ServiceDetail and CertificateInstallation 5 s, every other message 2 s;
-2 CurrentDemand 0.25 s, ServiceDetail, PaymentDetails, CertificateInstallation/Update and
PowerDelivery 5 s, others 2 s; DIN CurrentDemand 0.25 s, every other message (PowerDelivery too) 2 s.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from v2gtool.iso20.values import service_name
from v2gtool.pcap.records import (
    CAPTURE_ENDED,
    SECC,
    ConnectionEnd,
    Frame,
    ProtocolError,
    SdpMessage,
    SlacMessage,
    TLSSession,
    TraceRecord,
    V2GMessage,
    message_element,
    physical_value,
    scaled,
)

NEAR_TIMEOUT = 0.8  # a response slower than 80 % of its timeout is flagged "near"
MAX_LISTED = 200  # findings listed per kind; the rest are counted
MAX_SERIES = 4096  # points kept per series; the series is halved (every other point) when full

_PHASE_OF: dict[str, str] = {
    "supportedAppProtocol": "handshake", "SessionSetup": "session setup",
    "AuthorizationSetup": "authorization", "Authorization": "authorization",
    "PaymentServiceSelection": "authorization", "ServicePaymentSelection": "authorization",
    "PaymentDetails": "authorization", "ContractAuthentication": "authorization",
    "CertificateInstallation": "authorization", "CertificateUpdate": "authorization",
    "ServiceDiscovery": "parameter discovery", "ServiceDetail": "parameter discovery",
    "ServiceSelection": "parameter discovery", "ChargeParameterDiscovery": "parameter discovery",
    "DC_ChargeParameterDiscovery": "parameter discovery", "AC_ChargeParameterDiscovery": "parameter discovery",
    "ScheduleExchange": "parameter discovery",
    "CableCheck": "cable check", "DC_CableCheck": "cable check",
    "PreCharge": "precharge", "DC_PreCharge": "precharge",
    "CurrentDemand": "loop", "DC_ChargeLoop": "loop", "AC_ChargeLoop": "loop", "ChargingStatus": "loop",
    "MeteringReceipt": "loop", "MeteringConfirmation": "loop",
    "WeldingDetection": "stop", "DC_WeldingDetection": "stop", "SessionStop": "stop",
}
_LOOP_MESSAGES = frozenset({"CurrentDemand", "DC_ChargeLoop", "AC_ChargeLoop", "ChargingStatus"})
_FIVE_SECONDS_ISO2 = frozenset({"ServiceDetail", "PaymentDetails", "CertificateInstallation", "CertificateUpdate",
                                "PowerDelivery"})
SERIES_FIELDS = frozenset({"EVSEPresentVoltage", "EVSEPresentCurrent", "EVTargetVoltage", "EVTargetCurrent",
                           "EVPresentVoltage", "EVSEPresentActivePower"})
RESPONSE_FIELDS = SERIES_FIELDS | {"EVSENotification"}


def base_name(message: str) -> tuple[str, str]:
    """Split ``DC_ChargeLoopReq`` into (``DC_ChargeLoop``, ``Req``)."""
    if message.endswith(("Req", "Res")):
        return message[:-3], message[-3:]
    return message, ""


def timeout_of(namespace: str, base: str) -> float:
    """The message timeout (seconds) of the request *base* in the schema set *namespace*."""
    if namespace.startswith("iso20"):
        if base in ("DC_ChargeLoop", "AC_ChargeLoop"):
            return 0.5
        return 5.0 if base in ("ServiceDetail", "CertificateInstallation") else 2.0
    if base == "CurrentDemand":
        return 0.25
    if namespace == "din":  # DIN SPEC 70121 Table 75: no 5 s message
        return 2.0
    return 5.0 if base in _FIVE_SECONDS_ISO2 else 2.0


def first_of(tree: Any, keys: frozenset[str]) -> dict[str, Any]:
    """The first value stored under each of *keys* in a JSON-form tree, in one depth-first pass."""
    # JSON values are exactly dict, list, str, int, float, bool or None: type() is enough (and cheap)
    found: dict[str, Any] = {}
    stack = [tree]
    while stack:
        node = stack.pop()
        if type(node) is dict:
            for k, v in node.items():
                if k in keys and k not in found:
                    found[k] = v
                if type(v) is dict or type(v) is list:
                    stack.append(v)
        elif type(node) is list:
            stack.extend(reversed(node))
    return found


def walk(value: Any, key: str) -> Iterator[Any]:
    """Every value stored under *key* anywhere in a JSON-form tree."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k == key:
                yield v
            yield from walk(v, key)
    elif isinstance(value, list):
        for item in value:
            yield from walk(item, key)


@dataclass(frozen=True, slots=True)
class LoopLayout:
    """Where the series fields and EVSENotification of a charge-loop message sit in its schema type.

    *own* are wanted fields of the message element itself, *nested* the child elements holding others
    (alternative control modes of an XSD choice, the EVSE status) with the fields wanted in each. Taking
    these few values directly costs a fraction of walking the element, and the loop is nearly every
    message of a capture.
    """

    own: tuple[str, ...]
    nested: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def fields(self, element: dict[str, Any]) -> dict[str, Any]:
        """What ``first_of(element, keys)`` returns for a schema-valid *element*, keys being the layout's."""
        # first_of reads all of a level before it descends, so the element's own fields come first
        found: dict[str, Any] = {}
        for key in self.own:
            if key in element:
                found[key] = element[key]
        for child, keys in self.nested:
            node = element.get(child)
            if node is not None:
                for key in keys:
                    if key in node and key not in found:
                        found[key] = node[key]
        return found


_TARGETS = ("EVTargetCurrent", "EVTargetVoltage")  # -20: in the Scheduled and BPT_Scheduled control modes only
_STATUS = ("EVSENotification",)
# The XSD types (v2gtool/messages): ISO 15118-20 DC DC_ChargeLoopReq/ResType, ISO 15118-2 and DIN 70121
# CurrentDemandReq/ResType. No other element of these types can hold a series field or EVSENotification
# (tests/pcap/test_analysis_fastpath.py checks this against the typed messages).
LOOP_LAYOUTS: dict[str, LoopLayout] = {
    "DC_ChargeLoopReq": LoopLayout(("EVPresentVoltage",), (("Scheduled_DC_CLReqControlMode", _TARGETS),
                                                           ("BPT_Scheduled_DC_CLReqControlMode", _TARGETS))),
    "DC_ChargeLoopRes": LoopLayout(("EVSEPresentCurrent", "EVSEPresentVoltage"), (("EVSEStatus", _STATUS),)),
    "CurrentDemandReq": LoopLayout(_TARGETS),
    "CurrentDemandRes": LoopLayout(("EVSEPresentVoltage", "EVSEPresentCurrent"), (("DC_EVSEStatus", _STATUS),)),
}


@dataclass(frozen=True, slots=True)
class MessageKind:
    """What the analysis needs of a message name, worked out once per name (see :func:`message_kind`)."""

    base: str
    kind: str  # "Req", "Res" or "" (neither)
    phase: str | None  # None: no phase of its own, or (PowerDelivery) decided per message
    loop: bool  # a message of the charge loop: its fields feed the series
    layout: LoopLayout | None  # where its series fields are, when known; otherwise they are searched for


_KINDS: dict[str, MessageKind] = {}  # bounded: message names come from the schemas' finite sets


def message_kind(message: str) -> MessageKind:
    """The (cached) :class:`MessageKind` of the message name *message*."""
    known = _KINDS.get(message)
    if known is None:
        base, kind = base_name(message)
        known = _KINDS[message] = MessageKind(base, kind, _PHASE_OF.get(base), base in _LOOP_MESSAGES,
                                              LOOP_LAYOUTS.get(message))
    return known


@dataclass(slots=True)
class ResponseStats:
    """Response times of one request type (seconds)."""

    timeout: float
    count: int = 0
    total: float = 0.0
    minimum: float = float("inf")
    maximum: float = 0.0
    near: int = 0
    over: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"timeout": self.timeout, "count": self.count, "min": round(self.minimum, 6),
                "mean": round(self.total / self.count, 6) if self.count else None, "max": round(self.maximum, 6),
                "near": self.near, "over": self.over}


@dataclass(slots=True)
class Series:
    """A time series that keeps at most MAX_SERIES points by halving its resolution when full."""

    points: list[tuple[float, float]] = field(default_factory=list)
    stride: int = 1
    seen: int = 0

    def add(self, t: float, value: float) -> None:
        seen = self.seen
        self.seen = seen + 1
        if seen % self.stride:
            return
        self.points.append((t, value))
        if len(self.points) >= MAX_SERIES:
            self.points = self.points[::2]
            self.stride *= 2


@dataclass(slots=True)
class _Phase:
    name: str
    start: float
    end: float
    first_frame: int
    messages: int = 1


class TraceAnalysis:
    """Streaming analysis of one capture; feed records with :meth:`add`, read :meth:`summary`."""

    def __init__(self) -> None:
        self.start: float | None = None
        self.end = 0.0
        self.frames = 0
        self.messages = 0
        self.phases: list[_Phase] = []
        self.response_times: dict[str, ResponseStats] = {}
        self.slow_responses: list[dict[str, Any]] = []
        self.response_codes: list[dict[str, Any]] = []
        self.response_code_counts: dict[str, int] = {}
        self.notifications: list[dict[str, Any]] = []
        self.errors: list[dict[str, Any]] = []
        self.error_count = 0
        self.offered_services: set[str] = set()
        self.selected_services: list[str] = []
        self.control_modes: dict[str, int] = {}
        self.series: dict[str, Series] = {}
        self.slac_candidates: dict[str, dict[str, Any]] = {}
        self.slac_chosen: str | None = None
        self.protocols: set[str] = set()
        self.tls: list[dict[str, Any]] = []
        self._pending: dict[int, tuple[str, float, int, str]] = {}  # stream -> request base, t, frame, namespace
        self._request_phase: dict[int, str] = {}  # stream -> phase of its last request (its response shares it)
        self._last_notification: dict[int, str] = {}

    def add(self, record: TraceRecord) -> None:
        """Take one record of the dissector."""
        t = record.t
        if self.start is None:
            self.start = t
        if t > self.end:
            self.end = t
        record_type = type(record)
        if record_type is Frame:  # one per packet: the summary only counts them
            self.frames += 1
        else:
            (_HANDLERS.get(record_type) or _handler(record_type))(self, record)

    def _tls(self, record: TLSSession) -> None:
        self._phase("TLS", record)
        if len(self.tls) < MAX_LISTED:
            self.tls.append({"frame": record.frame, "tcp_stream": record.tcp_stream, "version": record.version,
                             "cipher_suite": record.cipher_suite})

    def _protocol_error(self, record: ProtocolError) -> None:
        self._error(record.frame, record.t, f"{record.layer}: {record.message}")

    def _frame(self, record: Frame) -> None:
        self.frames += 1

    def _sdp(self, record: SdpMessage) -> None:
        self._phase("SDP", record)

    def _ignore(self, record: TraceRecord) -> None:
        """Records the summary does not use (KeyDisclosed)."""

    @property
    def failed(self) -> bool:
        """True when the trace shows a protocol error (the CLI's non-zero exit)."""
        return self.error_count > 0

    def _error(self, frame: int, t: float, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_LISTED:
            self.errors.append({"frame": frame, "t": t, "error": message})

    def _phase(self, name: str, record: TraceRecord) -> None:
        last = self.phases[-1] if self.phases else None
        if last is not None and last.name == name:
            last.end = record.t
            last.messages += 1
        elif len(self.phases) < MAX_LISTED:
            self.phases.append(_Phase(name, record.t, record.t, record.frame))

    def _slac(self, record: SlacMessage) -> None:
        mme = record.mme
        mmtype = mme["mmtype"]
        if 0x6064 <= mmtype <= 0x607D:
            self._phase("SLAC", record)
        if mmtype == 0x6065 and record.source:  # CM_SLAC_PARM.CNF: an EVSE answered
            self.slac_candidates.setdefault(record.source, {"parm_cnf_frame": record.frame})
        elif mmtype == 0x606E and record.source:  # CM_ATTEN_CHAR.IND: the EVSE's view of the sounds
            entry = self.slac_candidates.setdefault(record.source, {})
            entry["average_attenuation_db"] = mme["profile"]["average_db"]
            entry["groups"] = mme["profile"]["groups"]
        elif mmtype == 0x607C:  # CM_SLAC_MATCH.REQ: the EV's choice (ISO 15118-3 clause 9.2.4)
            self.slac_chosen = mme["evse_mac"]

    def _message(self, record: V2GMessage) -> None:
        self.messages += 1
        self.protocols.add(record.namespace)
        info = _KINDS.get(record.message) or message_kind(record.message)
        base, kind, stream = info.base, info.kind, record.tcp_stream
        element = message_element(record)
        phase = info.phase
        if phase is None and base == "PowerDelivery":
            if kind == "Req":
                phase = "stop" if element.get("ChargeProgress") in ("Stop", "Standby") else "loop"
            else:
                phase = self._request_phase.get(stream, "loop")
        if phase is not None:
            self._request_phase[stream] = phase
            self._phase(phase, record)
        if kind == "Req":
            unanswered = self._pending.get(stream)
            if unanswered is not None:
                self._unanswered(unanswered, record.frame, record.t, f"before {record.message}")
            self._pending[stream] = (base, record.t, record.frame, record.namespace)
            self._request(info, element, record)
        elif kind == "Res":
            self._response(info, element, record)

    def _unanswered(self, request: tuple[str, float, int, str], frame: int, t: float, until: str) -> None:
        """A request the SECC never answered, as the record at *frame* shows (*until*): a protocol error."""
        base, t0, frame0, _ = request
        if len(self.slow_responses) < MAX_LISTED:
            self.slow_responses.append({"message": base, "request_frame": frame0, "response_frame": None,
                                        "seconds": None, "timeout": None, "verdict": "no response"})
        self._error(frame, t, f"{base}Req (frame {frame0}) got no response {until} {t - t0:.3f} s later")

    def _connection_end(self, record: ConnectionEnd) -> None:
        """A request still open when its connection ends gets no response (a protocol error); one open when the
        capture ends is an error only once its message timeout has passed, else the capture may just be cut."""
        request = self._pending.get(record.tcp_stream)
        if request is None:
            return
        if record.sender is not None:
            until = f"before the {record.sender} closed the connection ({record.how})"
        elif record.how == CAPTURE_ENDED:
            base, t0, _, namespace = request
            timeout = timeout_of(namespace, base)
            if record.t - t0 <= timeout:
                return  # listed in the summary's open_requests
            until = f"within its {timeout} s timeout: the {record.how}"
        else:
            until = f"before the connection ended ({record.how})"
        del self._pending[record.tcp_stream]
        self._unanswered(request, record.frame, record.t, until)

    def _request(self, info: MessageKind, element: dict[str, Any], record: V2GMessage) -> None:
        base = info.base
        if base == "ServiceSelection":
            for service in walk(element.get("SelectedEnergyTransferService", {}), "ServiceID"):
                self.selected_services.append(service_name(service))
        elif base == "ChargeParameterDiscovery":  # -2 and DIN name the mode in the request
            for key in ("RequestedEnergyTransferMode", "EVRequestedEnergyTransferType"):
                if key in element:
                    self.selected_services.append(str(element[key]))
        if info.loop:  # the control mode the loop ran (ScheduleExchange's Dynamic/Scheduled_SE modes are not)
            for key in element:
                if key.endswith("ControlMode"):
                    self.control_modes[key] = self.control_modes.get(key, 0) + 1
            layout = info.layout
            self._sample(first_of(element, SERIES_FIELDS) if layout is None else layout.fields(element), record.t)

    def _response(self, info: MessageKind, element: dict[str, Any], record: V2GMessage) -> None:
        base = info.base
        pending = self._pending.pop(record.tcp_stream, None)
        if pending is not None and pending[0] == base:
            _, t0, frame0, namespace = pending
            elapsed = record.t - t0
            stats = self.response_times.get(base)
            if stats is None:
                stats = self.response_times[base] = ResponseStats(timeout_of(namespace, base))
            stats.count += 1
            stats.total += elapsed
            stats.minimum = min(stats.minimum, elapsed)
            stats.maximum = max(stats.maximum, elapsed)
            if elapsed >= stats.timeout * NEAR_TIMEOUT:
                over = elapsed > stats.timeout
                stats.over += over
                stats.near += not over
                if len(self.slow_responses) < MAX_LISTED:
                    self.slow_responses.append({"message": base, "request_frame": frame0, "response_frame":
                                                record.frame, "seconds": round(elapsed, 6), "timeout": stats.timeout,
                                                "verdict": "over" if over else "near"})
                if over:
                    self._error(record.frame, record.t, f"{base}Res after {elapsed:.3f} s, over its "
                                                        f"{stats.timeout} s timeout")
        code = element.get("ResponseCode")
        if isinstance(code, str) and not code.startswith("OK"):
            self.response_code_counts[code] = self.response_code_counts.get(code, 0) + 1
            if len(self.response_codes) < MAX_LISTED:
                self.response_codes.append({"frame": record.frame, "message": record.message, "code": code})
            if code.startswith("FAILED"):
                self._error(record.frame, record.t, f"{record.message}: ResponseCode {code}")
        if base == "ServiceDiscovery":
            for service in walk(element.get("EnergyTransferServiceList", {}), "ServiceID"):  # -20
                self.offered_services.add(service_name(service))
            for mode in walk(element, "EnergyTransferMode"):
                self.offered_services.update(mode if isinstance(mode, list) else [mode])
            for mode in walk(element, "EnergyTransferType"):
                self.offered_services.add(str(mode))
        layout = info.layout
        fields = first_of(element, RESPONSE_FIELDS) if layout is None else layout.fields(element)
        note = fields.get("EVSENotification")
        if isinstance(note, str) and self._last_notification.get(record.tcp_stream) != note:
            self._last_notification[record.tcp_stream] = note
            if note != "None" and len(self.notifications) < MAX_LISTED:
                self.notifications.append({"frame": record.frame, "message": record.message, "notification": note,
                                           "sender": SECC})
        if info.loop:
            self._sample(fields, record.t)

    def _sample(self, fields: dict[str, Any], t: float) -> None:
        all_series = self.series
        for name, value in fields.items():
            if name not in SERIES_FIELDS:
                continue
            # A -20 RationalNumber as the decoder gives it, converted as physical_value does; any other form by it.
            if type(value) is dict and type(exponent := value.get("Exponent")) is int \
                    and type(mantissa := value.get("Value")) is int:
                number: float | None = scaled(mantissa, exponent)
            else:
                number = physical_value(value)
            if number is not None:
                series = all_series.get(name)
                if series is None:
                    series = all_series[name] = Series()
                series.add(t, number)

    def power_series(self) -> list[tuple[float, float]]:
        """EVSE power (W) from the present voltage and current samples taken at the same instants."""
        voltage = dict(self.series["EVSEPresentVoltage"].points) if "EVSEPresentVoltage" in self.series else {}
        current = self.series.get("EVSEPresentCurrent")
        if current is None:
            return []
        return [(t, voltage[t] * i) for t, i in current.points if t in voltage]

    def bpt_verdict(self) -> str:
        """Was a bidirectional service offered, selected and run with a BPT control mode?"""
        offered = {s for s in self.offered_services if "BPT" in s}
        selected = [s for s in self.selected_services if "BPT" in s]
        bpt_modes = sorted(m for m in self.control_modes if m.startswith("BPT_"))
        if not offered and not selected and not bpt_modes:
            return "no BPT service offered"
        if not selected:
            if bpt_modes:
                return f"loop ran {'/'.join(bpt_modes)}, but no BPT service selection is in the capture"
            return f"{'/'.join(sorted(offered))} offered, not selected"
        if self.offered_services and not set(selected) <= offered:
            return f"{selected[0]} selected but not offered: not negotiated properly"
        if bpt_modes:
            return f"{selected[0]} offered, selected and run"
        if self.control_modes:
            return f"{selected[0]} selected but the loop ran {'/'.join(self.control_modes)}: not negotiated properly"
        # Every -20 loop request names its control mode (an XSD choice), and BPT is -20 only: none, no loop.
        return f"{selected[0]} offered and selected, but the charge loop never ran"

    def _timeline(self, start: float) -> list[dict[str, Any]]:
        """Each phase lasts until the next one starts (waiting included); the last until its last record."""
        ends = [p.start for p in self.phases[1:]] + [self.phases[-1].end] if self.phases else []
        return [{"phase": p.name, "start": round(p.start - start, 6), "duration": round(end - p.start, 6),
                 "frame": p.first_frame, "messages": p.messages} for p, end in zip(self.phases, ends, strict=True)]

    def summary(self) -> dict[str, Any]:
        """Everything above as one JSON-able record."""
        start = self.start or 0.0
        return {
            "event": "Summary",
            "start": start,
            "duration": round(self.end - start, 6),
            "frames": self.frames,
            "messages": self.messages,
            "protocols": sorted(self.protocols),
            "tls": self.tls,
            "phases": self._timeline(start),
            "response_times": {k: v.to_json() for k, v in self.response_times.items()},
            "slow_responses": self.slow_responses,
            # Requests still open when the capture ended, within their timeout (it may have been cut): not errors.
            "open_requests": [{"message": base, "request_frame": frame, "tcp_stream": stream}
                              for stream, (base, _, frame, _) in self._pending.items()],
            "energy_transfer": {"offered": sorted(self.offered_services), "selected": self.selected_services,
                                "control_modes": self.control_modes, "verdict": self.bpt_verdict()},
            "response_codes": self.response_codes,
            "response_code_counts": self.response_code_counts,
            "notifications": self.notifications,
            "slac": {"candidates": self.slac_candidates, "chosen_evse": self.slac_chosen},
            "series": {k: {"samples": v.seen, "min": min(p[1] for p in v.points), "max": max(p[1] for p in v.points)}
                       for k, v in self.series.items() if v.points},
            "errors": self.errors,
            "error_count": self.error_count,
        }


# The handler of each record type; Frame is counted in TraceAnalysis.add itself.
_HANDLERS: dict[type, Callable[[TraceAnalysis, Any], None]] = {
    V2GMessage: TraceAnalysis._message, SlacMessage: TraceAnalysis._slac, SdpMessage: TraceAnalysis._sdp,
    TLSSession: TraceAnalysis._tls, ProtocolError: TraceAnalysis._protocol_error, Frame: TraceAnalysis._frame,
    ConnectionEnd: TraceAnalysis._connection_end,
}


def _handler(record_type: type) -> Callable[[TraceAnalysis, Any], None]:
    """The handler of *record_type*: its own, else its nearest base's (a subclass is analysed as its base)."""
    handler = _HANDLERS.get(record_type)
    if handler is None:
        handler = next((_HANDLERS[base] for base in record_type.__mro__ if base in _HANDLERS),
                       TraceAnalysis._ignore)
        _HANDLERS[record_type] = handler
    return handler
