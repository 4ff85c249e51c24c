"""TLS handshake messages as seen by the record layer (RFC 8446 section 4, RFC 5246 section 7.4), sans-IO.

``tls-verify`` observes every handshake message its TLS library sends or receives (in plaintext,
before record protection) and reads from them what the ``ssl`` module does not report: the offered
versions, cipher suites, groups and signature schemes, the negotiated group, the signature
scheme of each CertificateVerify and the certificate chains. That is what lets a failed handshake
be explained as "which side offered what".
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from v2gtool.errors import V2GToolError

ISO20_CIPHER_SUITES = ("TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
"""The only suites ISO 15118-20 allows ([V2G20-2459]; standards digest section 5)."""
ISO2_CIPHER_SUITES = ("ECDHE-ECDSA-AES128-SHA256",)
"""-2's usable suite in OpenSSL names (TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256)."""

CIPHER_SUITES = {
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0x1304: "TLS_AES_128_CCM_SHA256",
    0x1305: "TLS_AES_128_CCM_8_SHA256",
    0xC023: "ECDHE-ECDSA-AES128-SHA256",
    0xC024: "ECDHE-ECDSA-AES256-SHA384",
    0xC02B: "ECDHE-ECDSA-AES128-GCM-SHA256",
    0xC02C: "ECDHE-ECDSA-AES256-GCM-SHA384",
    0xC02F: "ECDHE-RSA-AES128-GCM-SHA256",
    0xC030: "ECDHE-RSA-AES256-GCM-SHA384",
    0xCCA8: "ECDHE-RSA-CHACHA20-POLY1305",
    0xCCA9: "ECDHE-ECDSA-CHACHA20-POLY1305",
    0x00FF: "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
}
GROUPS = {
    0x0017: "secp256r1",
    0x0018: "secp384r1",
    0x0019: "secp521r1",
    0x001D: "x25519",
    0x001E: "x448",
    0x0100: "ffdhe2048",
    0x0101: "ffdhe3072",
    0x0102: "ffdhe4096",
}
SIGNATURE_SCHEMES = {
    0x0201: "rsa_pkcs1_sha1",
    0x0203: "ecdsa_sha1",
    0x0401: "rsa_pkcs1_sha256",
    0x0403: "ecdsa_secp256r1_sha256",
    0x0501: "rsa_pkcs1_sha384",
    0x0503: "ecdsa_secp384r1_sha384",
    0x0601: "rsa_pkcs1_sha512",
    0x0603: "ecdsa_secp521r1_sha512",
    0x0804: "rsa_pss_rsae_sha256",
    0x0805: "rsa_pss_rsae_sha384",
    0x0806: "rsa_pss_rsae_sha512",
    0x0807: "ed25519",
    0x0808: "ed448",
    0x0809: "rsa_pss_pss_sha256",
    0x080A: "rsa_pss_pss_sha384",
    0x080B: "rsa_pss_pss_sha512",
}
VERSIONS = {0x0301: "TLSv1", 0x0302: "TLSv1.1", 0x0303: "TLSv1.2", 0x0304: "TLSv1.3"}
ALERTS = {
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    40: "handshake_failure",
    42: "bad_certificate",
    43: "unsupported_certificate",
    44: "certificate_revoked",
    45: "certificate_expired",
    46: "certificate_unknown",
    47: "illegal_parameter",
    48: "unknown_ca",
    50: "decode_error",
    51: "decrypt_error",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    109: "missing_extension",
    110: "unsupported_extension",
    112: "unrecognized_name",
    116: "certificate_required",
    120: "no_application_protocol",
}
# RFC 8446 section 4.1.3: a ServerHello with this random is a HelloRetryRequest.
HELLO_RETRY_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")


class HandshakeParseError(V2GToolError):
    """A handshake message is truncated or malformed."""


def name_of(table: dict[int, str], code: int) -> str:
    return table.get(code, f"0x{code:04x}")


