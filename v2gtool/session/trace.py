"""The trace of a simulated session: a pcap of every frame, written and flushed one packet at a time.

SLAC frames are the bytes the hosts exchanged on the simulated cable, SDP datagrams those of the
SDP step (:mod:`v2gtool.session.sdp_step`). The V2GTP stream, which ran over TCP on loopback, is
written as the PLC link would carry it: Ethernet and IPv6 between the two hosts' link-local
addresses, one TCP connection with consecutive sequence numbers. So the trace
opens in Wireshark and ``v2gtool pcap-decode`` reads it like a capture from a charger.

A write the file system refuses (a full disk) is raised once, as :class:`PcapWriteError`; the file
then ends at the last whole packet record (nothing of the refused one, nothing after it), so it
stays readable up to there.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from v2gtool.net.pcapwriter import LINKTYPE_ETHERNET, PcapWriteError, PcapWriter
from v2gtool.pcap.synth import Host, TCPSession, sdp_datagram
from v2gtool.session.sdp_step import EV_ADDRESS, EV_PORT, EVSE_ADDRESS, SECC_PORT
from v2gtool.session.slac_step import EV_MAC, EVSE_MAC

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer


class TraceSink(Protocol):
    """Where a session's frames go: a :class:`SessionTrace`, or a probe that times them."""

    epoch: float
    """Unix time of the session clock's reading 0: a frame at *t* is placed at ``epoch + t``."""

    def ethernet_frame(self, t: float, frame: bytes) -> None: ...

    def sdp(self, t: float, from_evcc: bool, datagram: bytes) -> None: ...

    def v2gtp(self, t: float, from_evcc: bool, data: bytes) -> None: ...

    def close(self, t: float) -> None: ...


class _WholeRecords(io.FileIO):
    """The trace file, unbuffered, each write whole or not at all: a write the file system refuses
    part-way (ENOSPC after the first bytes) is cut off again, so the file ends at a record boundary
    (:class:`PcapWriter` writes one record per call) and no buffered rest of it is written later. A
    pipe (``--trace -``) cannot be cut: its reader gets what was written."""

    def write(self, data: ReadableBuffer, /) -> int:
        start = self.tell() if self.seekable() else None
        view = memoryview(data).cast("B")
        size = view.nbytes
        try:
            while view:
                view = view[super().write(view) :]
        except OSError:
            if start is not None:
                with contextlib.suppress(OSError):  # best effort: the error raised is the write's
                    self.truncate(start)
                    self.seek(start)
            raise
        return size


class SessionTrace:
    """Frames of one session into a pcap file; *t* values are the session's clock, placed at the
    wall-clock time the trace was started."""

    def __init__(self, path: Path) -> None:
        try:
            file = _WholeRecords(path, "wb")
        except OSError as exc:
            raise PcapWriteError(f"cannot create pcap file {path}: {exc.strerror}") from exc
        try:
            self.writer = PcapWriter(file, LINKTYPE_ETHERNET)
        except PcapWriteError:
            file.close()
            raise
        self.epoch = time.time()
        self._evcc = Host(EV_MAC, EV_ADDRESS, EV_PORT, 1000)
        self._secc = Host(EVSE_MAC, EVSE_ADDRESS, SECC_PORT, 5000)
        self._tcp: TCPSession | None = None
        self._failed = False

    def ethernet_frame(self, t: float, frame: bytes) -> None:
        self._write(lambda: self.writer.write(self.epoch + t, frame))

    def sdp(self, t: float, from_evcc: bool, datagram: bytes) -> None:
        self._write(lambda: sdp_datagram(self.writer, self.epoch + t, self._evcc, self._secc, from_evcc, datagram))

    def v2gtp(self, t: float, from_evcc: bool, data: bytes) -> None:
        self._write(lambda: self._tcp_send(self.epoch + t, from_evcc, data))

    def close(self, t: float) -> None:
        """Both FINs of the TCP connection, unless a write failed before, then close the file."""
        try:
            if self._tcp is not None:
                tcp = self._tcp
                self._write(lambda: tcp.close(self.epoch + t))
        finally:
            self.writer.close()

    def _tcp_send(self, ts: float, from_evcc: bool, data: bytes) -> None:
        if self._tcp is None:
            self._tcp = TCPSession(self.writer, self._evcc, self._secc)
            self._tcp.open(ts)
        self._tcp.send(ts, from_evcc, data)

    def _write(self, frames: Callable[[], None]) -> None:
        """Write *frames*, unless a write failed before: the file then ends at that failure (later
        frames would leave a gap, e.g. in the TCP stream's sequence numbers)."""
        if self._failed:
            return
        try:
            frames()
        except PcapWriteError:
            self._failed = True
            raise
