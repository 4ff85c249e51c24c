"""V2GTP framing (ISO 15118-20 Table 12): header checks, payload types, reassembly."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from v2gtool import v2gtp
from v2gtool.v2gtp import FrameReader, PayloadType, V2GTPError, decode_frame, encode_frame

PAYLOAD_TYPES = [int(p) for p in PayloadType] + [0xA000, 0xFFFF]


@given(st.sampled_from(PAYLOAD_TYPES), st.binary(max_size=300))
def test_encode_decode_round_trip(payload_type: int, payload: bytes) -> None:
    frame = encode_frame(payload_type, payload)
    assert frame[:2] == b"\x01\xfe"
    assert int.from_bytes(frame[4:8], "big") == len(payload)
    decoded = decode_frame(frame)
    assert (decoded.payload_type, decoded.payload) == (payload_type, payload)


def test_sdp_request_bytes_match_the_wire() -> None:
    # An SDP request as seen in captures of the iso15118 EVCC: no TLS (0x10), TCP (0x00).
    assert encode_frame(PayloadType.SDP_REQUEST, b"\x10\x00").hex() == "01fe9000000000021000"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"\x01\xfe\x80", "truncated"),
        (b"\x02\xfd\x80\x01\x00\x00\x00\x00", "byte 0: protocol version 0x02"),
        (b"\x01\xff\x80\x01\x00\x00\x00\x00", "byte 1: inverse protocol version 0xFF"),
        (b"\x01\xfe\x70\x00\x00\x00\x00\x00", "unknown payload type 0x7000"),
        (b"\x01\xfe\x80\x01\x00\x01\x00\x01", "exceeds the maximum"),
        (b"\x01\xfe\x80\x01\x00\x00\x00\x02\x80", "announces 2 payload bytes but 1 follow"),
    ],
)
def test_malformed_headers_are_named(data: bytes, message: str) -> None:
    with pytest.raises(V2GTPError, match=message):
        decode_frame(data)


def test_oversize_payload_is_refused_on_encode() -> None:
    with pytest.raises(V2GTPError, match="exceeds"):
        encode_frame(PayloadType.EXI, b"\x00" * 11, max_length=10)


@given(st.lists(st.binary(max_size=40), max_size=6), st.integers(min_value=1, max_value=7))
def test_reader_reassembles_any_segmentation(payloads: list[bytes], chunk: int) -> None:
    stream = b"".join(encode_frame(PayloadType.ISO20_DC_MAINSTREAM, p) for p in payloads)
    reader = FrameReader()
    frames = []
    for i in range(0, len(stream), chunk):
        frames += reader.feed(stream[i : i + chunk])
    assert [f.payload for f in frames] == payloads
    assert reader.pending == 0


def test_every_iso20_mainstream_type_maps_to_a_namespace() -> None:
    for p in range(0x8002, 0x8007):
        assert PayloadType(p) in v2gtp.ISO20_PAYLOAD_NAMESPACES
