"""Passive TLS 1.2 / 1.3 record decryption from NSS key-log secrets, for dissecting captures.

The NSS key-log format (``SSLKEYLOGFILE``) gives, per ClientHello.random, the TLS 1.2 master
secret (``CLIENT_RANDOM``) or the TLS 1.3 traffic secrets (``CLIENT_/SERVER_HANDSHAKE_TRAFFIC_SECRET``,
``CLIENT_/SERVER_TRAFFIC_SECRET_0``). :class:`TLSStream` follows one TCP connection's records,
reads the randoms and cipher suite from the hellos, and returns the application bytes once the
secrets are known — records that arrive before their secret (a tester discloses it a few frames
later) wait, boundedly, and are decrypted when it appears.

Key schedules: TLS 1.3 RFC 8446 clause 7 (HKDF-Expand-Label, per-record nonce, KeyUpdate);
TLS 1.2 RFC 5246 clauses 5/6.3 (PRF key block, CBC with HMAC, MAC-then-encrypt) and RFC 5288 (GCM).
ISO 15118-2 allows TLS_ECDH(E)_ECDSA_WITH_AES_128_CBC_SHA256; ISO 15118-20 requires TLS 1.3 with
TLS_AES_256_GCM_SHA384 and TLS_CHACHA20_POLY1305_SHA256 (see ../shared/spec/standards.md section 5).
"""

from __future__ import annotations

import hmac
import re
import struct
from dataclasses import dataclass, field
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESCCM, AESGCM, ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

from v2gtool.errors import V2GToolError

CONTENT_CHANGE_CIPHER_SPEC = 20
CONTENT_ALERT = 21
CONTENT_HANDSHAKE = 22
CONTENT_APPLICATION_DATA = 23
HANDSHAKE_CLIENT_HELLO = 1
HANDSHAKE_SERVER_HELLO = 2
HANDSHAKE_FINISHED = 20
HANDSHAKE_KEY_UPDATE = 24
EXTENSION_ENCRYPT_THEN_MAC = 22  # RFC 7366: OpenSSL negotiates it for CBC suites by default
EXTENSION_SUPPORTED_VERSIONS = 43
TLS13 = 0x0304
# ServerHello.random of a HelloRetryRequest (RFC 8446 clause 4.1.3).
HELLO_RETRY_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
# AlertDescription names (RFC 8446 clause 6, RFC 5246 clause 7.2).
ALERT_DESCRIPTIONS: dict[int, str] = {
    0: "close_notify", 10: "unexpected_message", 20: "bad_record_mac", 22: "record_overflow",
    40: "handshake_failure", 42: "bad_certificate", 43: "unsupported_certificate", 44: "certificate_revoked",
    45: "certificate_expired", 46: "certificate_unknown", 47: "illegal_parameter", 48: "unknown_ca",
    49: "access_denied", 50: "decode_error", 51: "decrypt_error", 70: "protocol_version",
    71: "insufficient_security", 80: "internal_error", 86: "inappropriate_fallback", 90: "user_canceled",
    100: "no_renegotiation", 109: "missing_extension", 110: "unsupported_extension", 112: "unrecognized_name",
    113: "bad_certificate_status_response", 116: "certificate_required", 120: "no_application_protocol",
}
# Records held per direction while their secret is unknown; beyond this the stream is undecryptable.
MAX_WAITING_BYTES = 1024 * 1024
_MAX_RECORD = (1 << 14) + 2048  # TLSCiphertext.length limit (RFC 5246 clause 6.2.3)

_KEYLOG_LINE = re.compile(r"^([A-Z_0-9]+) ([0-9A-Fa-f]{64}) ([0-9A-Fa-f]{32,256})\s*$")
KEYLOG_LABELS = frozenset({
    "CLIENT_RANDOM", "CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_HANDSHAKE_TRAFFIC_SECRET",
    "CLIENT_TRAFFIC_SECRET_0", "SERVER_TRAFFIC_SECRET_0", "EXPORTER_SECRET", "CLIENT_EARLY_TRAFFIC_SECRET",
    "EARLY_EXPORTER_SECRET",
})


