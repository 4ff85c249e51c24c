"""TLS decryption against OpenSSL (Python's ssl) as the oracle, plus hand-sealed TLS 1.3 ChaCha20 records."""

from __future__ import annotations

import datetime
import io
import ssl
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.pcap.session import dissect
from v2gtool.exi import api
from v2gtool.net.pcapwriter import PcapWriter
from v2gtool.pcap.records import TLSSession, V2GMessage
from v2gtool.pcap.synth import TCPSession
from v2gtool.pcap.tls import (
    HELLO_RETRY_RANDOM,
    HandshakeSeen,
    KeyLog,
    Plaintext,
    TLSError,
    TLSStream,
    hkdf_expand_label,
)


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SECC")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    directory = tmp_path_factory.mktemp("tls")
    cert_path, key_path = directory / "secc.pem", directory / "secc.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def _session(certificate: tuple[Path, Path], tmp_path: Path, version: ssl.TLSVersion, cipher: str | None,
             messages: list[tuple[int, bytes]]) -> tuple[list[tuple[int, bytes]], str]:
    """Run a TLS session in memory; return the wire bytes per direction in order and the key log text."""
    keylog = tmp_path / "keys.log"
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.check_hostname = False
    client_ctx.verify_mode = ssl.CERT_NONE
    client_ctx.keylog_filename = str(keylog)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(*certificate)
    for ctx in (client_ctx, server_ctx):
        ctx.minimum_version = ctx.maximum_version = version
        if cipher:
            ctx.set_ciphers(cipher)
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_ctx.wrap_bio(c_in, c_out, server_side=False)
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    wire: list[tuple[int, bytes]] = []

    def pump() -> None:
        for source, sink, direction in ((c_out, s_in, 0), (s_out, c_in, 1)):
            data = source.read()
            if data:
                wire.append((direction, data))
                sink.write(data)

    done = [False, False]
    while not all(done):
        for i, end in enumerate((client, server)):
            if not done[i]:
                try:
                    end.do_handshake()
                    done[i] = True
                except ssl.SSLWantReadError:
                    pass
        pump()
    for direction, data in messages:
        (client if direction == 0 else server).write(data)
        pump()
        with pytest.raises(ssl.SSLWantReadError):
            while True:
                (server if direction == 0 else client).read()
    return wire, keylog.read_text()


def _decrypt(wire: list[tuple[int, bytes]], keylog_text: str) -> tuple[TLSStream, list[tuple[int, bytes]]]:
    keylog = KeyLog()
    keylog.add_text(keylog_text)
    stream = TLSStream(keylog)
    out: list[tuple[int, bytes]] = []
    for direction, data in wire:
        for item in stream.feed(direction, data):
            if isinstance(item, Plaintext):
                out.append((item.direction, item.data))
    return stream, out


MESSAGES = [(0, b"\x01\xfe\x80\x01request"), (1, b"\x01\xfe\x80\x01response" * 50), (0, b"x" * 20000)]


