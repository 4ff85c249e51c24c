"""The dissector's in-order shortcut yields exactly the records of the general path, which stays the reference.

Crafted captures mix what the shortcut takes (plain Ethernet/IPv6/TCP segments continuing a known
direction) with everything it must leave to the general parsers and TCPReassembler.segment:
retransmissions, reordering, overlaps, gaps, 802.1Q tags, SYN-less starts, FIN/RST, reused ports,
bad V2GTP headers and several interleaved connections.
"""

from __future__ import annotations

import dataclasses
import io
import itertools
import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.pcap.session import dc_session, write_session
from v2gtool import v2gtp
from v2gtool.pcap.dissect import Dissector, _V2GTPStream
from v2gtool.pcap.link import (
    ETHERTYPE_IPV6,
    IPPROTO_TCP,
    LINKTYPE_ETHERNET,
    TCP_ACK,
    TCP_RST,
    PacketError,
    PlainTCPFrame,
    ip_packet,
    link_frame,
    plain_tcp_frame,
    tcp_segment,
)
from v2gtool.pcap.reader import CapturedPacket, read_capture
from v2gtool.pcap.records import (
    EVCC,
    Frame,
    KeyDisclosed,
    ProtocolError,
    SdpMessage,
    SlacMessage,
    TLSSession,
    TraceRecord,
    V2GMessage,
)
from v2gtool.pcap.synth import PcapWriter, TCPSession, ethernet, ipv6, tcp

_EXCHANGE = dc_session([0.1, 0.1])  # SAP, SessionSetup and two DC_ChargeLoop pairs: (offset, from EVCC, frame)
_ACTIONS = ("whole", "split", "reversed", "retransmit", "overlap", "gap", "twice", "empty", "vlan", "garbage",
            "reset", "reopen")


class _GeneralPath(Dissector):
    """The reference: every packet through the general parsers and TCPReassembler.segment."""

    def _in_order(self, number: int, t: float, data: bytes, plain: PlainTCPFrame,
                  out: list[TraceRecord]) -> Frame | None:
        return None


class _Counting(Dissector):
    """The dissector as it is, counting the packets the shortcut took."""

    shortcuts = 0

    def _in_order(self, number: int, t: float, data: bytes, plain: PlainTCPFrame,
                  out: list[TraceRecord]) -> Frame | None:
        frame = super()._in_order(number, t, data, plain, out)
        self.shortcuts += frame is not None
        return frame


def _records(dissector: Dissector, packets: list[CapturedPacket]) -> list[TraceRecord]:
    records: list[TraceRecord] = []
    for packet in packets:
        records += dissector.packet(packet)
    return records + dissector.finish()


def _assert_same_records(packets: list[CapturedPacket]) -> int:
    """Both paths give equal records (same classes, fields and JSON lines); return the shortcuts taken."""
    reference = _records(_GeneralPath(), packets)
    dissector = _Counting()
    records = _records(dissector, packets)
    assert [type(r) for r in records] == [type(r) for r in reference]
    assert records == reference
    assert [r.to_json() for r in records] == [r.to_json() for r in reference]
    return dissector.shortcuts


def _control(session: TCPSession, t: float, from_evcc: bool, flags: int) -> None:
    """A segment with only *flags* (e.g. RST) at the sender's sequence number."""
    sender, receiver = (session.evcc, session.secc) if from_evcc else (session.secc, session.evcc)
    segment = tcp(sender.port, receiver.port, sender.seq, receiver.seq, flags)
    session.writer.write(t, ethernet(sender.mac, receiver.mac, ETHERTYPE_IPV6,
                                     ipv6(sender.address, receiver.address, IPPROTO_TCP, segment)))


def _emit(session: TCPSession, t: float, from_evcc: bool, data: bytes, action: str, cut: int) -> None:
    """Send one V2GTP frame the way *action* says; *cut* (1 .. len-1) is where it is split."""
    if action == "split":
        session.segment(t, from_evcc, data[:cut], 0)
        session.segment(t, from_evcc, data[cut:], cut)
    elif action == "reversed":
        session.segment(t, from_evcc, data[cut:], cut)
        session.segment(t, from_evcc, data[:cut], 0)
    elif action == "retransmit":
        session.segment(t, from_evcc, data, 0)
        session.segment(t, from_evcc, data, 0)
    elif action == "overlap":
        session.segment(t, from_evcc, data[:cut + 1], 0)
        session.segment(t, from_evcc, data[cut - 1:], cut - 1)
    elif action == "gap":
        session.segment(t, from_evcc, data[:cut], 0)  # the rest never reaches the capture
    elif action == "twice":
        session.send(t, from_evcc, data + data)
        return
    elif action == "garbage":
        session.send(t, from_evcc, b"\x02\xfd\x80\x04\x00\x00\x00\x01X" + data)
        return
    else:
        session.send(t, from_evcc, data)
        return
    session.advance(from_evcc, len(data))