class _Reader:
    def __init__(self, data: bytes, what: str) -> None:
        self._data = data
        self._pos = 0
        self._what = what

    def take(self, n: int) -> bytes:
        if self._pos + n > len(self._data):
            raise HandshakeParseError(f"{self._what}: truncated at byte {self._pos} (needs {n} more)")
        chunk = self._data[self._pos : self._pos + n]
        self._pos += n
        return chunk

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def vector(self, length_bytes: int) -> bytes:
        return self.take(self.uint(length_bytes))

    @property
    def done(self) -> bool:
        return self._pos >= len(self._data)


def _uint16_list(data: bytes, what: str) -> tuple[int, ...]:
    if len(data) % 2:
        raise HandshakeParseError(f"{what}: odd length {len(data)}")
    return tuple(int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2))


def _extensions(reader: _Reader, what: str) -> dict[int, bytes]:
    extensions: dict[int, bytes] = {}
    if reader.done:
        return extensions
    block = _Reader(reader.vector(2), what)
    while not block.done:
        ext_type = block.uint(2)
        extensions[ext_type] = block.vector(2)
    return extensions


class HandshakeType(enum.IntEnum):
    CLIENT_HELLO = 1
    SERVER_HELLO = 2
    CERTIFICATE = 11
    SERVER_KEY_EXCHANGE = 12
    CERTIFICATE_REQUEST = 13
    CERTIFICATE_VERIFY = 15


_EXT_SUPPORTED_GROUPS = 10
_EXT_SIGNATURE_ALGORITHMS = 13
_EXT_SUPPORTED_VERSIONS = 43
_EXT_KEY_SHARE = 51


@dataclass(frozen=True)
class ClientHello:
    """What a client offers (RFC 8446 section 4.1.2)."""

    versions: tuple[int, ...]
    cipher_suites: tuple[int, ...]
    groups: tuple[int, ...]
    signature_schemes: tuple[int, ...]


@dataclass(frozen=True)
class ServerHello:
    """What a server selects (RFC 8446 section 4.1.3); ``group`` is None when it is not in the hello."""

    version: int
    cipher_suite: int
    group: int | None
    retry: bool


def parse_client_hello(body: bytes) -> ClientHello:
    r = _Reader(body, "ClientHello")
    legacy_version = r.uint(2)
    r.take(32)
    r.vector(1)
    suites = _uint16_list(r.vector(2), "ClientHello cipher_suites")
    r.vector(1)
    ext = _extensions(r, "ClientHello extensions")
    versions = (
        _uint16_list(
            _Reader(ext[_EXT_SUPPORTED_VERSIONS], "supported_versions").vector(1), "supported_versions"
        )
        if _EXT_SUPPORTED_VERSIONS in ext
        else (legacy_version,)
    )
    groups = (
        _uint16_list(_Reader(ext[_EXT_SUPPORTED_GROUPS], "supported_groups").vector(2), "supported_groups")
        if _EXT_SUPPORTED_GROUPS in ext
        else ()
    )
    return ClientHello(versions, suites, groups, _signature_schemes(ext))


def _signature_schemes(ext: dict[int, bytes]) -> tuple[int, ...]:
    if _EXT_SIGNATURE_ALGORITHMS not in ext:
        return ()
    data = _Reader(ext[_EXT_SIGNATURE_ALGORITHMS], "signature_algorithms").vector(2)
    return _uint16_list(data, "signature_algorithms")


def parse_server_hello(body: bytes) -> ServerHello:
    r = _Reader(body, "ServerHello")
    version = r.uint(2)
    retry = r.take(32) == HELLO_RETRY_RANDOM
    r.vector(1)
    suite = r.uint(2)
    r.uint(1)
    ext = _extensions(r, "ServerHello extensions")
    if _EXT_SUPPORTED_VERSIONS in ext:
        version = _Reader(ext[_EXT_SUPPORTED_VERSIONS], "supported_versions").uint(2)
    group = _Reader(ext[_EXT_KEY_SHARE], "key_share").uint(2) if _EXT_KEY_SHARE in ext else None
    return ServerHello(version, suite, group, retry)


