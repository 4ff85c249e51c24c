"""Streaming pcap and pcapng reading (libpcap file format; pcapng per RFC draft-ietf-opsawg-pcapng).

:class:`CaptureParser` is sans-IO: feed it chunks of a file, stdin or a growing trace and it returns
every complete packet record, keeping only the bytes of one unfinished block. :func:`read_capture`
is the I/O edge that pulls chunks from a binary stream, optionally following a growing file.
"""

from __future__ import annotations

import io
import logging
import os
import stat
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO, NamedTuple

from v2gtool.errors import V2GToolError

CHUNK_SIZE = 256 * 1024
# A block larger than this is a corrupt length field, not a packet (jumbo frames stay far below it).
MAX_BLOCK_LENGTH = 16 * 1024 * 1024
log = logging.getLogger(__name__)

_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
_PCAPNG_SHB = 0x0A0D0D0A
_PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D
_BLOCK_IDB = 0x00000001
_BLOCK_PB = 0x00000002  # obsolete Packet Block
_BLOCK_SPB = 0x00000003
_BLOCK_EPB = 0x00000006
_BLOCK_DSB = 0x0000000A  # Decryption Secrets Block
_SECRETS_TLS_KEY_LOG = 0x544C534B  # "TLSK": NSS key-log lines
# Records that are no packet, yet tshark (wiretap) reads them as frames and numbers them: the systemd
# Journal Export Block and the Custom Blocks (copyable and not).
_NUMBERED_NON_PACKETS = frozenset({0x00000009, 0x00000BAD, 0x40000BAD})
_OPT_IF_TSRESOL = 9


class CaptureError(V2GToolError):
    """The bytes are not a pcap/pcapng capture, or a record of it is malformed or truncated."""


class NotACaptureError(CaptureError):
    """The input has no pcap/pcapng file header at all: bad input, not a damaged capture."""

    exit_code = 2


class CapturedPacket(NamedTuple):
    """One packet record: its 1-based number in the file (as tshark counts), time and link-layer bytes.

    A named tuple: one is built for every packet, in C.
    """

    number: int
    timestamp: float
    linktype: int
    data: bytes
    original_length: int


@dataclass(slots=True)
class _Interface:
    linktype: int
    snaplen: int
    resolution: float


