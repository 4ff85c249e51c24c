"""SDP message codec: round trips, exact bytes, and untrusted input (ISO 15118-2/-20 clause 7.10.1)."""

from __future__ import annotations

import contextlib
import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from v2gtool.sdp import (
    TCP_PORT_RANGE,
    SdpError,
    SdpRequest,
    SdpResponse,
    SdpServer,
    Security,
    TransportProtocol,
    decode_request,
    decode_response,
    encode_request,
    encode_response,
)
from v2gtool.v2gtp import encode_frame

requests = st.builds(SdpRequest, st.sampled_from(Security), st.sampled_from(TransportProtocol))
responses = st.builds(
    SdpResponse,
    st.binary(min_size=16, max_size=16).map(ipaddress.IPv6Address),
    st.sampled_from(TCP_PORT_RANGE),
    st.sampled_from(Security),
    st.sampled_from(TransportProtocol),
)
sdp_types = st.sampled_from([0x9000, 0x9001])


@given(requests)
def test_request_round_trip(request: SdpRequest) -> None:
    assert decode_request(encode_request(request)) == request


@given(responses)
def test_response_round_trip(response: SdpResponse) -> None:
    assert decode_response(encode_response(response)) == response


def test_request_bytes() -> None:
    assert encode_request(SdpRequest(Security.NO_TLS)) == bytes.fromhex("01fe9000000000021000")


def test_response_bytes() -> None:
    response = SdpResponse(ipaddress.IPv6Address("fe80::1"), 64109, Security.TLS, TransportProtocol.TCP)
    assert encode_response(response) == (
        bytes.fromhex("01fe900100000014")
        + ipaddress.IPv6Address("fe80::1").packed
        + bytes.fromhex("fa6d0000")
    )


@pytest.mark.parametrize(
    ("datagram", "message"),
    [
        (encode_frame(0x9000, b"\x00"), "SDP request payload is 1 bytes, expected 2"),
        (encode_frame(0x9000, b"\x20\x00"), "SDP request byte 0: Security 0x20 is not defined"),
        (encode_frame(0x9000, b"\x00\x01"), "SDP request byte 1: TransportProtocol 0x01 is not defined"),
        (encode_frame(0x9001, b"\x00\x00"), "V2GTP payload type 0x9001, expected 0x9000"),
        (b"\x02\xfd\x90\x00\x00\x00\x00\x02\x00\x00", "V2GTP byte 0: protocol version 0x02, expected 0x01"),
    ],
)
def test_malformed_request_is_named(datagram: bytes, message: str) -> None:
    with pytest.raises(SdpError, match=f"^{message}$"):
        decode_request(datagram)


def test_response_port_outside_dynamic_range() -> None:
    payload = ipaddress.IPv6Address("fe80::1").packed + (15118).to_bytes(2, "big") + b"\x00\x00"
    with pytest.raises(SdpError, match=r"^SDP response: TCP port 15118 must be a Dynamic Port \(49152-65535\)$"):
        decode_response(encode_frame(0x9001, payload))


@given(st.binary(max_size=64))
def test_decoders_raise_only_sdp_error_on_random_bytes(data: bytes) -> None:
    for decoder in (decode_request, decode_response):
        with contextlib.suppress(SdpError):
            decoder(data)


@given(sdp_types, st.binary(max_size=24))
def test_decoders_raise_only_sdp_error_on_framed_garbage(payload_type: int, payload: bytes) -> None:
    datagram = encode_frame(payload_type, payload)
    for decoder in (decode_request, decode_response):
        with contextlib.suppress(SdpError):
            decoder(datagram)


@given(st.lists(st.binary(max_size=32), max_size=10))
def test_server_counts_every_malformed_datagram_and_never_raises(datagrams: list[bytes]) -> None:
    server = SdpServer(ipaddress.IPv6Address("fe80::1"), 50000, frozenset({Security.TLS}))
    dropped = 0
    for data in datagrams:
        if server.datagram_received(data, "fe80::2", 0.0) is None:
            dropped += 1
    assert server.malformed == dropped