@st.composite
def _captures(draw: st.DrawFn) -> tuple[list[CapturedPacket], str]:
    """Interleaved sessions, each message sent by a drawn action; returns the packets and a description."""
    out = io.BytesIO()
    writer = PcapWriter(out)
    count = draw(st.integers(1, 3))
    sessions = []
    for index in range(count):
        session = TCPSession(writer)
        session.evcc.port += index
        session.evcc.seq = draw(st.integers(0, 2**32 - 1))  # sequence numbers wrap around 2^32
        session.secc.seq = draw(st.integers(0, 2**32 - 1))
        if draw(st.booleans()):
            session.open(0.0)  # otherwise the capture starts mid-connection
        sessions.append(session)
    steps = draw(st.lists(st.tuples(st.integers(0, count - 1), st.sampled_from(_ACTIONS), st.floats(0.01, 0.99)),
                          max_size=14))
    sent = [0] * count
    tagged: set[int] = set()  # packet numbers that get an 802.1Q tag
    for step, (index, action, where) in enumerate(steps):
        session, t = sessions[index], 1.0 + step / 100
        _, from_evcc, data = _EXCHANGE[sent[index] % len(_EXCHANGE)]
        sent[index] += 1
        if action == "empty":
            session.segment(t, not from_evcc, b"", 0)  # a pure ACK
            continue
        if action == "reset":
            _control(session, t, from_evcc, TCP_RST | TCP_ACK)  # later segments belong to a closed stream
        elif action == "reopen":
            session.evcc.seq += 1000
            session.open(t)  # the same ports, a new SYN: a new TCP stream
        first = writer.count + 1
        _emit(session, t, from_evcc, data, action, max(1, min(len(data) - 1, round(len(data) * where))))
        if action == "vlan":
            tagged.update(range(first, writer.count + 1))
    for session in sessions:
        if draw(st.booleans()):
            session.close(2.0)
        elif draw(st.booleans()):
            _control(session, 2.0, True, TCP_RST | TCP_ACK)
    packets = []
    for packet in read_capture(io.BytesIO(out.getvalue())):
        if packet.number in tagged:
            packet = packet._replace(data=packet.data[:12] + b"\x81\x00\x00\x07" + packet.data[12:])
        packets.append(packet)
    return packets, f"{count} sessions, steps {steps}"


@settings(max_examples=300, deadline=None)
@given(_captures())
def test_shortcut_and_general_path_give_the_same_records(case: tuple[list[CapturedPacket], str]) -> None:
    packets, _ = case
    _assert_same_records(packets)


def test_a_plain_session_takes_the_shortcut_for_every_message() -> None:
    """SDP, SYN, SYN-ACK and the close take the general path; every message segment and the ACK that
    completes the handshake take the shortcut."""
    exchange = dc_session([0.1, 0.1, 0.1])
    packets = list(read_capture(io.BytesIO(write_session(exchange))))
    assert _assert_same_records(packets) == len(exchange) + 1


def test_shortcut_is_left_after_a_reordered_segment_and_taken_again() -> None:
    exchange = dc_session([0.1, 0.1, 0.1])
    shuffled = exchange[4][2]

    def reorder(session: TCPSession, t: float, from_evcc: bool, data: bytes) -> None:
        _emit(session, t, from_evcc, data, "reversed" if data is shuffled else "whole", 10)

    packets = list(read_capture(io.BytesIO(write_session(exchange, emit=reorder))))
    plain = list(read_capture(io.BytesIO(write_session(exchange))))
    assert _messages(_records(Dissector(), packets)) == _messages(_records(Dissector(), plain))
    assert _assert_same_records(packets) == len(exchange) + 1 - 1  # both halves of the reordered one: general


def _messages(records: list[TraceRecord]) -> list[tuple[str, str, str]]:
    return [(r.sender, r.namespace, r.message) for r in records if isinstance(r, V2GMessage)]


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=0, max_size=120), st.integers(0, 255), st.integers(0, 0xFFFF))
def test_plain_tcp_frame_agrees_with_the_general_parsers(tail: bytes, offset_byte: int, length: int) -> None:
    """Whatever the bytes, the one-unpack walk either declines or finds what the layer parsers find."""
    header = bytes(12) + struct.pack(">H", ETHERTYPE_IPV6) + struct.pack(">IHBB", 0x60000000, length, IPPROTO_TCP, 64)
    data = header + bytes(32) + struct.pack(">HHIIBB", 50000, 61851, 7, 9, offset_byte, 0x18) + tail
    for candidate in (data, data[:60], tail):
        plain = plain_tcp_frame(candidate)
        if plain is None:
            continue
        link = link_frame(LINKTYPE_ETHERNET, candidate)
        ip = ip_packet(link.ethertype, link.payload)
        seg = tcp_segment(ip.payload)
        assert (not link.vlan, ip.protocol, seg.seq, seg.flags) == (True, IPPROTO_TCP, plain.seq, plain.flags)
        assert candidate[plain.start:plain.end] == seg.payload
        assert plain.endpoints == candidate[22:54] + struct.pack(">HH", seg.source_port, seg.destination_port)