class CaptureParser:
    """Sans-IO reader of one pcap or pcapng stream; :meth:`feed` bytes, get packets back.

    *tls_keylog* receives the text of every Decryption Secrets Block holding a TLS key log
    (pcapng section 4.7), as it is read: before the packets that follow it.
    """

    def __init__(self, tls_keylog: Callable[[str], object] | None = None) -> None:
        self._tls_keylog = tls_keylog
        self._buffer = b""  # the start of a record still incomplete
        self._offset = 0  # file offset of the record being read, for error messages
        self._format: str | None = None
        self._endian = "<"
        self._record_header = struct.Struct("<IIII")  # pcap: seconds, fraction, captured and original length
        self._resolution = 1e-6
        self._linktype = 0
        self._interfaces: list[_Interface] = []
        self._count = 0

    @property
    def packets_read(self) -> int:
        """How many frames were read so far, as tshark numbers them (packets and a few other records)."""
        return self._count

    def feed(self, data: bytes) -> list[CapturedPacket]:
        """Append *data*; return every packet record that is now complete.

        Records are read in place from the bytes at hand; only an incomplete last one is kept.
        """
        self._buffer += data
        packets: list[CapturedPacket] = []
        if self._format is None and not self._read_file_header():
            return packets
        start = self._offset
        if self._format == "pcap":
            self._pcap_records(packets)
        else:
            self._pcapng_records(packets)
        self._buffer = self._buffer[self._offset - start:]
        return packets

    def close(self) -> None:
        """Check the end of the capture: a partial record left over means the file was cut short."""
        if self._format is None:
            if bytes(self._buffer[:4]) in _PCAP_MAGIC:  # a capture, cut inside its file header
                raise CaptureError(f"capture truncated: {len(self._buffer)} bytes, shorter than a file header")
            if self._buffer:
                raise NotACaptureError(f"{len(self._buffer)} bytes, shorter than a pcap or pcapng file header")
            raise NotACaptureError("capture is empty: no pcap or pcapng file header")
        if self._buffer:
            raise CaptureError(
                f"capture truncated at byte {self._offset + len(self._buffer)}: the record at byte {self._offset} "
                f"after packet {self._count} is incomplete ({len(self._buffer)} bytes)"
            )

    def _read_file_header(self) -> bool:
        if len(self._buffer) < 4:
            return False
        magic = bytes(self._buffer[:4])
        if magic in _PCAP_MAGIC:
            if len(self._buffer) < 24:
                return False
            self._endian, self._resolution = _PCAP_MAGIC[magic]
            self._linktype = struct.unpack_from(self._endian + "I", self._buffer, 20)[0] & 0x0FFFFFFF
            self._record_header = struct.Struct(self._endian + "IIII")
            self._buffer = self._buffer[24:]
            self._offset = 24
            self._format = "pcap"
            return True
        if struct.unpack_from("<I", magic)[0] == _PCAPNG_SHB:
            self._format = "pcapng"
            return True
        raise NotACaptureError(f"not a pcap or pcapng capture: file starts with {magic.hex()}")

    def _pcap_records(self, packets: list[CapturedPacket]) -> None:
        """Append the complete records of the buffer; self._offset ends at the first incomplete one."""
        buf, header, resolution, linktype = self._buffer, self._record_header, self._resolution, self._linktype
        pos, size, base = 0, len(buf), self._offset
        while size - pos >= 16:
            seconds, fraction, caplen, origlen = header.unpack_from(buf, pos)
            if caplen > MAX_BLOCK_LENGTH:
                self._offset = base + pos
                raise CaptureError(f"pcap record at byte {self._offset}: captured length {caplen} is implausible")
            end = pos + 16 + caplen
            if size < end:
                break
            self._count += 1
            packets.append(CapturedPacket(self._count, seconds + fraction * resolution, linktype, buf[pos + 16:end],
                                          origlen))
            pos = end
        self._offset = base + pos

    def _pcapng_records(self, packets: list[CapturedPacket]) -> None:
        """Append the packets of the buffer's complete blocks; self._offset ends at the first incomplete one."""
        buf, pos, base = self._buffer, 0, self._offset
        while len(buf) - pos >= 12:
            self._offset = base + pos
            if struct.unpack_from("<I", buf, pos)[0] == _PCAPNG_SHB:
                magic = struct.unpack_from("<I", buf, pos + 8)[0]
                if magic == _PCAPNG_BYTE_ORDER_MAGIC:
                    self._endian = "<"
                elif magic == struct.unpack("<I", struct.pack(">I", _PCAPNG_BYTE_ORDER_MAGIC))[0]:
                    self._endian = ">"
                else:
                    raise CaptureError(f"pcapng section header at byte {self._offset}: bad byte-order magic "
                                       f"{magic:#x}")
                self._interfaces = []  # interface ids are per section
            block_type, length = struct.unpack_from(self._endian + "II", buf, pos)
            if length < 12 or length % 4 or length > MAX_BLOCK_LENGTH:
                raise CaptureError(f"pcapng block at byte {self._offset}: invalid block length {length}")
            if len(buf) - pos < length:
                break
            body = memoryview(buf)[pos + 8:pos + length - 4]
            try:
                packet = self._block(block_type, body)
            except struct.error:
                raise CaptureError(f"pcapng block type {block_type:#x} at byte {self._offset}: body of {len(body)} "
                                   f"bytes is too short for its fields") from None
            finally:
                body.release()
            if packet is not None:
                packets.append(packet)
            pos += length
        self._offset = base + pos

    def _block(self, block_type: int, body: memoryview) -> CapturedPacket | None:
        e = self._endian
        if block_type == _BLOCK_IDB:
            linktype, _, snaplen = struct.unpack_from(e + "HHI", body)
            self._interfaces.append(_Interface(linktype, snaplen, self._tsresol(body[8:])))
            return None
        if block_type in (_BLOCK_EPB, _BLOCK_PB):
            if block_type == _BLOCK_EPB:
                iface_id, ts_high, ts_low, caplen, origlen = struct.unpack_from(e + "IIIII", body)
            else:
                iface_id, _, ts_high, ts_low, caplen, origlen = struct.unpack_from(e + "HHIIII", body)
            iface = self._interface(iface_id)
            if 20 + caplen > len(body):
                raise CaptureError(f"pcapng packet block at byte {self._offset}: captured length {caplen} "
                                   f"exceeds the block")
            self._count += 1
            return CapturedPacket(self._count, ((ts_high << 32) | ts_low) * iface.resolution, iface.linktype,
                                  bytes(body[20:20 + caplen]), origlen)
        if block_type == _BLOCK_SPB:
            iface = self._interface(0)
            origlen = struct.unpack_from(e + "I", body)[0]
            caplen = min(origlen, iface.snaplen or origlen, len(body) - 4)
            self._count += 1
            return CapturedPacket(self._count, 0.0, iface.linktype, bytes(body[4:4 + caplen]), origlen)
        if block_type in _NUMBERED_NON_PACKETS:
            self._count += 1  # nothing to dissect, but the later packets' numbers must be tshark's
        elif block_type == _BLOCK_DSB:
            secrets_type, length = struct.unpack_from(e + "II", body)
            if secrets_type == _SECRETS_TLS_KEY_LOG and self._tls_keylog is not None:
                self._tls_keylog(bytes(body[8:8 + length]).decode("ascii", errors="replace"))
        return None  # section header, statistics, name resolution: nothing to dissect

    def _interface(self, iface_id: int) -> _Interface:
        if iface_id >= len(self._interfaces):
            raise CaptureError(f"pcapng packet block at byte {self._offset} names interface {iface_id}, "
                               f"but the section describes {len(self._interfaces)}")
        return self._interfaces[iface_id]

    def _tsresol(self, options: memoryview) -> float:
        """The if_tsresol option: 10^-n, or 2^-n with the top bit set; microseconds when absent."""
        pos = 0
        while pos + 4 <= len(options):
            code, length = struct.unpack_from(self._endian + "HH", options, pos)
            if code == 0:
                break
            if code == _OPT_IF_TSRESOL and length >= 1:
                value = options[pos + 4]
                return 2.0 ** -(value & 0x7F) if value & 0x80 else 10.0 ** -value
            pos += 4 + (length + 3) // 4 * 4
        return 1e-6


