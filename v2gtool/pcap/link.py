"""Link, network and transport headers of captured packets: Ethernet II with 802.1Q/802.1ad tags,
Linux cooked captures (SLL, SLL2), raw IP; IPv4, IPv6 (with extension headers), UDP and TCP.

Only what the V2G dissector needs is parsed; a header that is cut short raises :class:`PacketError`
naming the layer, so a truncated frame is reported, never half-decoded. The parsed headers are
named tuples: several are built per packet, and tuples are built and compared in C.
"""

from __future__ import annotations

import ipaddress
import struct
from functools import lru_cache
from typing import NamedTuple

from v2gtool.errors import V2GToolError

# Link-layer header types (tcpdump.org/linktypes.html).
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
ETHERTYPE_VLAN = 0x8100
ETHERTYPE_QINQ = 0x88A8
ETHERTYPE_HOMEPLUG_AV = 0x88E1  # HomePlug AV / Green PHY management messages (ISO 15118-3 SLAC)

IPPROTO_TCP = 6
IPPROTO_UDP = 17
_IPV6_EXTENSION_HEADERS = {0, 43, 60}  # hop-by-hop, routing, destination options
_IPV6_FRAGMENT = 44

TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_ACK = 0x10


class PacketError(V2GToolError):
    """A header of a captured frame is truncated or malformed."""


class LinkFrame(NamedTuple):
    """A link-layer frame: addresses (MAC, when the link has them), EtherType and payload."""

    source: str | None
    destination: str | None
    ethertype: int
    payload: bytes
    vlan: tuple[int, ...] = ()


class IPPacket(NamedTuple):
    """An IPv4 or IPv6 packet: addresses as text, upper-layer protocol and its bytes.

    *missing* bytes of the payload were cut off by the capture's snapshot length (see :func:`ip_packet`).
    """

    source: str
    destination: str
    protocol: int
    payload: bytes
    missing: int = 0


class UDPDatagram(NamedTuple):
    source_port: int
    destination_port: int
    payload: bytes


class TCPSegment(NamedTuple):
    source_port: int
    destination_port: int
    seq: int
    ack: int
    flags: int
    payload: bytes


class PlainTCPFrame(NamedTuple):
    """Where an Ethernet II / IPv6 / TCP frame keeps what reassembly needs (see :func:`plain_tcp_frame`)."""

    endpoints: bytes  # source and destination address, source and destination port, as on the wire
    seq: int
    flags: int
    start: int  # TCP payload: data[start:end]
    end: int


# Ethernet II without tag (EtherType at 12), IPv6 (payload length at 18, next header at 20, addresses
# at 22-53), TCP (ports at 54-57, sequence number at 58, data offset at 66, flags at 67).
_PLAIN_TCP = struct.Struct(">12xH4xHB37xI4xBB")
_PLAIN_TCP_ENDPOINTS = slice(22, 58)
_PLAIN_TCP_MINIMUM = 14 + 40 + 20


@lru_cache(maxsize=4096)
def mac(data: bytes) -> str:
    """A MAC address as text (cached: a capture has few addresses and many frames)."""
    return ":".join(f"{b:02x}" for b in data)


@lru_cache(maxsize=4096)
def _ipv6(data: bytes) -> str:
    return str(ipaddress.IPv6Address(data))


@lru_cache(maxsize=4096)
def _ipv4(data: bytes) -> str:
    return str(ipaddress.IPv4Address(data))


def link_frame(linktype: int, data: bytes) -> LinkFrame:
    """Strip the link-layer header of *data* captured with *linktype*."""
    if linktype == LINKTYPE_ETHERNET:
        if len(data) < 14:
            raise PacketError(f"Ethernet header truncated: {len(data)} of 14 bytes")
        ethertype = struct.unpack_from(">H", data, 12)[0]
        pos = 14
        tags: list[int] = []
        while ethertype in (ETHERTYPE_VLAN, ETHERTYPE_QINQ):
            if len(data) < pos + 4:
                raise PacketError(f"802.1Q tag truncated at byte {pos}")
            tci, ethertype = struct.unpack_from(">HH", data, pos)
            tags.append(tci & 0x0FFF)
            pos += 4
        return LinkFrame(mac(data[6:12]), mac(data[0:6]), ethertype, data[pos:], tuple(tags))
    if linktype == LINKTYPE_LINUX_SLL:
        if len(data) < 16:
            raise PacketError(f"Linux cooked (SLL) header truncated: {len(data)} of 16 bytes")
        addr_len = min(struct.unpack_from(">H", data, 4)[0], 8)
        return LinkFrame(mac(data[6:6 + addr_len]), None, struct.unpack_from(">H", data, 14)[0], data[16:])
    if linktype == LINKTYPE_LINUX_SLL2:
        if len(data) < 20:
            raise PacketError(f"Linux cooked (SLL2) header truncated: {len(data)} of 20 bytes")
        addr_len = min(data[11], 8)
        return LinkFrame(mac(data[12:12 + addr_len]), None, struct.unpack_from(">H", data, 0)[0], data[20:])
    if linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6):
        if not data:
            raise PacketError("raw IP frame is empty")
        version = data[0] >> 4
        return LinkFrame(None, None, ETHERTYPE_IPV6 if version == 6 else ETHERTYPE_IPV4, data)
    raise PacketError(f"link-layer type {linktype} is not supported (Ethernet, Linux SLL/SLL2 and raw IP are)")


