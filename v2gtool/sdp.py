"""SECC Discovery Protocol (ISO 15118-2 clause 7.10.1, ISO 15118-20 clause 7.10.1), sans-IO.

The EVCC multicasts an SDP request (V2GTP payload type 0x9000, two bytes: Security, Transport
Protocol) to ff02::1 UDP 15118 on its PLC interface and waits 250 ms for an answer, up to 50
requests. The SECC answers by unicast with an SDP response (0x9001, 20 bytes: its IPv6 address,
TCP port, Security, Transport Protocol).

This module does no I/O: :class:`SdpClient` and :class:`SdpServer` take datagrams and clock
readings and return datagrams, results and events; ``v2gtool.net.sdp_transport`` owns sockets.
"""

from __future__ import annotations

import enum
import ipaddress
from dataclasses import dataclass
from typing import Any, TypeVar

from v2gtool.errors import V2GToolError
from v2gtool.exit_codes import ExitCode
from v2gtool.session.events import Event
from v2gtool.v2gtp import PayloadType, V2GTPError, decode_frame, encode_frame

SDP_MULTICAST_GROUP = "ff02::1"
"""The IPv6 link-local all-nodes group the EVCC sends its requests to (no IPv4, no broadcast)."""
SDP_SERVER_PORT = 15118
SDP_REQUEST_TIMEOUT = 0.25
"""Seconds the EVCC waits for a response to one request (josev Timeouts.SDP_REQ)."""
SDP_MAX_REQUESTS = 50
"""Requests the EVCC sends before SDP fails (josev SDP_MAX_REQUEST_COUNTER)."""
TCP_PORT_RANGE = range(49152, 65536)
"""The dynamic port range the SECC's TCP server port lies in (IETF RFC 6335 Dynamic Ports)."""
DEFAULT_TCP_PORT = 64109
"""The TCP port the SECC listens on and announces in its SDP response when none is configured
(``[sdp] tcp_port``): the one default of ``serve``, ``session run``, ``sdp-discovery``, ``deploy-files``."""

REQUEST_LENGTH = 2
RESPONSE_LENGTH = 20


class SdpError(V2GToolError):
    """An SDP datagram is malformed, or discovery failed."""


class SdpTimeout(SdpError):
    """No SDP response to any of the requests the EVCC may send (each waited for 250 ms)."""

    exit_code = ExitCode.TIMEOUT


class SdpInterfaceError(SdpError):
    """The interface SDP runs on is missing, has no usable IPv6 link-local address (SDP is IPv6
    link-local only), or refuses the SDP socket: the machine is not ready, not the peer."""

    exit_code = ExitCode.ENVIRONMENT


class Security(enum.IntEnum):
    """SDP Security byte: whether the V2G session runs over TLS."""

    TLS = 0x00
    NO_TLS = 0x10


class TransportProtocol(enum.IntEnum):
    """SDP Transport Protocol byte. Only TCP carries V2G messages; UDP is reserved."""

    TCP = 0x00
    UDP = 0x10


_E = TypeVar("_E", Security, TransportProtocol)


def dynamic_port(port: int) -> int:
    """*port* when the SECC may listen on it and announce it in its SDP response (standards.md §2:
    :data:`TCP_PORT_RANGE`); else ValueError saying what it must be."""
    if port not in TCP_PORT_RANGE:
        raise ValueError(f"must be a Dynamic Port ({TCP_PORT_RANGE.start}-{TCP_PORT_RANGE.stop - 1})")
    return port