class CaptureReadError(V2GToolError):
    """The input could not be read at all (EIO, a file that refuses read(2)): unreadable input."""

    exit_code = 2


def read_capture(stream: BinaryIO, follow: bool = False, poll_interval: float = 0.2,
                 sleep: Callable[[float], None] = time.sleep,
                 keep_following: Callable[[], bool] = lambda: True,
                 tls_keylog: Callable[[str], object] | None = None) -> Iterator[CapturedPacket]:
    """Yield the packets of *stream* as they are read, in constant memory.

    With *follow*, reaching the end waits for the file to grow (like ``tail -F``) while
    *keep_following* says so, and a file rewritten meanwhile is read again from its start
    (:class:`_FollowedFile`); without it, a partial last record raises :class:`CaptureError`.
    *tls_keylog* is given the key logs the capture embeds (see :class:`CaptureParser`). A read
    error is a :class:`CaptureReadError` naming the file.
    """
    name = str(getattr(stream, "name", "input"))
    if follow:
        yield from _follow(_FollowedFile(stream, name), poll_interval, sleep, keep_following, tls_keylog)
        return
    parser = CaptureParser(tls_keylog)
    # read1 returns what a pipe has now instead of waiting for a whole chunk (live `tcpdump -w -`).
    read = getattr(stream, "read1", stream.read)
    while chunk := _read(read, name):
        yield from parser.feed(chunk)
    parser.close()