@pytest.mark.parametrize(("version", "cipher", "suite"), [
    (ssl.TLSVersion.TLSv1_3, None, "TLS_AES_256_GCM_SHA384"),
    (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256"),
    (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-GCM-SHA256", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"),
    (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES256-GCM-SHA384", "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"),
    (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-CHACHA20-POLY1305", "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256"),
])
def test_decrypts_what_openssl_encrypted(certificate: tuple[Path, Path], tmp_path: Path, version: ssl.TLSVersion,
                                         cipher: str | None, suite: str) -> None:
    wire, keys = _session(certificate, tmp_path, version, cipher, MESSAGES)
    stream, plain = _decrypt(wire, keys)
    assert stream.suite == suite
    for direction in (0, 1):
        assert b"".join(d for s, d in plain if s == direction) == b"".join(m for s, m in MESSAGES if s == direction)


def test_records_wait_for_a_secret_disclosed_later(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    wire, keys = _session(certificate, tmp_path, ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA256", MESSAGES)
    keylog = KeyLog()
    stream = TLSStream(keylog)
    plain = [item for number, (direction, data) in enumerate(wire, 1)
             for item in stream.feed(direction, data, number, number / 10) if isinstance(item, Plaintext)]
    assert plain == [] and stream.waiting_for_keys
    assert "no CLIENT_RANDOM secret for client random" in stream.missing_secret_message()
    keylog.add_text(keys)
    plain = [item for item in stream.retry() if isinstance(item, Plaintext)]
    assert b"".join(p.data for p in plain if p.direction == 1) == MESSAGES[1][1]
    # A record decrypted late keeps the frame and time it arrived with.
    first = plain[0]
    assert wire[first.frame - 1][0] == first.direction == 0 and first.t == first.frame / 10


def test_wrong_secret_is_an_authentication_error(certificate: tuple[Path, Path], tmp_path: Path) -> None:
    wire, keys = _session(certificate, tmp_path, ssl.TLSVersion.TLSv1_3, None, MESSAGES[:1])
    forged = "\n".join(line[:-4] + "0000" if "TRAFFIC" in line else line for line in keys.splitlines())
    with pytest.raises(TLSError, match="authentication failed"):
        _decrypt(wire, forged)


HANDSHAKE_REQ = api.encode_json({"supportedAppProtocolReq": {"AppProtocol": [
    {"ProtocolNamespace": "urn:iso:std:iso:15118:-20:DC", "VersionNumberMajor": 1, "VersionNumberMinor": 0,
     "SchemaID": 1, "Priority": 1}]}}, "apphand", framed=True)


def _capture(wire: list[tuple[int, bytes]]) -> bytes:
    """*wire* as a pcap of one TCP connection (EVCC the TLS client), opened and closed."""
    out = io.BytesIO()
    tcp = TCPSession(PcapWriter(out))
    tcp.open(0.0)
    for number, (direction, data) in enumerate(wire, 1):
        tcp.send(number / 100, direction == 0, data)
    tcp.close(1.0)
    return out.getvalue()


def _forged(keys: str) -> str:
    return "\n".join(line[:-4] + "0000" if "TRAFFIC" in line or "CLIENT_RANDOM" in line else line
                     for line in keys.splitlines())


def _handshake_secrets_only(keys: str) -> str:
    return "\n".join(line for line in keys.splitlines() if "HANDSHAKE" in line)


@pytest.mark.parametrize(("version", "cipher"), [(ssl.TLSVersion.TLSv1_3, None),
                                                 (ssl.TLSVersion.TLSv1_2, "ECDHE-ECDSA-AES128-SHA256")])
@pytest.mark.parametrize(("keys_of", "decrypted"), [
    (lambda keys: keys, True), (lambda keys: "", False), (_forged, False), (_handshake_secrets_only, False),
])
def test_tls_session_record_says_whether_its_records_were_decrypted(
        certificate: tuple[Path, Path], tmp_path: Path, version: ssl.TLSVersion, cipher: str | None,
        keys_of: Callable[[str], str], decrypted: bool) -> None:
    """``TLSSession.decrypted``: the key log opened the session's records (reported before its first
    decrypted message), or not (no secrets, wrong ones, or only the TLS 1.3 handshake's: reported when
    decryption failed or the stream ended)."""
    wire, keys = _session(certificate, tmp_path, version, cipher, [(0, HANDSHAKE_REQ)])
    keylog = KeyLog()
    keylog.add_text(keys_of(keys))
    records = dissect(_capture(wire), keylog)
    sessions = [r for r in records if isinstance(r, TLSSession)]
    assert [s.decrypted for s in sessions] == [decrypted]
    messages = [i for i, r in enumerate(records) if isinstance(r, V2GMessage)]
    assert len(messages) == decrypted
    assert not decrypted or records.index(sessions[0]) < messages[0]


def _seal13(secret: bytes, seq: int, content_type: int, content: bytes) -> bytes:
    """An independent TLS 1.3 record sealer (RFC 8446 clause 5.2) for TLS_CHACHA20_POLY1305_SHA256."""
    key = hkdf_expand_label(hashes.SHA256(), secret, "key", b"", 32)
    iv = hkdf_expand_label(hashes.SHA256(), secret, "iv", b"", 12)
    nonce = (int.from_bytes(iv, "big") ^ seq).to_bytes(12, "big")
    inner = content + bytes([content_type]) + b"\x00" * 3
    header = struct.pack(">BHH", 23, 0x0303, len(inner) + 16)
    return header + ChaCha20Poly1305(key).encrypt(nonce, inner, header)


def _hello(msg_type: int, random: bytes, extensions: bytes, suite: int) -> bytes:
    body = b"\x03\x03" + random + b"\x00" + struct.pack(">H", suite) + b"\x00"
    body += struct.pack(">H", len(extensions)) + extensions
    message = bytes([msg_type]) + len(body).to_bytes(3, "big") + body
    return struct.pack(">BHH", 22, 0x0303, len(message)) + message


def test_tls13_chacha20_handshake_finished_and_key_update() -> None:
    random = bytes(range(32))
    secrets = {label: bytes([i]) * 32 for i, label in enumerate(
        ["CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0",
         "SERVER_TRAFFIC_SECRET_0"], 1)}
    keylog = KeyLog()
    keylog.add_text("\n".join(f"{label} {random.hex()} {secret.hex()}" for label, secret in secrets.items()))
    stream = TLSStream(keylog)
    stream.feed(0, _hello(1, random, b"", 0x1303))  # ClientHello: only its random matters here
    seen = stream.feed(1, _hello(2, bytes(32), struct.pack(">HHH", 43, 2, 0x0304), 0x1303))
    assert seen == [HandshakeSeen(0x0304, 0x1303, random)]
    finished = bytes([20]) + (32).to_bytes(3, "big") + bytes(32)
    out = stream.feed(1, _seal13(secrets["SERVER_HANDSHAKE_TRAFFIC_SECRET"], 0, 22, finished))
    out += stream.feed(1, _seal13(secrets["SERVER_TRAFFIC_SECRET_0"], 0, 23, b"hello"))
    key_update = bytes([24]) + (1).to_bytes(3, "big") + b"\x00"
    out += stream.feed(1, _seal13(secrets["SERVER_TRAFFIC_SECRET_0"], 1, 22, key_update))
    next_secret = hkdf_expand_label(hashes.SHA256(), secrets["SERVER_TRAFFIC_SECRET_0"], "traffic upd", b"", 32)
    out += stream.feed(1, _seal13(next_secret, 0, 23, b"after update"))
    assert out == [Plaintext(1, b"hello"), Plaintext(1, b"after update")]


def test_keylog_lines() -> None:
    keylog = KeyLog()
    random = "ab" * 32
    assert keylog.add_line(f"CLIENT_RANDOM {random} {'cd' * 48}") == ("CLIENT_RANDOM", bytes.fromhex(random))
    assert keylog.add_line("# comment") is None
    assert keylog.add_line(f"UNKNOWN_LABEL {random} {'cd' * 48}") is None
    assert keylog.get(bytes.fromhex(random), "CLIENT_RANDOM") == bytes.fromhex("cd" * 48)


def test_not_tls_is_named() -> None:
    with pytest.raises(TLSError, match="not a TLS record: header 01fe800100"):
        TLSStream(KeyLog()).feed(0, b"\x01\xfe\x80\x01\x00\x00\x00\x00")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1), st.binary(max_size=80)), max_size=8))
def test_fuzz_only_tls_errors(chunks: list[tuple[int, bytes]]) -> None:
    stream = TLSStream(KeyLog())
    try:
        for direction, data in chunks:
            stream.feed(direction, b"\x16\x03\x03" + data)
    except TLSError:
        pass


def test_hello_retry_request_and_compatibility_change_cipher_spec() -> None:
    """RFC 8446 clause 4.1.4 / D.4: HRR, then the client's dummy CCS before its second ClientHello."""
    random = bytes(range(1, 33))
    secret = b"\x07" * 32
    keylog = KeyLog()
    keylog.add_line(f"SERVER_HANDSHAKE_TRAFFIC_SECRET {random.hex()} {secret.hex()}")
    stream = TLSStream(keylog)
    stream.feed(0, _hello(1, random, b"", 0x1303))
    assert stream.feed(1, _hello(2, HELLO_RETRY_RANDOM, struct.pack(">HHH", 43, 2, 0x0304), 0x1303)) == []
    stream.feed(0, b"\x14\x03\x03\x00\x01\x01" + _hello(1, random, b"", 0x1303))
    stream.feed(1, _hello(2, bytes(32), struct.pack(">HHH", 43, 2, 0x0304), 0x1303))
    assert not stream.waiting_for_keys
    finished = bytes([20]) + (32).to_bytes(3, "big") + bytes(32)
    assert stream.feed(1, _seal13(secret, 0, 22, finished)) == []  # authenticates with the handshake secret
