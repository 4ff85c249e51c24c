"""Synthesised captures: a pcap writer and the Ethernet/IPv6/TCP/UDP framing of V2G sessions.

Tests craft captures with it (broken ones included), ``benchmarks/pcap_bench.py`` writes large ones
and :mod:`v2gtool.session.trace` the traces of simulated sessions. UDP and TCP carry their checksums
over the IPv6 pseudo-header (RFC 8200 section 8.1), as Wireshark verifies them when asked to; readers
must not need them (captures of checksum-offloading NICs have wrong ones).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass, field

from v2gtool.net.pcapwriter import PcapWriter
from v2gtool.pcap.link import (
    ETHERTYPE_HOMEPLUG_AV,
    ETHERTYPE_IPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    TCP_ACK,
    TCP_FIN,
    TCP_SYN,
)
from v2gtool.sdp import (
    SDP_MULTICAST_GROUP,
    SDP_SERVER_PORT,
    SdpRequest,
    SdpResponse,
    Security,
    TransportProtocol,
    encode_request,
    encode_response,
)

PSH = 0x08
SDP_MULTICAST_MAC = "33:33:00:00:00:01"  # ff02::1 on Ethernet (RFC 2464 section 7)


def mac_bytes(text: str) -> bytes:
    return bytes(int(part, 16) for part in text.split(":"))


def ethernet(source: str, destination: str, ethertype: int, payload: bytes, vlan: int | None = None) -> bytes:
    tag = struct.pack(">HH", 0x8100, vlan) if vlan is not None else b""
    return mac_bytes(destination) + mac_bytes(source) + tag + struct.pack(">H", ethertype) + payload


# Where UDP (RFC 768) and TCP (RFC 9293 section 3.1) keep their checksum
_CHECKSUM_OFFSET = {IPPROTO_UDP: 6, IPPROTO_TCP: 16}


def internet_checksum(data: bytes) -> int:
    """The 16-bit one's complement of the one's complement sum of *data*'s 16-bit words (RFC 1071).

    The sum of the words modulo 0xFFFF is the whole number modulo 0xFFFF (2**16 = 1 modulo 0xFFFF);
    a non-zero sum that is a multiple of 0xFFFF is 0xFFFF in one's complement arithmetic.
    """
    if len(data) % 2:
        data += b"\x00"
    number = int.from_bytes(data, "big")
    total = number % 0xFFFF or (0xFFFF if number else 0)
    return ~total & 0xFFFF


def ipv6(source: str, destination: str, protocol: int, payload: bytes) -> bytes:
    """An IPv6 packet; a UDP datagram or TCP segment in *payload* gets its checksum filled in."""
    addresses = ipaddress.IPv6Address(source).packed + ipaddress.IPv6Address(destination).packed
    offset = _CHECKSUM_OFFSET.get(protocol)
    if offset is not None and len(payload) >= offset + 2:
        pseudo_header = addresses + struct.pack(">IxxxB", len(payload), protocol)
        checksum = internet_checksum(pseudo_header + payload[:offset] + b"\x00\x00" + payload[offset + 2:])
        if protocol == IPPROTO_UDP and checksum == 0:
            checksum = 0xFFFF  # zero means "no checksum", which IPv6 forbids for UDP (RFC 8200 section 8.1)
        payload = payload[:offset] + struct.pack(">H", checksum) + payload[offset + 2:]
    return struct.pack(">IHBB", 0x60000000, len(payload), protocol, 64) + addresses + payload


def udp(source_port: int, destination_port: int, payload: bytes) -> bytes:
    return struct.pack(">HHHH", source_port, destination_port, 8 + len(payload), 0) + payload


def tcp(source_port: int, destination_port: int, seq: int, ack: int, flags: int, payload: bytes = b"") -> bytes:
    return struct.pack(">HHIIBBHHH", source_port, destination_port, seq % (1 << 32), ack % (1 << 32), 5 << 4, flags,
                       65535, 0, 0) + payload


def homeplug(source: str, destination: str, mmtype: int, body: bytes) -> bytes:
    """An Ethernet frame with a HomePlug AV 1.1 MME (MMV 1, FMI 0), padded to the 60-byte minimum."""
    frame = ethernet(source, destination, ETHERTYPE_HOMEPLUG_AV, struct.pack("<BHH", 1, mmtype, 0) + body)
    return frame + bytes(max(0, 60 - len(frame)))


@dataclass
class Host:
    mac: str
    address: str
    port: int
    seq: int


@dataclass
class TCPSession:
    """One TCP connection between an EVCC (client) and an SECC (server), written segment by segment."""

    writer: PcapWriter
    evcc: Host = field(default_factory=lambda: Host("02:00:00:00:00:01", "fe80::1", 50000, 1000))
    # The SECC listens on a port of the dynamic range 49152-65535, as its SDP response must announce one
    secc: Host = field(default_factory=lambda: Host("02:00:00:00:00:02", "fe80::2", 61851, 5000))

    def _frame(self, sender: Host, receiver: Host, flags: int, payload: bytes, seq: int | None = None) -> bytes:
        segment = tcp(sender.port, receiver.port, sender.seq if seq is None else seq, receiver.seq, flags, payload)
        return ethernet(sender.mac, receiver.mac, ETHERTYPE_IPV6, ipv6(sender.address, receiver.address,
                                                                       IPPROTO_TCP, segment))

    def open(self, t: float) -> None:
        """The three-way handshake."""
        self.writer.write(t, self._frame(self.evcc, self.secc, TCP_SYN, b""))
        self.evcc.seq += 1
        self.writer.write(t, self._frame(self.secc, self.evcc, TCP_SYN | TCP_ACK, b""))
        self.secc.seq += 1
        self.writer.write(t, self._frame(self.evcc, self.secc, TCP_ACK, b""))

    def send(self, t: float, from_evcc: bool, payload: bytes, segment_size: int = 1400) -> None:
        """Send *payload* in segments of at most *segment_size* bytes."""
        sender, receiver = (self.evcc, self.secc) if from_evcc else (self.secc, self.evcc)
        for start in range(0, len(payload), segment_size):
            chunk = payload[start:start + segment_size]
            self.writer.write(t, self._frame(sender, receiver, TCP_ACK | PSH, chunk))
            sender.seq += len(chunk)

    def segment(self, t: float, from_evcc: bool, payload: bytes, offset: int) -> None:
        """Write one segment at *offset* bytes past the sender's current sequence number (no advance)."""
        sender, receiver = (self.evcc, self.secc) if from_evcc else (self.secc, self.evcc)
        self.writer.write(t, self._frame(sender, receiver, TCP_ACK | PSH, payload, sender.seq + offset))

    def advance(self, from_evcc: bool, length: int) -> None:
        (self.evcc if from_evcc else self.secc).seq += length

    def close(self, t: float, evcc_first: bool = True) -> None:
        """Both FINs: the EVCC's first, or with *evcc_first* False the SECC's."""
        pairs = ((self.evcc, self.secc), (self.secc, self.evcc))
        for sender, receiver in pairs if evcc_first else reversed(pairs):
            self.writer.write(t, self._frame(sender, receiver, TCP_FIN | TCP_ACK, b""))
            sender.seq += 1

    def ack(self, t: float, from_evcc: bool) -> None:
        """A bare ACK (no payload)."""
        sender, receiver = (self.evcc, self.secc) if from_evcc else (self.secc, self.evcc)
        self.writer.write(t, self._frame(sender, receiver, TCP_ACK, b""))