def test_plain_tcp_frame_declines_what_the_general_parsers_report() -> None:
    data = list(read_capture(io.BytesIO(write_session(dc_session([])))))[-3].data  # a message segment
    assert plain_tcp_frame(data) is not None
    for broken in (data[:-1], data[:70], data[:12] + b"\x81\x00\x00\x07" + data[12:]):
        assert plain_tcp_frame(broken) is None
    with pytest.raises(PacketError):
        ip_packet(ETHERTYPE_IPV6, data[14:-1])


_FRAMES = [v2gtp.encode_frame(pt, payload) for pt, payload in (
    (0x8001, b"\x80\x00"), (0x8004, bytes(range(40))), (0xA000, b""), (0x8002, b"\x01\xfe\x01\xfe"))]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.sampled_from(_FRAMES), st.binary(max_size=12)), max_size=8),
       st.lists(st.integers(0, 400), max_size=8))
def test_v2gtp_framing_does_not_depend_on_segmentation(parts: list[bytes], cuts: list[int]) -> None:
    """Frames cut from whole segments equal those from any split of the same stream, garbage included."""
    stream = b"".join(parts)
    whole = _V2GTPStream()
    expected, _ = whole.feed(stream)
    split = _V2GTPStream()
    frames: list[tuple[int, bytes]] = []
    bounds = sorted({0, len(stream), *(c for c in cuts if c < len(stream))})
    for start, end in itertools.pairwise(bounds):
        frames += split.feed(stream[start:end])[0]
    assert frames == expected
    if all(part in _FRAMES for part in parts):
        assert expected == [(v2gtp.parse_header(f)[0], f[8:]) for f in parts]


_RECORDS: list[tuple[type[TraceRecord], dict[str, Any]]] = [
    (Frame, {"t": 1.5, "frame": 3, "length": 90, "protocols": "eth:ipv6:tcp", "source": "fe80::1",
             "destination": "fe80::2", "info": "50000 → 61851", "tcp_stream": 0, "vlan": None}),
    (V2GMessage, {"t": 1.5, "frame": 3, "tcp_stream": 0, "sender": EVCC, "namespace": "iso20-dc",
                  "payload_type": 0x8004, "message": "DC_ChargeLoopReq", "document": {"DC_ChargeLoopReq": {}},
                  "namespace_source": "payload_type", "tls": False}),
    (SlacMessage, {"t": 0.0, "frame": 1, "source": None, "destination": None, "mme": {"name": "x"}, "vlan": 4}),
    (SdpMessage, {"t": 0.0, "frame": 1, "message": "SDPReq", "source": "a", "destination": "b", "fields": {}}),
    (TLSSession, {"t": 0.0, "frame": 1, "tcp_stream": 0, "version": "TLS 1.3", "cipher_suite": "x",
                  "client_random": "00", "decrypted": False}),
    (KeyDisclosed, {"t": 0.0, "frame": 1, "label": "CLIENT_RANDOM", "client_random": "00"}),
    (ProtocolError, {"t": 0.0, "frame": 1, "layer": "tcp", "message": "m", "tcp_stream": None}),
]


@pytest.mark.parametrize(("cls", "fields"), _RECORDS, ids=[cls.__name__ for cls, _ in _RECORDS])
def test_records_of_fields_equal_the_dataclass(cls: type[TraceRecord], fields: dict[str, Any]) -> None:
    assert list(fields) == [f.name for f in dataclasses.fields(cls)]
    record, reference = cls.of_fields(dict(fields)), cls(**fields)
    assert type(record) is cls and record == reference and repr(record) == repr(reference)
    assert record.to_json() == reference.to_json()
    assert dataclasses.replace(record) == reference
    if cls is not V2GMessage and cls is not SlacMessage and cls is not SdpMessage:  # no dict field: hashable
        assert hash(record) == hash(reference)
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.frame = 9  # type: ignore[misc]


def test_remembered_directions_stay_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Directions of closed connections are forgotten once the table is full; records do not change."""
    monkeypatch.setattr("v2gtool.pcap.dissect._MAX_FLOWS", 4)
    out = io.BytesIO()
    writer = PcapWriter(out)
    for index in range(12):  # one connection after the other, each opened, used and closed
        session = TCPSession(writer)
        session.evcc.port += index
        session.open(float(index))
        for _, from_evcc, data in _EXCHANGE[:2]:
            session.send(index + 0.5, from_evcc, data)
        session.close(index + 0.9)
    packets = list(read_capture(io.BytesIO(out.getvalue())))
    dissector = Dissector()
    sizes = []
    for packet in packets:
        dissector.packet(packet)
        sizes.append(len(dissector._flows))
    assert max(sizes) <= 4 + 2  # the limit, and the two directions of the one open connection
    assert _assert_same_records(packets) == 12 * 3  # two messages and the handshake's ACK each
