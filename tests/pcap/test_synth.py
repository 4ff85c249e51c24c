"""The synthesised frames' checksums (RFC 1071 arithmetic, RFC 8200 section 8.1 pseudo-header)."""

from __future__ import annotations

import ipaddress
import struct

from hypothesis import given
from hypothesis import strategies as st

from v2gtool.pcap.link import IPPROTO_TCP, IPPROTO_UDP
from v2gtool.pcap.synth import internet_checksum, ipv6, tcp, udp


def word_sum_checksum(data: bytes) -> int:
    """RFC 1071 as written: add the 16-bit words, fold the carries back in, complement."""
    padded = data + b"\x00" * (len(data) % 2)
    total = sum(struct.unpack(f">{len(padded) // 2}H", padded))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


@given(st.binary(max_size=300))
def test_checksum_is_rfc1071(data: bytes) -> None:
    assert internet_checksum(data) == word_sum_checksum(data)


@given(st.integers(1, 0xFFFF))
def test_checksum_of_words_summing_to_a_multiple_of_ffff(word: int) -> None:
    """One's complement has two zeros: a non-zero sum that is a multiple of 0xFFFF is 0xFFFF, not 0."""
    data = struct.pack(">HH", word, 0xFFFF - word) if word < 0xFFFF else b"\xff\xff"
    assert internet_checksum(data) == word_sum_checksum(data) == 0


ADDRESSES = st.builds(lambda n: str(ipaddress.IPv6Address(n)), st.integers(0, 2**128 - 1))


@given(ADDRESSES, ADDRESSES, st.integers(0, 0xFFFF), st.integers(0, 0xFFFF), st.binary(max_size=200),
       st.booleans())
def test_transport_checksum_verifies(source: str, destination: str, sport: int, dport: int, payload: bytes,
                                     is_tcp: bool) -> None:
    """A receiver sums pseudo-header and segment, checksum included, and gets 0xFFFF (RFC 1071)."""
    protocol = IPPROTO_TCP if is_tcp else IPPROTO_UDP
    segment = tcp(sport, dport, 1, 2, 0x18, payload) if is_tcp else udp(sport, dport, payload)
    packet = ipv6(source, destination, protocol, segment)
    carried = packet[40:]
    pseudo_header = packet[8:40] + struct.pack(">IxxxB", len(carried), protocol)
    assert internet_checksum(pseudo_header + carried) == 0
    offset = 16 if is_tcp else 6
    assert carried[:offset] + carried[offset + 2:] == segment[:offset] + segment[offset + 2:]  # only the checksum
    if not is_tcp:
        assert carried[6:8] != b"\x00\x00"  # zero is "no checksum", which IPv6 forbids for UDP


def test_a_udp_checksum_that_computes_to_zero_is_sent_as_ffff() -> None:
    """RFC 768: a computed zero is transmitted as all ones (zero would mean "no checksum")."""
    payload = b"\xf7\x1d"  # chosen so that pseudo-header and datagram sum to 0xFFFF
    datagram = udp(1000, 2000, payload)
    packet = ipv6("fe80::1", "fe80::2", IPPROTO_UDP, datagram)
    pseudo_header = packet[8:40] + struct.pack(">IxxxB", len(datagram), IPPROTO_UDP)
    assert internet_checksum(pseudo_header + datagram) == 0  # the computed checksum is zero ...
    assert packet[46:48] == b"\xff\xff"  # ... and goes out as 0xFFFF