def _read(read: Callable[[int], bytes], name: str) -> bytes:
    try:
        return read(CHUNK_SIZE)
    except OSError as exc:
        raise CaptureReadError(f"cannot read {name}: {exc.strerror or exc}") from None


def _follow(followed: _FollowedFile, poll_interval: float, sleep: Callable[[float], None],
            keep_following: Callable[[], bool],
            tls_keylog: Callable[[str], object] | None) -> Iterator[CapturedPacket]:
    """:func:`read_capture` with *follow*: a parser per version of the file."""
    parser = CaptureParser(tls_keylog)
    try:
        while True:
            chunk = _read(followed.read, followed.name)
            if chunk:
                followed.consumed(chunk)
                try:
                    packets = parser.feed(chunk)
                except CaptureError:  # bytes of a new version read on from the old one's end
                    if not followed.restarted():
                        raise
                    parser = CaptureParser(tls_keylog)
                    continue
                yield from packets
            elif not keep_following():
                parser.close()
                return
            elif followed.restarted():
                parser = CaptureParser(tls_keylog)
            else:
                sleep(poll_interval)
    finally:
        followed.close()


HEAD_BYTES = 4096
"""How much of the start of a followed file is kept to recognise it: a new capture written over it
differs there (its first packet's time stamp, at the latest)."""


class _FollowedFile:
    """The file ``--follow`` reads, and whether its path still holds what was read so far.

    A second ``session run --trace`` to the same path truncates the file and writes a new capture
    (or a tool replaces it: a new inode). Like ``tail -F``, that is noticed (:meth:`restarted`) when
    the path names another inode, when the file is shorter than what was read, or when its first
    :data:`HEAD_BYTES` changed (rewritten past the read position between two polls), and the new
    capture is read from its start, with a one-line warning. A pipe or stdin is only read on.
    """

    def __init__(self, stream: BinaryIO, name: str) -> None:
        self.name = name
        self._stream = stream
        self._own: BinaryIO | None = None  # the file opened again here, closed here
        self.read: Callable[[int], bytes] = getattr(stream, "read1", stream.read)
        self._position = 0
        self._head = b""
        try:
            self._regular = stat.S_ISREG(os.fstat(stream.fileno()).st_mode)
        except (OSError, ValueError, io.UnsupportedOperation):  # BytesIO, a closed or fd-less stream
            self._regular = False

    def consumed(self, chunk: bytes) -> None:
        self._position += len(chunk)
        if len(self._head) < HEAD_BYTES:
            self._head += chunk[:HEAD_BYTES - len(self._head)]

    def restarted(self) -> bool:
        """Whether the path holds another capture than the one read so far; if so, the stream is at
        its start now."""
        change = self._change() if self._regular else None
        if change is None:
            return False
        log.warning("%s %s: decoding it again from its start", self.name, change)
        if change == "was replaced":
            try:
                stream = open(self.name, "rb")  # noqa: SIM115 - held across reads, closed in close()
            except OSError as exc:
                raise CaptureReadError(f"cannot read {self.name}: {exc.strerror}") from None
            self.close()
            self._own = self._stream = stream
            self.read = stream.read1
        else:
            self._stream.seek(0)
        self._position, self._head = 0, b""
        return True

    def _change(self) -> str | None:
        fd = self._stream.fileno()
        try:
            here, there = os.fstat(fd), os.stat(self.name)
            if (here.st_dev, here.st_ino) != (there.st_dev, there.st_ino):
                return "was replaced"
            if here.st_size < self._position:
                return "was truncated"
            if os.pread(fd, len(self._head), 0) != self._head:
                return "was rewritten"
        except OSError:  # the path is gone for now (renamed away): read on what is open
            return None
        return None

    def close(self) -> None:
        if self._own is not None:
            self._own.close()
            self._own = None