class TLSError(V2GToolError):
    """A TLS record cannot be parsed or decrypted with the secrets given."""


@dataclass(frozen=True, slots=True)
class CipherSuite:
    """What record protection needs to know of a cipher suite."""

    name: str
    hash: hashes.HashAlgorithm
    aead: str | None  # "gcm", "chacha", "ccm", "ccm8"; None: CBC + HMAC
    key_length: int
    mac_length: int = 0  # CBC suites (TLS 1.2)
    fixed_iv_length: int = 12


CIPHER_SUITES: dict[int, CipherSuite] = {
    0x1301: CipherSuite("TLS_AES_128_GCM_SHA256", hashes.SHA256(), "gcm", 16),
    0x1302: CipherSuite("TLS_AES_256_GCM_SHA384", hashes.SHA384(), "gcm", 32),
    0x1303: CipherSuite("TLS_CHACHA20_POLY1305_SHA256", hashes.SHA256(), "chacha", 32),
    0x1304: CipherSuite("TLS_AES_128_CCM_SHA256", hashes.SHA256(), "ccm", 16),
    0x1305: CipherSuite("TLS_AES_128_CCM_8_SHA256", hashes.SHA256(), "ccm8", 16),
    0xC023: CipherSuite("TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", hashes.SHA256(), None, 16, 32, 16),
    0xC024: CipherSuite("TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384", hashes.SHA384(), None, 32, 48, 16),
    0xC025: CipherSuite("TLS_ECDH_ECDSA_WITH_AES_128_CBC_SHA256", hashes.SHA256(), None, 16, 32, 16),
    0xC026: CipherSuite("TLS_ECDH_ECDSA_WITH_AES_256_CBC_SHA384", hashes.SHA384(), None, 32, 48, 16),
    0xC027: CipherSuite("TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", hashes.SHA256(), None, 16, 32, 16),
    0xC028: CipherSuite("TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384", hashes.SHA384(), None, 32, 48, 16),
    0xC02B: CipherSuite("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", hashes.SHA256(), "gcm", 16, 0, 4),
    0xC02C: CipherSuite("TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", hashes.SHA384(), "gcm", 32, 0, 4),
    0xC02F: CipherSuite("TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", hashes.SHA256(), "gcm", 16, 0, 4),
    0xC030: CipherSuite("TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", hashes.SHA384(), "gcm", 32, 0, 4),
    0xCCA8: CipherSuite("TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", hashes.SHA256(), "chacha", 32),
    0xCCA9: CipherSuite("TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", hashes.SHA256(), "chacha", 32),
}


def suite_name(code: int) -> str:
    suite = CIPHER_SUITES.get(code)
    return suite.name if suite else f"0x{code:04X}"


class KeyLog:
    """Secrets of an NSS key log, by client random; lines may be added while a capture is read."""

    def __init__(self) -> None:
        self._secrets: dict[bytes, dict[str, bytes]] = {}
        self.generation = 0  # bumped on every new secret, so waiting streams know to retry

    def add_line(self, line: str) -> tuple[str, bytes] | None:
        """Take one key-log line; return (label, client random) when it holds a secret, else None."""
        match = _KEYLOG_LINE.match(line.strip())
        if match is None or match.group(1) not in KEYLOG_LABELS:
            return None
        label, random = match.group(1), bytes.fromhex(match.group(2))
        secret = bytes.fromhex(match.group(3))
        if self._secrets.setdefault(random, {}).get(label) != secret:
            self._secrets[random][label] = secret
            self.generation += 1
        return label, random

    def add_text(self, text: str) -> list[tuple[str, bytes]]:
        """Take every secret line of *text* (comments and unknown labels are skipped)."""
        found = (self.add_line(line) for line in text.splitlines())
        return [entry for entry in found if entry is not None]

    def get(self, client_random: bytes, label: str) -> bytes | None:
        return self._secrets.get(client_random, {}).get(label)


