"""TCP reassembly: any order, retransmissions, overlaps and interleaving deliver each byte once, in order."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from v2gtool.pcap.link import TCP_ACK, TCP_FIN, TCP_SYN, TCPSegment
from v2gtool.pcap.tcp import (
    CLIENT_TO_SERVER,
    MAX_CLOSED_CONNECTIONS,
    SERVER_TO_CLIENT,
    Endpoint,
    StreamClosed,
    StreamData,
    StreamEvent,
    StreamGap,
    StreamOpened,
    TCPReassembler,
)

EV = Endpoint("fe80::1", 50000)
SE = Endpoint("fe80::2", 15118)


def _seg(seq: int, payload: bytes = b"", flags: int = TCP_ACK) -> TCPSegment:
    return TCPSegment(0, 0, seq % (1 << 32), 0, flags, payload)


def _delivered(events: list[StreamEvent], stream: int = 0, direction: int = CLIENT_TO_SERVER) -> bytes:
    return b"".join(e.data for e in events if isinstance(e, StreamData) and e.stream == stream
                    and e.direction == direction)


@st.composite
def _segmented(draw: st.DrawFn) -> tuple[bytes, int, list[tuple[int, int]]]:
    """A stream, its ISN and a list of (start, end) segments covering it, shuffled, duplicated, overlapping."""
    data = draw(st.binary(min_size=1, max_size=400))
    isn = draw(st.integers(0, (1 << 32) - 1))
    cuts = sorted(set(draw(st.lists(st.integers(1, len(data)), max_size=12))) | {0, len(data)})
    pieces = list(itertools.pairwise(cuts))
    extra = draw(st.lists(st.tuples(st.integers(0, len(data) - 1), st.integers(1, 64)), max_size=6))
    pieces += [(start, min(len(data), start + length)) for start, length in extra]  # overlaps, retransmissions
    order = draw(st.permutations(pieces))
    return data, isn, list(order)


@settings(max_examples=300, deadline=None)
@given(_segmented())
def test_reassembly_delivers_the_stream_exactly_once(case: tuple[bytes, int, list[tuple[int, int]]]) -> None:
    data, isn, pieces = case
    tcp = TCPReassembler()
    events = tcp.segment(1, 0.0, EV, SE, _seg(isn, flags=TCP_SYN))[1]
    for number, (start, end) in enumerate(pieces, 2):
        events += tcp.segment(number, 0.0, EV, SE, _seg(isn + 1 + start, data[start:end]))[1]
    events += tcp.close(99, 1.0)
    assert _delivered(events) == data  # the seq may wrap around 2^32: ISNs are drawn over the whole range
    assert not [e for e in events if isinstance(e, StreamGap)]


def test_missing_segment_is_a_gap_with_offset_and_length() -> None:
    tcp = TCPReassembler()
    events = tcp.segment(1, 0.0, EV, SE, _seg(100, flags=TCP_SYN))[1]
    events += tcp.segment(2, 0.0, EV, SE, _seg(101, b"abcd"))[1]
    events += tcp.segment(3, 0.0, EV, SE, _seg(111, b"klmn"))[1]  # bytes 4..9 never captured
    events += tcp.segment(4, 0.0, EV, SE, _seg(115, b"", TCP_FIN | TCP_ACK))[1]
    events += tcp.segment(5, 0.0, SE, EV, _seg(900, b"", TCP_FIN | TCP_ACK))[1]
    gaps = [e for e in events if isinstance(e, StreamGap)]
    assert [(g.offset, g.length, g.direction) for g in gaps] == [(4, 6, CLIENT_TO_SERVER)]
    assert _delivered(events) == b"abcdklmn"
    assert isinstance(events[-1], StreamClosed) and events[-1].reason == "closed"


def test_pending_limit_declares_the_hole_lost() -> None:
    tcp = TCPReassembler(max_pending=10)
    tcp.segment(1, 0.0, EV, SE, _seg(0, flags=TCP_SYN))[1]
    assert tcp.segment(2, 0.0, EV, SE, _seg(11, b"12345"))[1] == []
    events = tcp.segment(3, 0.0, EV, SE, _seg(16, b"678901"))[1]
    assert [(e.offset, e.length) for e in events if isinstance(e, StreamGap)] == [(0, 10)]
    assert _delivered(events) == b"12345678901"


def test_interleaved_connections_are_numbered_in_order_of_appearance() -> None:
    tcp = TCPReassembler()
    other = Endpoint("fe80::1", 50001)
    events = tcp.segment(1, 0.0, EV, SE, _seg(0, flags=TCP_SYN))[1]
    events += tcp.segment(2, 0.0, other, SE, _seg(500, flags=TCP_SYN))[1]
    events += tcp.segment(3, 0.0, SE, other, TCPSegment(0, 0, 7000, 501, TCP_SYN | TCP_ACK, b""))[1]
    events += tcp.segment(4, 0.0, other, SE, _seg(501, b"B1"))[1]
    events += tcp.segment(5, 0.0, EV, SE, _seg(1, b"A1"))[1]
    events += tcp.segment(6, 0.0, SE, other, _seg(7001, b"b1"))[1]
    events += tcp.segment(7, 0.0, other, SE, _seg(503, b"B2"))[1]
    opened = [e for e in events if isinstance(e, StreamOpened)]
    assert [(o.stream, o.client) for o in opened] == [(0, EV), (1, other)]
    assert _delivered(events, 0) == b"A1"
    assert _delivered(events, 1) == b"B1B2"
    assert _delivered(events, 1, SERVER_TO_CLIENT) == b"b1"


def test_syn_ack_first_makes_the_receiver_the_client() -> None:
    tcp = TCPReassembler()
    events = tcp.segment(1, 0.0, SE, EV, TCPSegment(0, 0, 10, 0, TCP_SYN | TCP_ACK, b""))[1]
    assert isinstance(events[0], StreamOpened) and events[0].client == EV


def test_port_reuse_after_close_starts_a_new_stream() -> None:
    tcp = TCPReassembler()
    tcp.segment(1, 0.0, EV, SE, _seg(0, flags=TCP_SYN))[1]
    tcp.segment(2, 0.0, EV, SE, _seg(1, b"", TCP_FIN | TCP_ACK))[1]
    tcp.segment(3, 0.0, SE, EV, _seg(50, b"", TCP_FIN | TCP_ACK))[1]
    events = tcp.segment(4, 0.0, EV, SE, _seg(1000, flags=TCP_SYN))[1]
    events += tcp.segment(5, 0.0, EV, SE, _seg(1001, b"new"))[1]
    assert [e.stream for e in events if isinstance(e, StreamOpened)] == [1]
    assert _delivered(events, 1) == b"new"


def test_capture_starting_mid_connection() -> None:
    tcp = TCPReassembler()
    events = tcp.segment(1, 0.0, EV, SE, _seg(4_294_967_290, b"0123456789"))[1]  # wraps past 2^32
    events += tcp.segment(2, 0.0, EV, SE, _seg(4, b"ab"))[1]
    events += tcp.segment(3, 0.0, EV, SE, _seg(4_294_967_280, b"old"))[1]  # older than the first seen
    assert _delivered(events) == b"0123456789ab"


def test_closed_connections_are_forgotten_beyond_the_limit() -> None:
    tcp = TCPReassembler()
    for port in range(MAX_CLOSED_CONNECTIONS + 10):
        client = Endpoint("fe80::1", 10000 + port)
        tcp.segment(1, 0.0, client, SE, _seg(0, flags=TCP_SYN))
        tcp.segment(2, 0.0, client, SE, _seg(1, b"x", TCP_FIN | TCP_ACK))
        tcp.segment(3, 0.0, SE, client, _seg(0, b"", TCP_FIN | TCP_ACK))
    assert len(tcp._connections) == MAX_CLOSED_CONNECTIONS
    stream, _ = tcp.segment(4, 0.0, SE, Endpoint("fe80::1", 10000 + MAX_CLOSED_CONNECTIONS + 9), _seg(1))
    assert stream == MAX_CLOSED_CONNECTIONS + 9  # a late ACK of a remembered connection keeps its stream


def test_an_ack_into_a_hole_declares_only_the_bytes_before_it_lost() -> None:
    """The SECC acknowledges 3 of the 6 missing bytes: those were received and never captured; the
    rest may still come, retransmitted, and is delivered when it does (RFC 9293 3.4)."""
    tcp = TCPReassembler()
    events = tcp.segment(1, 0.0, EV, SE, _seg(100, flags=TCP_SYN))[1]
    events += tcp.segment(2, 0.0, SE, EV, TCPSegment(0, 0, 900, 101, TCP_SYN | TCP_ACK, b""))[1]
    events += tcp.segment(3, 0.0, EV, SE, _seg(101, b"abcd"))[1]
    events += tcp.segment(4, 0.0, EV, SE, _seg(111, b"klmn"))[1]  # bytes 4..9 not (yet) captured
    events += tcp.segment(5, 0.0, SE, EV, TCPSegment(0, 0, 901, 108, TCP_ACK, b""))[1]  # up to byte 7
    events += tcp.segment(6, 0.0, EV, SE, _seg(108, b"hij"))[1]  # bytes 7..9, retransmitted
    gaps = [e for e in events if isinstance(e, StreamGap)]
    assert [(g.offset, g.length) for g in gaps] == [(4, 3)]
    assert _delivered(events) == b"abcdhijklmn"
