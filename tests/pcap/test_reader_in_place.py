"""The pcap reader reads records in place from whatever chunks it is fed: packets, counts and the
file offsets its errors name do not depend on where the chunks end."""

from __future__ import annotations

import io
import itertools
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2gtool.pcap.reader import MAX_BLOCK_LENGTH, CapturedPacket, CaptureError, CaptureParser
from v2gtool.pcap.synth import PcapWriter


def _pcap(frames: list[bytes]) -> bytes:
    out = io.BytesIO()
    writer = PcapWriter(out)
    for number, frame in enumerate(frames):
        writer.write(1_700_000_000 + number * 0.25, frame)
    return out.getvalue()


def _feed(data: bytes, cuts: list[int]) -> tuple[CaptureParser, list[CapturedPacket]]:
    parser = CaptureParser()
    packets: list[CapturedPacket] = []
    bounds = sorted({0, len(data), *(c for c in cuts if c < len(data))})
    for start, end in itertools.pairwise(bounds):
        packets += parser.feed(data[start:end])
    return parser, packets


@settings(max_examples=150, deadline=None)
@given(st.lists(st.binary(max_size=80), max_size=12), st.lists(st.integers(0, 1200), max_size=20))
def test_any_chunking_of_a_pcap_yields_the_same_packets(frames: list[bytes], cuts: list[int]) -> None:
    data = _pcap(frames)
    parser, packets = _feed(data, cuts)
    parser.close()
    assert [(p.number, p.data, p.original_length) for p in packets] == \
        [(n, f, len(f)) for n, f in enumerate(frames, 1)]
    assert [p.timestamp for p in packets] == [p.timestamp for p in CaptureParser().feed(data)]
    assert parser.packets_read == len(frames)


@pytest.mark.parametrize("cuts", [[], [30], [24, 40, 41, 90], list(range(0, 200, 7))])
def test_implausible_record_is_named_by_its_file_offset(cuts: list[int]) -> None:
    data = _pcap([b"a" * 10, b"b" * 20])
    bad = len(data)
    data += struct.pack("<IIII", 1, 0, MAX_BLOCK_LENGTH + 1, 1)
    with pytest.raises(CaptureError, match=f"^pcap record at byte {bad}: captured length {MAX_BLOCK_LENGTH + 1} "):
        _feed(data, cuts)


@pytest.mark.parametrize("cuts", [[], [50], list(range(0, 200, 5))])
def test_truncated_record_is_named_by_its_file_offset(cuts: list[int]) -> None:
    data = _pcap([b"a" * 10, b"b" * 20])
    last = len(data) - 16 - 20
    parser, packets = _feed(data[:-3], cuts)
    assert len(packets) == 1
    with pytest.raises(CaptureError, match=f"^capture truncated at byte {len(data) - 3}: the record at byte "
                                           f"{last} after packet 1 is incomplete \\(33 bytes\\)$"):
        parser.close()