def sdp_datagram(writer: PcapWriter, t: float, evcc: Host, secc: Host, from_evcc: bool, datagram: bytes) -> None:
    """One SDP datagram (ISO 15118-2/-20 clause 7.10.1): the EVCC's request goes from UDP port
    ``evcc.port + 1`` to ff02::1 port 15118, the SECC's response back to that port by unicast."""
    if from_evcc:
        frame = ethernet(evcc.mac, SDP_MULTICAST_MAC, ETHERTYPE_IPV6,
                         ipv6(evcc.address, SDP_MULTICAST_GROUP, IPPROTO_UDP,
                              udp(evcc.port + 1, SDP_SERVER_PORT, datagram)))
    else:
        frame = ethernet(secc.mac, evcc.mac, ETHERTYPE_IPV6,
                         ipv6(secc.address, evcc.address, IPPROTO_UDP, udp(SDP_SERVER_PORT, evcc.port + 1, datagram)))
    writer.write(t, frame)


def sdp_exchange(writer: PcapWriter, t: float, evcc: Host, secc: Host, tls: bool) -> None:
    """An SDP request and the SECC's response announcing *secc*'s address and port."""
    security = Security.TLS if tls else Security.NO_TLS
    sdp_datagram(writer, t, evcc, secc, True, encode_request(SdpRequest(security, TransportProtocol.TCP)))
    response = SdpResponse(ipaddress.IPv6Address(secc.address), secc.port, security, TransportProtocol.TCP)
    sdp_datagram(writer, t, evcc, secc, False, encode_response(response))
