"""Property and fuzz tests: writer/reader round trip, and untrusted bytes at every dissector entry."""

from __future__ import annotations

import contextlib
import io

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.pcap.session import dc_session, write_session
from v2gtool import v2gtp
from v2gtool.errors import V2GToolError
from v2gtool.pcap.dissect import Dissector
from v2gtool.pcap.homeplug import dissect_mme
from v2gtool.pcap.reader import read_capture
from v2gtool.pcap.records import Frame
from v2gtool.pcap.sdp import sdp_fields
from v2gtool.pcap.synth import PcapWriter
from v2gtool.sdp import SdpError
from v2gtool.slac.mme import MmeDecodeError

_CAPTURE = write_session(dc_session([0.1, 0.2]))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 999_999), st.binary(max_size=200)),
                max_size=20))
def test_written_packets_read_back(packets: list[tuple[int, int, bytes]]) -> None:
    out = io.BytesIO()
    writer = PcapWriter(out)
    for seconds, micros, data in packets:
        writer.write(seconds + micros / 1e6, data)
    read = list(read_capture(io.BytesIO(out.getvalue())))
    assert [(p.number, p.data) for p in read] == [(i, d) for i, (_, _, d) in enumerate(packets, 1)]
    assert [round(p.timestamp * 1e6) for p in read] == [s * 1_000_000 + m for s, m, _ in packets]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120))
def test_fuzz_homeplug_only_packet_errors(data: bytes) -> None:
    for mmtype in (0x6064, 0x6065, 0x606A, 0x606E, 0x606F, 0x6076, 0x607C, 0x607D, 0x6086, 0x6009):
        with contextlib.suppress(MmeDecodeError):
            dissect_mme(b"\x01" + mmtype.to_bytes(2, "little") + b"\x00\x00" + data)  # MMV 1, MMTYPE, FMI
    with contextlib.suppress(MmeDecodeError):
        dissect_mme(data)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from([0x9000, 0x9001, 0x9002, 0x9003, 0x8001]), st.binary(max_size=30))
def test_fuzz_sdp_only_packet_errors(payload_type: int, payload: bytes) -> None:
    try:
        name, fields = sdp_fields(v2gtp.V2GTPFrame(payload_type, payload))
    except SdpError:
        return
    assert name in ("SDPReq", "SDPRes", "SDPReqWireless", "SDPResWireless") and fields


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(24, len(_CAPTURE) - 1), st.integers(0, 255)), min_size=1, max_size=8))
def test_fuzz_mutated_capture_yields_records_or_our_errors(flips: list[tuple[int, int]]) -> None:
    """Corrupt bytes anywhere after the file header: every packet still yields its Frame, errors are ours."""
    data = bytearray(_CAPTURE)
    for position, value in flips:
        data[position] = value
    dissector = Dissector()
    try:
        for packet in read_capture(io.BytesIO(bytes(data))):
            records = dissector.packet(packet)
            assert isinstance(records[0], Frame) and records[0].frame == packet.number
    except V2GToolError:
        pass
    dissector.finish()
