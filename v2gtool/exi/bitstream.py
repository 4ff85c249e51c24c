"""Bit-packed EXI streams (EXI 1.0 section 5 with alignment "bit-packed").

The reader holds the whole stream as one Python int and takes n-bit fields with a shift and a
mask from the current bit position, so no function is called per bit. The writer accumulates
into one int and pads with zero bits to the next byte at the end (EXI 1.0 section 5, padding).
"""

from __future__ import annotations

from v2gtool.exi.errors import EXIDecodeError

MAX_LENGTH = 1 << 20  # bound on announced string/binary/list lengths from untrusted input


class BitReader:
    """Reads big-endian bit fields from *data*, starting at bit *start*."""

    __slots__ = ("bits", "pos", "value")

    def __init__(self, data: bytes, start: int = 0) -> None:
        self.value = int.from_bytes(data, "big")
        self.bits = len(data) * 8
        self.pos = start

    def read(self, width: int) -> int:
        """The next *width* bits as an unsigned integer (0 for width 0)."""
        end = self.pos + width
        if end > self.bits:
            raise EXIDecodeError(
                f"stream ends at byte {self.bits // 8} while reading {width} bits at bit {self.pos}"
            )
        self.pos = end
        return (self.value >> (self.bits - end)) & ((1 << width) - 1)

    def read_uint(self) -> int:
        """EXI unsigned integer (7.1.6): 7-bit groups, least significant first, high bit = more."""
        result = 0
        shift = 0
        while True:
            octet = self.read(8)
            result |= (octet & 0x7F) << shift
            if octet < 0x80:
                return result
            shift += 7
            if shift > 7 * 20:
                raise EXIDecodeError(f"unsigned integer longer than 20 octets at bit {self.pos}")

    def read_bytes(self, count: int) -> bytes:
        """*count* octets (binary content, 7.1.1); each is 8 bits on the unaligned stream."""
        if count == 0:
            return b""
        return self.read(8 * count).to_bytes(count, "big")

    def remaining_padding_ok(self) -> bool:
        """True when only zero padding bits (fewer than 8) follow the current position."""
        rest = self.bits - self.pos
        return rest < 8 and (self.value & ((1 << rest) - 1)) == 0


class BitWriter:
    """Accumulates big-endian bit fields; :meth:`to_bytes` pads the last byte with zeros."""

    __slots__ = ("bits", "value")

    def __init__(self) -> None:
        self.value = 0
        self.bits = 0

    def write(self, value: int, width: int) -> None:
        """Append *value* in *width* bits (the caller guarantees 0 <= value < 2**width)."""
        self.value = (self.value << width) | value
        self.bits += width

    def write_uint(self, value: int) -> None:
        """EXI unsigned integer (7.1.6)."""
        while value >= 0x80:
            self.value = (self.value << 8) | 0x80 | (value & 0x7F)
            self.bits += 8
            value >>= 7
        self.value = (self.value << 8) | value
        self.bits += 8

    def write_bytes(self, data: bytes) -> None:
        """Octets of binary content, 8 bits each."""
        if data:
            self.value = (self.value << (8 * len(data))) | int.from_bytes(data, "big")
            self.bits += 8 * len(data)

    def to_bytes(self) -> bytes:
        pad = -self.bits % 8
        return (self.value << pad).to_bytes((self.bits + pad) // 8, "big")