def parse_certificate(body: bytes, tls13: bool) -> tuple[bytes, ...]:
    """The DER certificates of a Certificate message, leaf first."""
    r = _Reader(body, "Certificate")
    if tls13:
        r.vector(1)  # certificate_request_context
    entries = _Reader(r.vector(3), "Certificate list")
    certs: list[bytes] = []
    while not entries.done:
        certs.append(entries.vector(3))
        if tls13:
            entries.vector(2)  # per-certificate extensions
    return tuple(certs)


def parse_certificate_request_schemes(body: bytes, tls13: bool) -> tuple[int, ...]:
    """The signature schemes a CertificateRequest accepts for the client's certificate."""
    r = _Reader(body, "CertificateRequest")
    if tls13:
        r.vector(1)
        return _signature_schemes(_extensions(r, "CertificateRequest extensions"))
    r.vector(1)  # certificate_types
    return _uint16_list(r.vector(2), "CertificateRequest signature_algorithms")


def parse_server_key_exchange(body: bytes) -> tuple[int, int]:
    """Named curve and signature scheme of a TLS 1.2 ECDHE ServerKeyExchange (RFC 8422 section 5.4)."""
    r = _Reader(body, "ServerKeyExchange")
    if r.uint(1) != 3:
        raise HandshakeParseError("ServerKeyExchange: not a named_curve ECDHE exchange")
    group = r.uint(2)
    r.vector(1)  # the ephemeral public key
    return group, r.uint(2)


@dataclass
class HandshakeTrace:
    """Everything observed in one handshake, from one side's point of view."""

    client_hello: ClientHello | None = None
    server_hello: ServerHello | None = None
    server_key_exchange_group: int | None = None
    certificate_request_schemes: tuple[int, ...] | None = None
    certificates: dict[str, tuple[bytes, ...]] = field(default_factory=dict)
    """``"sent"``/``"received"`` -> DER chain."""
    verify_schemes: dict[str, int] = field(default_factory=dict)
    """``"sent"``/``"received"`` -> signature scheme of the CertificateVerify (1.2: ServerKeyExchange)."""
    alerts: dict[str, int] = field(default_factory=dict)
    """``"sent"``/``"received"`` -> the first alert description."""
    malformed: list[str] = field(default_factory=list)

    @property
    def tls13(self) -> bool:
        return self.server_hello is not None and self.server_hello.version == 0x0304

    @property
    def group(self) -> int | None:
        if self.server_hello is not None and self.server_hello.group is not None:
            return self.server_hello.group
        return self.server_key_exchange_group

    def feed(self, direction: str, content_type: int, data: bytes) -> None:
        """Take one record-layer message: *direction* ``"sent"``/``"received"``, content type 21 or 22."""
        try:
            if content_type == 21 and len(data) >= 2:
                self.alerts.setdefault(direction, data[1])
            elif content_type == 22 and len(data) >= 4:
                self._handshake(direction, data[0], data[4 : 4 + int.from_bytes(data[1:4], "big")])
        except HandshakeParseError as exc:
            self.malformed.append(str(exc))

    def _handshake(self, direction: str, msg_type: int, body: bytes) -> None:
        if msg_type == HandshakeType.CLIENT_HELLO:
            self.client_hello = parse_client_hello(body)
        elif msg_type == HandshakeType.SERVER_HELLO:
            hello = parse_server_hello(body)
            if not hello.retry:  # a HelloRetryRequest only asks for another key_share; the ServerHello follows
                self.server_hello = hello
        elif msg_type == HandshakeType.CERTIFICATE:
            self.certificates[direction] = parse_certificate(body, self.tls13)
        elif msg_type == HandshakeType.CERTIFICATE_REQUEST:
            self.certificate_request_schemes = parse_certificate_request_schemes(body, self.tls13)
        elif msg_type == HandshakeType.CERTIFICATE_VERIFY and len(body) >= 2:
            self.verify_schemes[direction] = int.from_bytes(body[:2], "big")
        elif msg_type == HandshakeType.SERVER_KEY_EXCHANGE:
            self.server_key_exchange_group, scheme = parse_server_key_exchange(body)
            self.verify_schemes[direction] = scheme
