"""The line protocol between v2gtool and a Control Pilot microcontroller board (``serial`` backend).

One frame per line, printable ASCII, so it can be read on a terminal and typed by hand::

    frame = "$" SEQ ":" BODY "*" CRC "\\n"
    SEQ   = two upper-case hex digits, 00..FF; a reply carries the sequence number of its request
    BODY  = VERB *(" " ARG)          ; printable ASCII 0x20..0x7E without "$", "*" and ":"
    CRC   = four upper-case hex digits: CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no
            reflection, no final XOR) over the ASCII bytes from SEQ to the end of BODY

A line may end in "\\r\\n"; anything before "$" on a line is ignored (line noise). At most
:data:`MAX_FRAME` bytes per line.

Requests (host -> board) and replies (board -> host):

=====================  ======================================  ======================================
request                reply                                   meaning
=====================  ======================================  ======================================
``PING``               ``PONG <firmware>``                     liveness and firmware version
``DUTY <permille>``    ``OK DUTY <permille>``                  PWM duty in 0.1 % (50 = 5 %, 1000 = off)
``CP?``                ``CP <high_mV> <low_mV> <permille>``    CP plateaus (signed mV) and the duty
``PP?``                ``PP <ohm>``                            proximity-pilot resistance to PE
=====================  ======================================  ======================================

Any request can be answered with ``ERR <CODE> [text]``; codes: ``CRC`` (checksum mismatch),
``SYNTAX`` (malformed frame or arguments), ``RANGE`` (argument out of range), ``UNKNOWN`` (verb).
The host drops a reply with a bad checksum or a foreign sequence number and repeats the request.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from v2gtool.hw.errors import HardwareError

MAX_FRAME = 128
_BODY_RE = re.compile(r"^[\x20-\x7e]+$")
_FORBIDDEN = frozenset("$*:")
_INT_RE = re.compile(r"^[+-]?[0-9]{1,9}$")


class BoardProtocolError(HardwareError):
    """A line from the board that is not a valid frame."""


@dataclass(frozen=True)
class Frame:
    """One frame: its sequence number, verb and arguments."""

    seq: int
    verb: str
    args: tuple[str, ...] = ()

    @property
    def body(self) -> str:
        return " ".join((self.verb, *self.args))


def crc16_ccitt(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (check value of b"123456789" is 0x29B1)."""
    crc = 0xFFFF
    for byte in data:
        crc ^= byte << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc


def encode_frame(frame: Frame) -> bytes:
    """The wire form of *frame*, with its checksum and the line end."""
    if not 0 <= frame.seq <= 0xFF:
        raise BoardProtocolError(f"sequence number {frame.seq} is outside 0..255")
    parts = (frame.verb, *frame.args)
    if any(not p or " " in p or _FORBIDDEN & set(p) or not _BODY_RE.match(p) for p in parts):
        raise BoardProtocolError(f"frame body {frame.body!r} has characters the protocol does not allow")
    payload = f"{frame.seq:02X}:{frame.body}".encode("ascii")
    line = b"$" + payload + f"*{crc16_ccitt(payload):04X}\n".encode("ascii")
    if len(line) > MAX_FRAME:
        raise BoardProtocolError(f"frame of {len(line)} bytes exceeds {MAX_FRAME}")
    return line


def decode_frame(line: bytes) -> Frame:
    """Parse one line into a :class:`Frame`; every malformation is a :class:`BoardProtocolError`."""
    if len(line) > MAX_FRAME:
        raise BoardProtocolError(f"line of {len(line)} bytes exceeds {MAX_FRAME}")
    start = line.find(b"$")
    if start < 0:
        raise BoardProtocolError("no frame start '$' in line")
    text_bytes = line[start + 1 :].rstrip(b"\r\n")
    try:
        text = text_bytes.decode("ascii")
    except UnicodeDecodeError:
        raise BoardProtocolError("frame has non-ASCII bytes") from None
    payload, star, crc_text = text.rpartition("*")
    if not star or len(crc_text) != 4 or any(c not in "0123456789ABCDEF" for c in crc_text):
        raise BoardProtocolError("frame lacks the '*XXXX' checksum")
    if crc16_ccitt(payload.encode("ascii")) != int(crc_text, 16):
        raise BoardProtocolError("frame checksum mismatch")
    seq_text, colon, body = payload.partition(":")
    if not colon or len(seq_text) != 2 or any(c not in "0123456789ABCDEF" for c in seq_text):
        raise BoardProtocolError("frame lacks the 'SS:' sequence number")
    if not body or not _BODY_RE.match(body) or _FORBIDDEN & set(body):
        raise BoardProtocolError("frame body is empty or has characters the protocol does not allow")
    verb, *args = body.split(" ")
    if not verb or any(not a for a in args):
        raise BoardProtocolError("frame body has empty fields")
    return Frame(int(seq_text, 16), verb, tuple(args))


def parse_int(frame: Frame, index: int, low: int, high: int) -> int:
    """Argument *index* of *frame* as an integer within ``low..high``."""
    if index >= len(frame.args) or not _INT_RE.match(frame.args[index]):
        raise BoardProtocolError(f"{frame.verb}: argument {index + 1} is missing or not an integer")
    value = int(frame.args[index])
    if not low <= value <= high:
        raise BoardProtocolError(f"{frame.verb}: argument {value} outside {low}..{high}")
    return value
