"""The records a dissected capture yields: typed events (DESIGN.md rule 4) on the capture's clock.

``t`` is the packet's capture time in seconds since the epoch; ``frame`` is its 1-based number in
the file, the number tshark and Wireshark show. :meth:`Event.to_json` gives the ``--json`` line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Self

from v2gtool.session.events import Event

EVCC = "EVCC"
SECC = "SECC"

_new = object.__new__
_set_attribute = object.__setattr__


@dataclass(frozen=True, kw_only=True)
class TraceRecord(Event):
    """Base of every record: the frame it comes from."""

    frame: int

    @classmethod
    def of_fields(cls, fields: dict[str, Any]) -> Self:
        """The record ``cls(**fields)``, built in one step: *fields* holds every field, in declaration order.

        A frozen dataclass's ``__init__`` sets each field through ``object.__setattr__`` after binding
        keyword arguments, about 1.3 µs for a Frame; the dissector builds two records per message, so its
        in-order path hands over the field dict instead. Equality, hash, repr, immutability and the JSON
        form are those of the dataclass, which reads the fields from the instance dict.
        """
        record = _new(cls)
        _set_attribute(record, "__dict__", fields)
        return record


@dataclass(frozen=True, kw_only=True)
class Frame(TraceRecord):
    """One captured frame: its layers, addresses and a one-line description (like tshark's Info)."""

    length: int
    protocols: str
    source: str | None
    destination: str | None
    info: str
    tcp_stream: int | None = None
    vlan: int | None = None  # the innermost 802.1Q VLAN ID (e.g. one per EVSE in a multi-EVSE test bench)

    def to_json(self) -> dict[str, Any]:
        """The JSON line of a frame (flat fields: built directly, it is written once per packet)."""
        return {"event": "Frame", "t": self.t, "frame": self.frame, "length": self.length, "protocols": self.protocols,
                "source": self.source, "destination": self.destination, "info": self.info,
                "tcp_stream": self.tcp_stream, "vlan": self.vlan}


@dataclass(frozen=True, kw_only=True)
class SlacMessage(TraceRecord):
    """A HomePlug Green PHY MME (ISO 15118-3 SLAC and the modem messages around it)."""

    source: str | None
    destination: str | None
    mme: dict[str, Any]
    vlan: int | None = None


@dataclass(frozen=True, kw_only=True)
class SdpMessage(TraceRecord):
    """An SECC Discovery Protocol request or response (ISO 15118-2 clause 7.10.1, -20 clause 7.10.1)."""

    message: str
    source: str
    destination: str
    fields: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class V2GMessage(TraceRecord):
    """A decoded V2G message in the project's JSON message form.

    *message* is the message name (``DC_ChargeLoopReq``, or for -2/DIN the element in ``V2G_Message/Body``);
    *sender* is EVCC or SECC; *namespace_source* says how the schema set was chosen: ``negotiated``
    (the supportedAppProtocol exchange), ``payload_type`` (-20 V2GTP type) or ``guessed`` (no
    handshake in the capture).
    """

    tcp_stream: int
    sender: str
    namespace: str
    payload_type: int
    message: str
    document: dict[str, Any]
    namespace_source: str
    tls: bool

    def to_json(self) -> dict[str, Any]:
        """The JSON line; the document is already in the JSON message form, so it is not walked again."""
        return {"event": "V2GMessage", "t": self.t, "frame": self.frame, "tcp_stream": self.tcp_stream,
                "sender": self.sender, "namespace": self.namespace, "payload_type": self.payload_type,
                "message": self.message, "document": self.document, "namespace_source": self.namespace_source,
                "tls": self.tls}


@dataclass(frozen=True, kw_only=True)
class TLSSession(TraceRecord):
    """The TLS handshake of a TCP stream: version and cipher suite from the ServerHello, with its frame
    and time. *decrypted*: the key log's secrets opened its records. It is reported once that is
    known: just before the first message decrypted, or, False, when decryption failed or the stream
    ended with none (secrets missing, or records still waiting for them)."""

    tcp_stream: int
    version: str
    cipher_suite: str
    client_random: str
    decrypted: bool


CAPTURE_ENDED = "capture ended"


@dataclass(frozen=True, kw_only=True)
class ConnectionEnd(TraceRecord):
    """The end of a V2G TCP connection: the first FIN or RST (*how*) and its *sender*, or, *sender* None,
    another end the capture shows (*how*: :data:`CAPTURE_ENDED`, or the ports reused by a new connection)."""

    tcp_stream: int
    sender: str | None
    how: str


@dataclass(frozen=True, kw_only=True)
class KeyDisclosed(TraceRecord):
    """An NSS key-log line found in a UDP datagram of the capture (tester key disclosure)."""

    label: str
    client_random: str


@dataclass(frozen=True, kw_only=True)
class ProtocolError(TraceRecord):
    """Something the capture shows to be wrong or undecodable, named by layer."""

    layer: str
    message: str
    tcp_stream: int | None = None


def message_element(record: V2GMessage) -> dict[str, Any]:
    """The message's own element: the root in -20 and the handshake, ``V2G_Message/Body/<name>`` in -2/DIN."""
    root = next(iter(record.document.values()))
    if "Body" in root and isinstance(root["Body"], dict) and record.message in root["Body"]:
        element: dict[str, Any] = root["Body"][record.message]
        return element
    result: dict[str, Any] = root
    return result


def scaled(number: int, exponent: int) -> float:
    """number x 10^exponent as the float nearest the exact decimal: 9950 x 10^-3 is 9.95.

    ``number * 10.0 ** exponent`` rounds twice (10^-3 has no exact float) and gives 9.950000000000001;
    Python's int / int and float(int) round once, correctly.
    """
    return number / 10 ** -exponent if exponent < 0 else float(number * 10 ** exponent)


def physical_value(value: Any) -> float | None:
    """The number in a -20 RationalNumber (Value x 10^Exponent) or -2/DIN PhysicalValue (x 10^Multiplier)."""
    if isinstance(value, dict):  # the usual case first: it is called for every sample of a loop message
        number, exponent = value.get("Value"), value.get("Exponent", value.get("Multiplier", 0))
        return scaled(number, exponent) if isinstance(number, int) and isinstance(exponent, int) else None
    if isinstance(value, bool):
        return None
    return float(value) if isinstance(value, int | float) else None