def hkdf_expand_label(hash_alg: hashes.HashAlgorithm, secret: bytes, label: str, context: bytes,
                      length: int) -> bytes:
    """HKDF-Expand-Label of RFC 8446 clause 7.1."""
    full = b"tls13 " + label.encode()
    info = struct.pack(">HB", length, len(full)) + full + bytes([len(context)]) + context
    return HKDFExpand(hash_alg, length, info).derive(secret)


def prf_tls12(hash_alg: hashes.HashAlgorithm, secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """The TLS 1.2 PRF, P_hash of RFC 5246 clause 5."""
    name = hash_alg.name
    seed = label + seed
    out = bytearray()
    a = seed
    while len(out) < length:
        a = hmac.digest(secret, a, name)
        out += hmac.digest(secret, a + seed, name)
    return bytes(out[:length])


@dataclass(slots=True)
class _RecordProtection:
    """The read state of one direction: suite, key, IV (or MAC key) and the record sequence number."""

    suite: CipherSuite
    key: bytes
    iv: bytes
    mac_key: bytes = b""
    seq: int = 0
    encrypt_then_mac: bool = False
    aead: Any = None

    def __post_init__(self) -> None:
        kind = self.suite.aead
        if kind == "gcm":
            self.aead = AESGCM(self.key)
        elif kind == "chacha":
            self.aead = ChaCha20Poly1305(self.key)
        elif kind in ("ccm", "ccm8"):
            self.aead = AESCCM(self.key, tag_length=16 if kind == "ccm" else 8)

    def _nonce(self) -> bytes:
        return bytes(a ^ b for a, b in zip(self.iv, self.seq.to_bytes(len(self.iv), "big"), strict=True))

    def open13(self, header: bytes, ciphertext: bytes) -> tuple[int, bytes]:
        """Decrypt a TLS 1.3 record; return (inner content type, content)."""
        try:
            inner = self.aead.decrypt(self._nonce(), ciphertext, header)
        except InvalidTag:
            raise TLSError(f"TLS 1.3 record {self.seq}: authentication failed (wrong secret?)") from None
        self.seq += 1
        end = len(inner)
        while end and inner[end - 1] == 0:
            end -= 1
        if not end:
            raise TLSError("TLS 1.3 record without a content type")
        return inner[end - 1], inner[:end - 1]

    def open12(self, content_type: int, version: bytes, fragment: bytes) -> bytes:
        """Decrypt a TLS 1.2 record (AEAD with explicit nonce, ChaCha20 with implicit, or CBC+HMAC)."""
        seq = self.seq.to_bytes(8, "big")
        self.seq += 1
        suite = self.suite
        if suite.aead == "chacha":
            nonce, body = self._nonce_for(seq), fragment
        elif suite.aead is not None:
            nonce, body = self.iv + fragment[:8], fragment[8:]
        else:
            return self._open_cbc(seq, content_type, version, fragment)
        if len(body) < 16:
            raise TLSError(f"TLS 1.2 record {self.seq - 1}: {len(body)} bytes, shorter than the tag")
        aad = seq + bytes([content_type]) + version + struct.pack(">H", len(body) - 16)
        try:
            plain: bytes = self.aead.decrypt(nonce, body, aad)
        except InvalidTag:
            raise TLSError(f"TLS 1.2 record {self.seq - 1}: authentication failed (wrong secret?)") from None
        return plain

    def _nonce_for(self, seq: bytes) -> bytes:
        return bytes(a ^ b for a, b in zip(self.iv, bytes(4) + seq, strict=True))

    def _mac(self, seq: bytes, content_type: int, version: bytes, data: bytes) -> bytes:
        return hmac.digest(self.mac_key, seq + bytes([content_type]) + version + struct.pack(">H", len(data)) + data,
                           self.suite.hash.name)

    def _open_cbc(self, seq: bytes, content_type: int, version: bytes, fragment: bytes) -> bytes:
        """MAC-then-encrypt (RFC 5246 clause 6.2.3.2), or encrypt-then-MAC when negotiated (RFC 7366)."""
        mac_length = self.suite.mac_length
        where = f"TLS 1.2 CBC record {self.seq - 1}"
        if self.encrypt_then_mac:
            fragment, mac = fragment[:-mac_length], fragment[-mac_length:]
            if not hmac.compare_digest(mac, self._mac(seq, content_type, version, fragment)):
                raise TLSError(f"{where}: MAC check failed (wrong secret?)")
        if len(fragment) < 32 or len(fragment) % 16:
            raise TLSError(f"{where}: length {len(fragment)} is not whole blocks")
        decryptor = Cipher(algorithms.AES(self.key), modes.CBC(fragment[:16])).decryptor()
        padded = decryptor.update(fragment[16:]) + decryptor.finalize()
        pad = padded[-1]
        inner_mac = 0 if self.encrypt_then_mac else mac_length
        if pad + 1 + inner_mac > len(padded) or any(b != pad for b in padded[-pad - 1:]):
            raise TLSError(f"{where}: bad padding (wrong secret?)")
        content = padded[:-pad - 1 - inner_mac]
        if not self.encrypt_then_mac:
            mac = padded[-pad - 1 - mac_length:-pad - 1]
            if not hmac.compare_digest(mac, self._mac(seq, content_type, version, content)):
                raise TLSError(f"{where}: MAC check failed (wrong secret?)")
        return content


@dataclass(slots=True)
class _Direction:
    buffer: bytearray = field(default_factory=bytearray)
    protection: _RecordProtection | None = None
    encrypted: bool = False  # records of this direction are protected from now on
    application: bool = False  # TLS 1.3: past this direction's Finished
    traffic_secret: bytes = b""  # TLS 1.3: current secret, for KeyUpdate
    handshake_buffer: bytearray = field(default_factory=bytearray)
    waiting: list[tuple[int, bytes, bytes, int, float]] = field(default_factory=list)
    waiting_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Plaintext:
    """Application bytes of one direction (0 client to server, 1 server to client).

    *frame* and *t* are those the record arrived with, also when it waited for its secret.
    """

    direction: int
    data: bytes
    frame: int = 0
    t: float = 0.0


@dataclass(frozen=True, slots=True)
class HandshakeSeen:
    """The ServerHello fixed the version and suite."""

    version: int
    cipher_suite: int
    client_random: bytes


@dataclass(frozen=True, slots=True)
class Alert:
    direction: int
    level: int
    description: int
    frame: int = 0
    t: float = 0.0


TLSOutput = Plaintext | HandshakeSeen | Alert


class TLSStream:
    """Sans-IO passive decryption of one TLS connection, both directions."""

    def __init__(self, keylog: KeyLog) -> None:
        self._keylog = keylog
        self._dirs = (_Direction(), _Direction())
        self.client_random: bytes | None = None
        self._server_random = b""
        self.version = 0
        self._suite_code = 0
        self._suite: CipherSuite | None = None
        self._encrypt_then_mac = False
        self.decrypted = False  # a protected record was opened with the key log's secrets

    @property
    def waiting_for_keys(self) -> bool:
        """True while protected records are held because their secret is not known yet."""
        return any(d.waiting for d in self._dirs)

    @property
    def suite(self) -> str:
        return suite_name(self._suite_code)

    def feed(self, direction: int, data: bytes, frame: int = 0, t: float = 0.0) -> list[TLSOutput]:
        """Take TCP bytes of *direction* (that arrived in *frame* at *t*); return what complete records reveal."""
        d = self._dirs[direction]
        d.buffer += data
        out: list[TLSOutput] = []
        while len(d.buffer) >= 5:
            content_type, length = d.buffer[0], struct.unpack_from(">H", d.buffer, 3)[0]
            if content_type not in (20, 21, 22, 23) or d.buffer[1] != 3 or length > _MAX_RECORD:
                raise TLSError(f"not a TLS record: header {bytes(d.buffer[:5]).hex()}")
            if len(d.buffer) < 5 + length:
                break
            header, fragment = bytes(d.buffer[:5]), bytes(d.buffer[5:5 + length])
            del d.buffer[:5 + length]
            out.extend(self._record(direction, content_type, header, fragment, frame, t))
        return out

    def retry(self) -> list[TLSOutput]:
        """Decrypt held records now that the key log may hold their secrets."""
        out: list[TLSOutput] = []
        for direction, d in enumerate(self._dirs):
            if d.waiting and self._install_keys(direction):
                held, d.waiting, d.waiting_bytes = d.waiting, [], 0
                for content_type, header, fragment, frame, t in held:
                    out.extend(self._record(direction, content_type, header, fragment, frame, t))
        return out

    def _record(self, direction: int, content_type: int, header: bytes, fragment: bytes, frame: int,
                t: float) -> list[TLSOutput]:
        d = self._dirs[direction]
        if content_type == CONTENT_CHANGE_CIPHER_SPEC:
            # TLS 1.2 protects what follows; TLS 1.3 sends it only for middlebox compatibility, also
            # before any ServerHello (after a HelloRetryRequest), when the version is not known yet.
            if self.version and self.version != TLS13:
                d.encrypted = True
                d.protection = None
            return []
        if not d.encrypted:
            if content_type == CONTENT_HANDSHAKE:
                return self._handshake(direction, fragment)
            if content_type == CONTENT_ALERT and len(fragment) >= 2:
                return [Alert(direction, fragment[0], fragment[1], frame, t)]
            return []
        if d.protection is None and not d.waiting:
            self._install_keys(direction)
        if d.protection is None or d.waiting:
            d.waiting.append((content_type, header, fragment, frame, t))
            d.waiting_bytes += len(fragment)
            if d.waiting_bytes > MAX_WAITING_BYTES:
                raise TLSError(self.missing_secret_message())
            return []
        if self.version == TLS13:
            content_type, content = d.protection.open13(header, fragment)
        else:
            content = d.protection.open12(content_type, header[1:3], fragment)
        self.decrypted = True
        if content_type == CONTENT_APPLICATION_DATA:
            return [Plaintext(direction, content, frame, t)] if content else []
        if content_type == CONTENT_ALERT and len(content) >= 2:
            return [Alert(direction, content[0], content[1], frame, t)]
        if content_type == CONTENT_HANDSHAKE and self.version == TLS13:
            self._protected_handshake(direction, content)
        return []

    def missing_secret_message(self) -> str:
        random = self.client_random.hex() if self.client_random else "unknown (no ClientHello captured)"
        want = "CLIENT_TRAFFIC_SECRET_0/SERVER_TRAFFIC_SECRET_0" if self.version == TLS13 else "CLIENT_RANDOM"
        return f"no {want} secret for client random {random} (give --keylog)"

    def _handshake(self, direction: int, fragment: bytes) -> list[TLSOutput]:
        pos = 0
        out: list[TLSOutput] = []
        while pos + 4 <= len(fragment):
            msg_type = fragment[pos]
            length = int.from_bytes(fragment[pos + 1:pos + 4], "big")
            body = fragment[pos + 4:pos + 4 + length]
            pos += 4 + length
            if msg_type == HANDSHAKE_CLIENT_HELLO and len(body) >= 34:
                self.client_random = body[2:34]
            elif msg_type == HANDSHAKE_SERVER_HELLO and len(body) >= 38:
                out.extend(self._server_hello(body))
        return out

    def _server_hello(self, body: bytes) -> list[TLSOutput]:
        random = body[2:34]
        if random == HELLO_RETRY_RANDOM:
            return []  # a HelloRetryRequest: the real ServerHello follows the second ClientHello
        self._server_random = random
        sid_len = body[34]
        pos = 35 + sid_len
        if len(body) < pos + 3:
            raise TLSError("ServerHello truncated")
        self._suite_code = struct.unpack_from(">H", body, pos)[0]
        self.version = struct.unpack_from(">H", body, 0)[0]
        pos += 3
        if len(body) >= pos + 2:
            end = min(len(body), pos + 2 + struct.unpack_from(">H", body, pos)[0])
            pos += 2
            while pos + 4 <= end:
                ext_type, ext_len = struct.unpack_from(">HH", body, pos)
                if ext_type == EXTENSION_SUPPORTED_VERSIONS and ext_len == 2 and pos + 6 <= end:
                    self.version = struct.unpack_from(">H", body, pos + 4)[0]
                self._encrypt_then_mac |= ext_type == EXTENSION_ENCRYPT_THEN_MAC
                pos += 4 + ext_len
        self._suite = CIPHER_SUITES.get(self._suite_code)
        if self.version == TLS13:  # everything after the ServerHello is protected
            for d in self._dirs:
                d.encrypted = True
        return [HandshakeSeen(self.version, self._suite_code, self.client_random or b"")]

    def _install_keys(self, direction: int) -> bool:
        """Derive the read keys of *direction* from the key log; False when a secret is missing."""
        d = self._dirs[direction]
        if self._suite is None:
            if self._suite_code:
                raise TLSError(f"cipher suite {suite_name(self._suite_code)} is not supported for decryption")
            return False
        if self.client_random is None:
            return False
        suite = self._suite
        if self.version == TLS13:
            side = "CLIENT" if direction == 0 else "SERVER"
            label = f"{side}_TRAFFIC_SECRET_0" if d.application else f"{side}_HANDSHAKE_TRAFFIC_SECRET"
            secret = self._keylog.get(self.client_random, label)
            if secret is None:
                return False
            self._protect13(direction, secret)
            return True
        master = self._keylog.get(self.client_random, "CLIENT_RANDOM")
        if master is None:
            return False
        mac_len, key_len, iv_len = suite.mac_length, suite.key_length, suite.fixed_iv_length
        block = prf_tls12(suite.hash, master, b"key expansion", self._server_random + self.client_random,
                          2 * (mac_len + key_len + iv_len))
        parts: list[bytes] = []
        pos = 0
        for size in (mac_len, mac_len, key_len, key_len, iv_len, iv_len):
            parts.append(block[pos:pos + size])
            pos += size
        d.protection = _RecordProtection(suite, parts[2 + direction], parts[4 + direction],
                                         mac_key=parts[direction], encrypt_then_mac=self._encrypt_then_mac)
        return True

    def _protect13(self, direction: int, secret: bytes) -> None:
        assert self._suite is not None
        suite = self._suite
        d = self._dirs[direction]
        d.traffic_secret = secret
        d.protection = _RecordProtection(suite, hkdf_expand_label(suite.hash, secret, "key", b"", suite.key_length),
                                         hkdf_expand_label(suite.hash, secret, "iv", b"", 12))

    def _protected_handshake(self, direction: int, content: bytes) -> None:
        """Follow Finished (switch to the application secret) and KeyUpdate (RFC 8446 clause 4.6.3)."""
        d = self._dirs[direction]
        d.handshake_buffer += content
        while len(d.handshake_buffer) >= 4:
            length = int.from_bytes(d.handshake_buffer[1:4], "big")
            if len(d.handshake_buffer) < 4 + length:
                break
            msg_type = d.handshake_buffer[0]
            del d.handshake_buffer[:4 + length]
            if msg_type == HANDSHAKE_FINISHED and not d.application:
                d.application = True
                d.protection = None  # the next record installs the application secret, or waits for it
                self._install_keys(direction)
            elif msg_type == HANDSHAKE_KEY_UPDATE:
                assert self._suite is not None
                hash_alg = self._suite.hash
                self._protect13(direction, hkdf_expand_label(hash_alg, d.traffic_secret, "traffic upd", b"",
                                                             hash_alg.digest_size))