def ip_packet(ethertype: int, data: bytes, snapped: int = 0) -> IPPacket:
    """Parse the IPv4 or IPv6 header; the payload is cut to the length the header announces.

    *snapped* is how many bytes of the frame the capture did not keep (original minus captured
    length): a payload short by no more than that is returned as far as it goes, with its
    ``missing`` byte count, instead of being refused as malformed.
    """
    if ethertype == ETHERTYPE_IPV6:
        if len(data) < 40:
            raise PacketError(f"IPv6 header truncated: {len(data)} of 40 bytes")
        length, next_header = struct.unpack_from(">HB", data, 4)
        end = 40 + length
        missing = max(0, end - len(data))
        if missing > snapped:
            raise PacketError(f"IPv6 payload truncated: {len(data) - 40} of {length} bytes")
        pos = 40
        while next_header in _IPV6_EXTENSION_HEADERS:
            if min(end, len(data)) < pos + 8:
                raise PacketError("IPv6 extension header truncated")
            next_header, ext_len = data[pos], data[pos + 1]
            pos += (ext_len + 1) * 8
        if next_header == _IPV6_FRAGMENT:
            raise PacketError("IPv6 fragments are not reassembled (V2G traffic is never fragmented)")
        if pos > len(data):
            raise PacketError("IPv6 extension header truncated")
        return IPPacket(_ipv6(data[8:24]), _ipv6(data[24:40]), next_header, data[pos:end], missing)
    if len(data) < 20:
        raise PacketError(f"IPv4 header truncated: {len(data)} of 20 bytes")
    ihl = (data[0] & 0x0F) * 4
    total, frag, protocol = struct.unpack_from(">H2xHxB", data, 2)
    missing = max(0, total - len(data))
    if ihl < 20 or missing > snapped or total < ihl or len(data) < ihl:
        raise PacketError(f"IPv4 packet truncated: {len(data)} of {total} bytes")
    if frag & 0x3FFF:
        raise PacketError("IPv4 fragments are not reassembled (V2G traffic is never fragmented)")
    return IPPacket(_ipv4(data[12:16]), _ipv4(data[16:20]), protocol, data[ihl:total], missing)


def udp_datagram(data: bytes) -> UDPDatagram:
    if len(data) < 8:
        raise PacketError(f"UDP header truncated: {len(data)} of 8 bytes")
    sport, dport, length = struct.unpack_from(">HHH", data)
    if length < 8 or len(data) < length:
        raise PacketError(f"UDP datagram truncated: {len(data)} of {length} bytes")
    return UDPDatagram(sport, dport, data[8:length])


def tcp_segment(data: bytes) -> TCPSegment:
    if len(data) < 20:
        raise PacketError(f"TCP header truncated: {len(data)} of 20 bytes")
    sport, dport, seq, ack, offset, flags = struct.unpack_from(">HHIIBB", data)
    header = (offset >> 4) * 4
    if header < 20 or len(data) < header:
        raise PacketError(f"TCP header truncated: {len(data)} of {header} bytes")
    return TCPSegment(sport, dport, seq, ack, flags, data[header:])


def plain_tcp_frame(data: bytes) -> PlainTCPFrame | None:
    """One unpack of the frame nearly every V2G packet is: Ethernet II without 802.1Q tag, IPv6
    without extension header, TCP. None for any other frame, and for a truncated one: the general
    parsers (:func:`link_frame`, :func:`ip_packet`, :func:`tcp_segment`) take it and say what is wrong.
    """
    if len(data) < _PLAIN_TCP_MINIMUM:
        return None
    ethertype, length, next_header, seq, offset, flags = _PLAIN_TCP.unpack_from(data)
    start, end = 54 + (offset >> 4) * 4, 54 + length
    if ethertype != ETHERTYPE_IPV6 or next_header != IPPROTO_TCP or end > len(data) \
            or not _PLAIN_TCP_MINIMUM <= start <= end:
        return None
    return PlainTCPFrame(data[_PLAIN_TCP_ENDPOINTS], seq, flags, start, end)
