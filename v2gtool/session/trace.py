"""The trace of a simulated session: a pcap of every frame, written and flushed one packet at a time.

SLAC frames are the bytes the hosts exchanged on the simulated cable, SDP datagrams those of the
SDP step (:mod:`v2gtool.session.sdp_step`). The V2GTP stream, which ran over TCP on loopback, is
written as the PLC link would carry it: Ethernet and IPv6 between the two hosts' link-local
addresses, one TCP connection with consecutive sequence numbers. So the trace
opens in Wireshark and ``v2gtool pcap-decode`` reads it like a capture from a charger.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Protocol

from v2gtool.net.pcapwriter import LINKTYPE_ETHERNET, PcapWriter
from v2gtool.pcap.synth import Host, TCPSession, sdp_datagram
from v2gtool.session.sdp_step import EV_ADDRESS, EV_PORT, EVSE_ADDRESS, SECC_PORT
from v2gtool.session.slac_step import EV_MAC, EVSE_MAC


class TraceSink(Protocol):
    """Where a session's frames go: a :class:`SessionTrace`, or a probe that times them."""

    epoch: float
    """Unix time of the session clock's reading 0: a frame at *t* is placed at ``epoch + t``."""

    def ethernet_frame(self, t: float, frame: bytes) -> None: ...

    def sdp(self, t: float, from_evcc: bool, datagram: bytes) -> None: ...

    def v2gtp(self, t: float, from_evcc: bool, data: bytes) -> None: ...

    def close(self, t: float) -> None: ...


class SessionTrace:
    """Frames of one session into a pcap file; *t* values are the session's clock, placed at the
    wall-clock time the trace was started."""

    def __init__(self, path: Path) -> None:
        self.writer = PcapWriter(path, LINKTYPE_ETHERNET)
        self.epoch = time.time()
        self._evcc = Host(EV_MAC, EV_ADDRESS, EV_PORT, 1000)
        self._secc = Host(EVSE_MAC, EVSE_ADDRESS, SECC_PORT, 5000)
        self._tcp: TCPSession | None = None

    def ethernet_frame(self, t: float, frame: bytes) -> None:
        self.writer.write(self.epoch + t, frame)

    def sdp(self, t: float, from_evcc: bool, datagram: bytes) -> None:
        sdp_datagram(self.writer, self.epoch + t, self._evcc, self._secc, from_evcc, datagram)

    def v2gtp(self, t: float, from_evcc: bool, data: bytes) -> None:
        if self._tcp is None:
            self._tcp = TCPSession(self.writer, self._evcc, self._secc)
            self._tcp.open(self.epoch + t)
        self._tcp.send(self.epoch + t, from_evcc, data)

    def close(self, t: float) -> None:
        if self._tcp is not None:
            self._tcp.close(self.epoch + t)
        self.writer.close()
