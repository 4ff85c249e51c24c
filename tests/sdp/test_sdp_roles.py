"""SDP client retries and server answers on a virtual clock (no sockets)."""

from __future__ import annotations

import contextlib
import ipaddress
import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from v2gtool.sdp import (
    SDP_MAX_REQUESTS,
    SDP_REQUEST_TIMEOUT,
    SdpClient,
    SdpError,
    SdpFailed,
    SdpMalformedDatagram,
    SdpRequest,
    SdpRequestSent,
    SdpResponse,
    SdpServer,
    Security,
    TransportProtocol,
    decode_response,
    encode_request,
    encode_response,
    result_from_json,
)

SECC = ipaddress.IPv6Address("fe80::2")
RESPONSE = SdpResponse(SECC, 61000, Security.TLS)


def test_client_sends_50_requests_250_ms_apart_then_fails() -> None:
    client = SdpClient(Security.TLS)
    first = client.start(0.0)
    assert first == encode_request(SdpRequest(Security.TLS))
    sent_at = [0.0]
    now = 0.0
    while client.deadline is not None:
        assert client.timer_expired(client.deadline - 0.001) is None  # not yet due: nothing happens
        now = client.deadline
        if client.timer_expired(now) is not None:
            sent_at.append(now)
    assert len(sent_at) == SDP_MAX_REQUESTS
    assert [b - a for a, b in itertools.pairwise(sent_at)] == pytest.approx(
        [SDP_REQUEST_TIMEOUT] * (SDP_MAX_REQUESTS - 1)
    )
    assert client.failed
    events = client.take_events()
    assert [e.attempt for e in events if isinstance(e, SdpRequestSent)] == list(range(1, 51))
    assert events[-1] == SdpFailed(t=pytest.approx(SDP_MAX_REQUESTS * SDP_REQUEST_TIMEOUT), attempts=50)


def test_client_result_times_the_answered_try() -> None:
    client = SdpClient(Security.NO_TLS, request_timeout=0.25, max_requests=5)
    client.start(10.0)
    assert client.timer_expired(10.25) is not None
    assert client.timer_expired(10.5) is not None
    result = client.datagram_received(encode_response(RESPONSE), "fe80::2", 10.6)
    assert result is not None
    assert (result.attempts, result.source) == (3, "fe80::2")
    assert result.elapsed == pytest.approx(0.6)
    assert result.round_trip == pytest.approx(0.1)
    assert result.security_differs  # asked NO_TLS, the SECC offered TLS
    assert client.deadline is None
    assert client.timer_expired(11.0) is None  # finished: no more requests


def test_client_counts_malformed_and_keeps_waiting() -> None:
    client = SdpClient(Security.TLS)
    client.start(0.0)
    assert client.datagram_received(b"\x01\xfe\x90\x01\x00\x00\x00\x01\x00", "fe80::9", 0.1) is None
    assert client.deadline == pytest.approx(0.25)
    malformed = [e for e in client.take_events() if isinstance(e, SdpMalformedDatagram)]
    assert [(e.count, e.source) for e in malformed] == [(1, "fe80::9")]
    result = client.datagram_received(encode_response(RESPONSE), "fe80::2", 0.2)
    assert result is not None and result.malformed == 1


@pytest.mark.parametrize(
    ("address", "transport", "reason"),
    [
        ("ff02::1", TransportProtocol.TCP, "SECC address ff02::1 is not an IPv6 link-local unicast address"),
        ("::", TransportProtocol.TCP, "SECC address :: is not"),
        ("2001:db8::1", TransportProtocol.TCP, "SECC address 2001:db8::1 is not"),
        ("::ffff:1.2.3.4", TransportProtocol.TCP, "is not an IPv6 link-local unicast address"),
        ("fe80::2", TransportProtocol.UDP, "transport UDP, the EVCC connects over TCP only"),
    ],
)
def test_client_skips_a_response_it_cannot_connect_to(address: str, transport: TransportProtocol,
                                                      reason: str) -> None:
    client = SdpClient(Security.TLS)
    client.start(0.0)
    unusable = SdpResponse(ipaddress.IPv6Address(address), 61000, Security.TLS, transport)
    assert client.datagram_received(encode_response(unusable), "fe80::9", 0.1) is None
    assert client.deadline == pytest.approx(0.25)  # still waiting for a usable SECC
    (malformed,) = [e for e in client.take_events() if isinstance(e, SdpMalformedDatagram)]
    assert reason in malformed.reason
    assert client.datagram_received(encode_response(RESPONSE), "fe80::2", 0.2) is not None


def test_client_ignores_datagrams_before_start_and_after_result() -> None:
    client = SdpClient(Security.TLS)
    assert client.datagram_received(encode_response(RESPONSE), "fe80::2", 0.0) is None
    client.start(0.0)
    assert client.datagram_received(encode_response(RESPONSE), "fe80::2", 0.1) is not None
    assert client.datagram_received(b"junk", "fe80::2", 0.2) is None
    assert client.malformed == 0


def test_client_rejects_a_second_start() -> None:
    client = SdpClient(Security.TLS)
    client.start(0.0)
    with pytest.raises(SdpError, match="already started"):
        client.start(0.1)


@pytest.mark.parametrize(
    ("supported", "asked", "answered"),
    [
        ({Security.TLS}, Security.TLS, Security.TLS),
        ({Security.TLS}, Security.NO_TLS, Security.TLS),
        ({Security.NO_TLS}, Security.TLS, Security.NO_TLS),
        ({Security.TLS, Security.NO_TLS}, Security.NO_TLS, Security.NO_TLS),
        ({Security.TLS, Security.NO_TLS}, Security.TLS, Security.TLS),
    ],
)
def test_server_offers_a_supported_mode(
    supported: set[Security], asked: Security, answered: Security
) -> None:
    server = SdpServer(SECC, 61000, frozenset(supported))
    reply = server.datagram_received(encode_request(SdpRequest(asked, TransportProtocol.UDP)), "fe80::1", 0.0)
    assert reply is not None
    assert decode_response(reply) == SdpResponse(SECC, 61000, answered, TransportProtocol.TCP)


@given(st.sampled_from(Security), st.floats(0, 0.2), st.integers(1, 50))
def test_result_json_round_trip(security: Security, wait: float, attempts: int) -> None:
    client = SdpClient(security)
    client.start(0.0)
    for _ in range(attempts - 1):
        assert client.deadline is not None
        client.timer_expired(client.deadline)
    result = client.datagram_received(encode_response(RESPONSE), "fe80::2", client.deadline - 0.25 + wait)
    assert result is not None and result.attempts == attempts
    assert result_from_json(result.to_json()) == result


@pytest.mark.parametrize("record", [[], {"event": "Other"}, {"event": "SdpResult", "address": "x"}])
def test_result_from_json_rejects_other_records(record: object) -> None:
    with pytest.raises(SdpError):
        result_from_json(record)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
record_keys = st.sampled_from(
    ["address", "interface", "port", "security", "transport", "requested_security", "source", "attempts",
     "elapsed", "round_trip", "malformed"]
)  # fmt: skip


@given(st.dictionaries(record_keys, json_values))
def test_result_from_json_raises_only_sdp_error_on_any_record(fields: dict[str, object]) -> None:
    with contextlib.suppress(SdpError):
        result_from_json({"event": "SdpResult", **fields})
