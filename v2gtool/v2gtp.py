"""V2G Transfer Protocol framing (ISO 15118-2 clause 7.8.3, ISO 15118-20 clause 7.8.3 / Table 12).

Every V2G message travels behind an 8-byte header: protocol version 0x01, its inverse 0xFE, a
big-endian payload type and a big-endian payload length. ISO 15118-20 gives each of its message
namespaces a payload type of its own, so the payload type tells a decoder which EXI grammar to use.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass

from v2gtool.errors import V2GToolError

PROTOCOL_VERSION = 0x01
INVERSE_PROTOCOL_VERSION = 0xFE
HEADER_LENGTH = 8
# The length field is 32 bits wide; no normative maximum exists, so we choose an explicit cap that
# is far above the largest V2G message (a CertificateInstallationRes with full chains, ~7.5 kB).
DEFAULT_MAX_PAYLOAD_LENGTH = 64 * 1024

_HEADER = struct.Struct(">BBHI")


class V2GTPError(V2GToolError):
    """A V2GTP header is malformed, names an unknown payload type, or announces too long a payload."""


class PayloadType(enum.IntEnum):
    """V2GTP payload types of ISO 15118-2 Table 10 and ISO 15118-20 Table 12."""

    EXI = 0x8001
    """-2 / DIN: every EXI message. -20: the supportedAppProtocol handshake only (SAP)."""
    ISO20_MAINSTREAM = 0x8002
    ISO20_AC_MAINSTREAM = 0x8003
    ISO20_DC_MAINSTREAM = 0x8004
    ISO20_ACDP_MAINSTREAM = 0x8005
    ISO20_WPT_MAINSTREAM = 0x8006
    ISO20_SCHEDULE_RENEGOTIATION = 0x8101
    ISO20_METERING_CONFIRMATION = 0x8102
    ISO20_ACDP_SYSTEM_STATUS = 0x8103
    ISO20_PARKING_STATUS = 0x8104
    SDP_REQUEST = 0x9000
    SDP_RESPONSE = 0x9001
    SDP_REQUEST_WIRELESS = 0x9002
    SDP_RESPONSE_WIRELESS = 0x9003


MANUFACTURER_SPECIFIC = range(0xA000, 0x10000)
_STANDARD_PAYLOAD_TYPES = frozenset(PayloadType)  # (an attribute of an Enum class costs ~80 ns to look up)

# Which EXI schema set (short name, see v2gtool.exi.namespaces) a -20 payload type carries.
# 0x8001 is ambiguous across protocols (SAP in -20, everything in -2/DIN): the caller decides.
# Keyed by PayloadType members, which (IntEnum) a plain int payload type finds too.
ISO20_PAYLOAD_NAMESPACES: dict[int, str] = {
    PayloadType.ISO20_MAINSTREAM: "iso20",
    PayloadType.ISO20_AC_MAINSTREAM: "iso20-ac",
    PayloadType.ISO20_DC_MAINSTREAM: "iso20-dc",
    PayloadType.ISO20_ACDP_MAINSTREAM: "iso20-acdp",
    PayloadType.ISO20_WPT_MAINSTREAM: "iso20-wpt",
    PayloadType.ISO20_SCHEDULE_RENEGOTIATION: "iso20",
    PayloadType.ISO20_METERING_CONFIRMATION: "iso20",
    PayloadType.ISO20_ACDP_SYSTEM_STATUS: "iso20-acdp",
    PayloadType.ISO20_PARKING_STATUS: "iso20",
}


@dataclass(frozen=True, slots=True)
class V2GTPFrame:
    """One V2GTP message: its payload type (known or manufacturer specific) and payload."""

    payload_type: int
    payload: bytes


def _check_payload_type(payload_type: int) -> None:
    if payload_type not in _STANDARD_PAYLOAD_TYPES and payload_type not in MANUFACTURER_SPECIFIC:
        raise V2GTPError(f"V2GTP bytes 2-3: unknown payload type 0x{payload_type:04X}")


def encode_frame(payload_type: int, payload: bytes, max_length: int = DEFAULT_MAX_PAYLOAD_LENGTH) -> bytes:
    """Return header + *payload*; raise :class:`V2GTPError` for an unknown type or an oversize payload."""
    _check_payload_type(payload_type)
    if len(payload) > max_length:
        raise V2GTPError(f"V2GTP payload of {len(payload)} bytes exceeds the maximum of {max_length}")
    return _HEADER.pack(PROTOCOL_VERSION, INVERSE_PROTOCOL_VERSION, payload_type, len(payload)) + payload


def parse_header(data: bytes, max_length: int = DEFAULT_MAX_PAYLOAD_LENGTH, offset: int = 0) -> tuple[int, int]:
    """Validate the 8 bytes of *data* at *offset*; return ``(payload_type, payload_length)``."""
    if len(data) - offset < HEADER_LENGTH:
        raise V2GTPError(f"V2GTP header truncated: {len(data) - offset} of {HEADER_LENGTH} bytes")
    version, inverse, payload_type, length = _HEADER.unpack_from(data, offset)
    if version != PROTOCOL_VERSION:
        raise V2GTPError(f"V2GTP byte 0: protocol version 0x{version:02X}, expected 0x01")
    if inverse != INVERSE_PROTOCOL_VERSION:
        raise V2GTPError(f"V2GTP byte 1: inverse protocol version 0x{inverse:02X}, expected 0xFE")
    _check_payload_type(payload_type)
    if length > max_length:
        raise V2GTPError(f"V2GTP bytes 4-7: payload length {length} exceeds the maximum of {max_length}")
    return payload_type, length


def decode_frame(data: bytes, max_length: int = DEFAULT_MAX_PAYLOAD_LENGTH) -> V2GTPFrame:
    """Decode exactly one V2GTP message; trailing or missing payload bytes are errors."""
    payload_type, length = parse_header(data, max_length)
    actual = len(data) - HEADER_LENGTH
    if actual != length:
        raise V2GTPError(f"V2GTP header announces {length} payload bytes but {actual} follow")
    return V2GTPFrame(payload_type, bytes(data[HEADER_LENGTH:]))


def looks_like_frame(data: bytes) -> bool:
    """True when *data* starts with a V2GTP version/inverse pair (EXI streams start with 0x80)."""
    return len(data) >= HEADER_LENGTH and data[0] == PROTOCOL_VERSION and data[1] == INVERSE_PROTOCOL_VERSION


class FrameReader:
    """Sans-IO reassembly of V2GTP messages from a byte stream (TCP): feed bytes, take frames."""

    def __init__(self, max_length: int = DEFAULT_MAX_PAYLOAD_LENGTH) -> None:
        self._buffer = bytearray()
        self._max_length = max_length

    def feed(self, data: bytes) -> list[V2GTPFrame]:
        """Append *data*; return every frame now complete. A bad header raises :class:`V2GTPError`."""
        self._buffer += data
        frames: list[V2GTPFrame] = []
        while len(self._buffer) >= HEADER_LENGTH:
            payload_type, length = parse_header(bytes(self._buffer[:HEADER_LENGTH]), self._max_length)
            end = HEADER_LENGTH + length
            if len(self._buffer) < end:
                break
            frames.append(V2GTPFrame(payload_type, bytes(self._buffer[HEADER_LENGTH:end])))
            del self._buffer[:end]
        return frames

    @property
    def pending(self) -> int:
        """Bytes received that do not yet form a whole frame."""
        return len(self._buffer)
