"""The handshake-message parser: structured hellos parse back; garbage raises only its own error."""

from __future__ import annotations

import contextlib

from hypothesis import given
from hypothesis import strategies as st

from v2gtool.pki.handshake import (
    ClientHello,
    HandshakeParseError,
    HandshakeTrace,
    parse_certificate,
    parse_certificate_request_schemes,
    parse_client_hello,
    parse_server_hello,
    parse_server_key_exchange,
)

u16 = st.integers(0, 0xFFFF)
u16s = st.lists(u16, min_size=1, max_size=20).map(tuple)


def vec(length_bytes: int, data: bytes) -> bytes:
    return len(data).to_bytes(length_bytes, "big") + data


def ext(ext_type: int, body: bytes) -> bytes:
    return ext_type.to_bytes(2, "big") + vec(2, body)


def pack16(values: tuple[int, ...]) -> bytes:
    return b"".join(v.to_bytes(2, "big") for v in values)


def client_hello_body(hello: ClientHello) -> bytes:
    extensions = (
        ext(43, vec(1, pack16(hello.versions)))
        + ext(10, vec(2, pack16(hello.groups)))
        + ext(13, vec(2, pack16(hello.signature_schemes)))
    )
    return (b"\x03\x03" + bytes(32) + vec(1, bytes(32)) + vec(2, pack16(hello.cipher_suites)) + b"\x01\x00"
            + vec(2, extensions))  # fmt: skip


def handshake(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + vec(3, body)


@given(st.builds(ClientHello, u16s, u16s, u16s, u16s))
def test_client_hello_parses_back(hello: ClientHello) -> None:
    assert parse_client_hello(client_hello_body(hello)) == hello
    trace = HandshakeTrace()
    trace.feed("received", 22, handshake(1, client_hello_body(hello)))
    assert trace.client_hello == hello and trace.malformed == []


@given(u16, u16, st.booleans())
def test_server_hello_version_suite_and_group(suite: int, group: int, tls13: bool) -> None:
    extensions = ext(43, b"\x03\x04") + ext(51, group.to_bytes(2, "big") + vec(2, b"k")) if tls13 else b""
    body = b"\x03\x03" + bytes(32) + vec(1, b"") + suite.to_bytes(2, "big") + b"\x00" + vec(2, extensions)
    hello = parse_server_hello(body)
    assert (hello.version, hello.cipher_suite, hello.group, hello.retry) == (
        0x0304 if tls13 else 0x0303,
        suite,
        group if tls13 else None,
        False,
    )


@given(st.lists(st.binary(min_size=1, max_size=40), max_size=4), st.booleans())
def test_certificate_list_parses_back(ders: list[bytes], tls13: bool) -> None:
    entries = b"".join(vec(3, d) + (vec(2, b"") if tls13 else b"") for d in ders)
    body = (vec(1, b"") if tls13 else b"") + vec(3, entries)
    assert parse_certificate(body, tls13) == tuple(ders)


@given(u16, u16)
def test_server_key_exchange_group_and_scheme(group: int, scheme: int) -> None:
    body = (
        b"\x03" + group.to_bytes(2, "big") + vec(1, b"\x04" * 5) + scheme.to_bytes(2, "big") + vec(2, b"sig")
    )
    assert parse_server_key_exchange(body) == (group, scheme)


@given(st.binary(max_size=300))
def test_parsers_raise_only_their_own_error(data: bytes) -> None:
    for parse in (parse_client_hello, parse_server_hello, parse_server_key_exchange):
        with contextlib.suppress(HandshakeParseError):
            parse(data)
    for tls13 in (True, False):
        with contextlib.suppress(HandshakeParseError):
            parse_certificate(data, tls13)
        with contextlib.suppress(HandshakeParseError):
            parse_certificate_request_schemes(data, tls13)


@given(st.lists(st.tuples(st.sampled_from(["sent", "received"]), st.sampled_from([21, 22, 23]),
                          st.binary(max_size=120)), max_size=8))  # fmt: skip
def test_trace_never_raises_on_garbage(messages: list[tuple[str, int, bytes]]) -> None:
    trace = HandshakeTrace()
    for direction, content_type, data in messages:
        trace.feed(direction, content_type, data)