def _enum_byte(kind: type[_E], value: int, where: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        raise SdpError(f"SDP {where}: {kind.__name__} 0x{value:02X} is not defined") from None


@dataclass(frozen=True, slots=True)
class SdpRequest:
    """SDP request payload (2 bytes): what the EVCC asks for."""

    security: Security
    transport: TransportProtocol = TransportProtocol.TCP

    def to_payload(self) -> bytes:
        return bytes((self.security, self.transport))

    @classmethod
    def from_payload(cls, payload: bytes) -> SdpRequest:
        if len(payload) != REQUEST_LENGTH:
            raise SdpError(f"SDP request payload is {len(payload)} bytes, expected {REQUEST_LENGTH}")
        return cls(
            _enum_byte(Security, payload[0], "request byte 0"),
            _enum_byte(TransportProtocol, payload[1], "request byte 1"),
        )


@dataclass(frozen=True, slots=True)
class SdpResponse:
    """SDP response payload (20 bytes): where and how the SECC listens."""

    address: ipaddress.IPv6Address
    port: int
    security: Security
    transport: TransportProtocol = TransportProtocol.TCP

    def __post_init__(self) -> None:
        try:
            dynamic_port(self.port)
        except ValueError as exc:
            raise SdpError(f"SDP response: TCP port {self.port} {exc}") from None

    def to_payload(self) -> bytes:
        return self.address.packed + self.port.to_bytes(2, "big") + bytes((self.security, self.transport))

    @classmethod
    def from_payload(cls, payload: bytes) -> SdpResponse:
        if len(payload) != RESPONSE_LENGTH:
            raise SdpError(f"SDP response payload is {len(payload)} bytes, expected {RESPONSE_LENGTH}")
        return cls(
            ipaddress.IPv6Address(payload[:16]),
            int.from_bytes(payload[16:18], "big"),
            _enum_byte(Security, payload[18], "response byte 18"),
            _enum_byte(TransportProtocol, payload[19], "response byte 19"),
        )


def encode_request(request: SdpRequest) -> bytes:
    """The V2GTP datagram (payload type 0x9000) carrying *request*."""
    return encode_frame(PayloadType.SDP_REQUEST, request.to_payload())


def encode_response(response: SdpResponse) -> bytes:
    """The V2GTP datagram (payload type 0x9001) carrying *response*."""
    return encode_frame(PayloadType.SDP_RESPONSE, response.to_payload())


def _payload_of(datagram: bytes, expected: PayloadType) -> bytes:
    try:
        frame = decode_frame(datagram)
    except V2GTPError as exc:
        raise SdpError(str(exc)) from None
    if frame.payload_type != expected:
        raise SdpError(f"V2GTP payload type 0x{frame.payload_type:04X}, expected 0x{expected:04X}")
    return frame.payload


def decode_request(datagram: bytes) -> SdpRequest:
    """Parse an untrusted datagram as an SDP request; raise :class:`SdpError` when it is not one."""
    return SdpRequest.from_payload(_payload_of(datagram, PayloadType.SDP_REQUEST))


def decode_response(datagram: bytes) -> SdpResponse:
    """Parse an untrusted datagram as an SDP response; raise :class:`SdpError` when it is not one."""
    return SdpResponse.from_payload(_payload_of(datagram, PayloadType.SDP_RESPONSE))


# --- events -----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SdpRequestSent(Event):
    """The EVCC sent request number ``attempt`` (1-based)."""

    attempt: int
    request: SdpRequest


@dataclass(frozen=True, kw_only=True)
class SdpResponseReceived(Event):
    """The EVCC accepted a response ``elapsed`` seconds after sending request ``attempt``."""

    attempt: int
    elapsed: float
    response: SdpResponse
    source: str


@dataclass(frozen=True, kw_only=True)
class SdpRequestAnswered(Event):
    """The SECC answered ``request`` from ``source``; ``response.security`` may differ from it."""

    source: str
    request: SdpRequest
    response: SdpResponse


@dataclass(frozen=True, kw_only=True)
class SdpMalformedDatagram(Event):
    """A datagram that is not a valid SDP message was dropped; ``count`` is the running total."""

    source: str
    reason: str
    count: int
    data: bytes


@dataclass(frozen=True, kw_only=True)
class SdpFailed(Event):
    """The EVCC sent ``attempts`` requests without a valid response."""

    attempts: int


# --- EVCC -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SdpResult:
    """What discovery found: the response, who sent it, and the timing of the try that succeeded."""

    response: SdpResponse
    source: str
    requested: SdpRequest
    attempts: int
    elapsed: float
    """Seconds from the first request to the response."""
    round_trip: float
    """Seconds from the request that was answered to the response."""
    malformed: int
    interface: str = ""

    @property
    def security_differs(self) -> bool:
        """True when the SECC offered another security mode than the one asked for."""
        return self.response.security != self.requested.security

    def to_json(self) -> dict[str, Any]:
        """The ``sdp-discovery --json`` record; :func:`result_from_json` reads it back."""
        return {
            "event": "SdpResult",
            "address": str(self.response.address),
            "interface": self.interface,
            "port": self.response.port,
            "security": self.response.security.name,
            "transport": self.response.transport.name,
            "requested_security": self.requested.security.name,
            "source": self.source,
            "attempts": self.attempts,
            "elapsed": self.elapsed,
            "round_trip": self.round_trip,
            "malformed": self.malformed,
        }


def result_from_json(record: Any) -> SdpResult:
    """Rebuild an :class:`SdpResult` from its ``--json`` record; raise :class:`SdpError` if it is not one."""
    if not isinstance(record, dict) or record.get("event") != "SdpResult":
        raise SdpError('input is not an sdp-discovery --json record (no "event": "SdpResult")')
    try:
        response = SdpResponse(
            ipaddress.IPv6Address(record["address"]),
            int(record["port"]),
            Security[record["security"]],
            TransportProtocol[record["transport"]],
        )
        return SdpResult(
            response=response,
            source=str(record["source"]),
            requested=SdpRequest(Security[record["requested_security"]], TransportProtocol.TCP),
            attempts=int(record["attempts"]),
            elapsed=float(record["elapsed"]),
            round_trip=float(record["round_trip"]),
            malformed=int(record["malformed"]),
            interface=str(record["interface"]),
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise SdpError(f"sdp-discovery record: bad or missing field {exc}") from None


def _check_usable(response: SdpResponse) -> None:
    """Refuse a response the EVCC cannot connect to: V2G communication is IPv6 link-local only and
    the EVCC asked for TCP (ISO 15118-2 clause 7.10.1, ISO 15118-20 clause 7.10.1.3; see
    ../shared/spec/standards.md section 2). A multicast, unspecified, global or IPv4-mapped address
    would send the TCP connection, and the EV's certificate checks, somewhere else."""
    if not response.address.is_link_local or response.address.is_multicast:
        raise SdpError(f"SDP response: SECC address {response.address} is not an IPv6 link-local unicast address")
    if response.transport != TransportProtocol.TCP:
        raise SdpError(f"SDP response: transport {response.transport.name}, the EVCC connects over TCP only")


class SdpClient:
    """The EVCC side: one request every ``request_timeout`` seconds, at most ``max_requests``.

    Drive it with :meth:`start`, :meth:`datagram_received` and :meth:`timer_expired` (call the
    latter once ``now >= deadline``); collect events with :meth:`take_events`.
    """

    def __init__(
        self,
        security: Security,
        transport: TransportProtocol = TransportProtocol.TCP,
        *,
        request_timeout: float = SDP_REQUEST_TIMEOUT,
        max_requests: int = SDP_MAX_REQUESTS,
    ) -> None:
        if max_requests < 1 or request_timeout <= 0:
            raise SdpError("SDP client needs max_requests >= 1 and request_timeout > 0")
        self.request = SdpRequest(security, transport)
        self._datagram = encode_request(self.request)
        self._timeout = request_timeout
        self._max = max_requests
        self._attempts = 0
        self._first_sent: float | None = None
        self._last_sent = 0.0
        self._deadline: float | None = None
        self._malformed = 0
        self._events: list[Event] = []
        self.result: SdpResult | None = None
        self.failed = False

    @property
    def deadline(self) -> float | None:
        """When :meth:`timer_expired` must be called next; ``None`` once finished."""
        return self._deadline

    @property
    def attempts(self) -> int:
        return self._attempts

    @property
    def malformed(self) -> int:
        return self._malformed

    def take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def start(self, now: float) -> bytes:
        """Begin discovery; return the first request datagram."""
        if self._attempts:
            raise SdpError("SDP client already started")
        self._first_sent = now
        return self._send(now)

    def _send(self, now: float) -> bytes:
        self._attempts += 1
        self._last_sent = now
        self._deadline = now + self._timeout
        self._events.append(SdpRequestSent(t=now, attempt=self._attempts, request=self.request))
        return self._datagram

    def timer_expired(self, now: float) -> bytes | None:
        """The wait for a response ran out: return the next request, or ``None`` when SDP failed."""
        if self._deadline is None or now < self._deadline:
            return None
        if self._attempts >= self._max:
            self._deadline = None
            self.failed = True
            self._events.append(SdpFailed(t=now, attempts=self._attempts))
            return None
        return self._send(now)

    def datagram_received(self, data: bytes, source: str, now: float) -> SdpResult | None:
        """Feed a datagram from *source*; return the result when it is a valid response."""
        if self._deadline is None:
            return None  # finished or not started: late or stray datagrams are ignored
        try:
            response = decode_response(data)
            _check_usable(response)
        except SdpError as exc:
            self._malformed += 1
            self._events.append(
                SdpMalformedDatagram(t=now, source=source, reason=str(exc), count=self._malformed, data=data)
            )
            return None
        assert self._first_sent is not None
        self._deadline = None
        self.result = SdpResult(
            response=response,
            source=source,
            requested=self.request,
            attempts=self._attempts,
            elapsed=now - self._first_sent,
            round_trip=now - self._last_sent,
            malformed=self._malformed,
        )
        self._events.append(
            SdpResponseReceived(
                t=now, attempt=self._attempts, elapsed=now - self._last_sent, response=response, source=source
            )
        )
        return self.result


# --- SECC -------------------------------------------------------------------------------------


class SdpServer:
    """The SECC side: answer every valid request with where the TCP server listens.

    ``supported`` is the set of security modes the SECC accepts. When an EVCC asks for one the
    SECC does not support, it still answers, offering the mode it does support (TLS first): real
    cars fall back to it (standards digest section 2, uhi22/pyPLC#42). The transport is always TCP.
    """

    def __init__(self, address: ipaddress.IPv6Address, port: int, supported: frozenset[Security]) -> None:
        if not supported:
            raise SdpError("SDP server needs at least one supported security mode")
        self.address = address
        self.port = port
        self.supported = supported
        self._responses = {
            security: encode_response(SdpResponse(address, port, security, TransportProtocol.TCP))
            for security in Security
        }
        self._fallback = Security.TLS if Security.TLS in supported else Security.NO_TLS
        self._malformed = 0
        self._events: list[Event] = []

    @property
    def malformed(self) -> int:
        return self._malformed

    def take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def offer_for(self, request: SdpRequest) -> Security:
        """The security mode answered to *request*."""
        return request.security if request.security in self.supported else self._fallback

    def datagram_received(self, data: bytes, source: str, now: float) -> bytes | None:
        """Feed a datagram from *source*; return the unicast response, or ``None`` if it was dropped."""
        try:
            request = decode_request(data)
        except SdpError as exc:
            self._malformed += 1
            self._events.append(
                SdpMalformedDatagram(t=now, source=source, reason=str(exc), count=self._malformed, data=data)
            )
            return None
        security = self.offer_for(request)
        self._events.append(
            SdpRequestAnswered(
                t=now,
                source=source,
                request=request,
                response=SdpResponse(self.address, self.port, security, TransportProtocol.TCP),
            )
        )
        return self._responses[security]
