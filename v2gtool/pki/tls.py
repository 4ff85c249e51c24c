"""TLS contexts for V2G communication (ISO 15118-20 clause 7.7.3, ISO 15118-2 clause 7.7.3).

-20: TLS 1.3 only, cipher suites TLS_AES_256_GCM_SHA384 and TLS_CHACHA20_POLY1305_SHA256 only,
mutual authentication (the SECC requires the EVCC's vehicle certificate; both sides verify the
peer against the trust store). -2 (``Protocol.ISO2``): TLS 1.2 only, ECDHE-ECDSA-AES128-SHA256,
server authentication only. Roots come from the trust directory through its hash links.

Python's ``ssl`` module cannot restrict TLS 1.3 cipher suites (it has no binding for
``SSL_CTX_set_ciphersuites``), nor signature schemes, so :func:`_restrict` calls OpenSSL through
``ctypes`` on the context's own ``SSL_CTX``, after checking that it found the right pointer.

OpenSSL verifies the peer's chain against every root of the trust directory, V2G, OEM and MO alike.
"Valid" is more (standards digest section 5): the chain must reach the trust anchor of the peer's
role with that role's profiles, an SECC leaf (DC=CPO) under the V2G root, a vehicle leaf (DC=OEM)
under the OEM root. So each context also has a verify callback (:func:`_check_peer_role`) that runs
:func:`~v2gtool.pki.profiles.check_chain` on the chain OpenSSL verified and refuses the handshake
(alert unsupported_certificate) when it fails; the handshake's exception then says why.
"""

from __future__ import annotations

import _ctypes
import _ssl
import contextlib
import ctypes
import functools
import logging
import os
import ssl
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
    PublicKeyTypes,
)

from v2gtool.errors import ConfigError, V2GToolError
from v2gtool.exit_codes import ExitCode
from v2gtool.pki.create import DEFAULT_CERTS_DIR
from v2gtool.pki.handshake import ISO2_CIPHER_SUITES, ISO20_CIPHER_SUITES
from v2gtool.pki.profiles import LeafRole, Protocol, Severity, check_chain, first_error, key_problem
from v2gtool.pki.trust import DEFAULT_TRUST_DIR, load_pem_chain, require_trust_dir

log = logging.getLogger(__name__)


class TlsError(V2GToolError):
    """A TLS context cannot be built, or a handshake failed: exit status 5, TLS or certificate."""

    exit_code = ExitCode.SECURITY


@dataclass(frozen=True)
class Credentials:
    """A certificate chain file (leaf first) and its private key file."""

    chain: Path
    key: Path

    @classmethod
    def named(cls, certs_dir: Path, name: str) -> Credentials:
        """``<certs_dir>/<name>.pem`` and ``.key``, the ``pki init`` layout."""
        return cls(certs_dir / f"{name}.pem", certs_dir / f"{name}.key")


def default_credentials(certs_dir: Path, server: bool, protocol: Protocol) -> Credentials | None:
    """The SECC leaf for the protocol, the vehicle leaf for a -20 EVCC, nothing for a -2 EVCC."""
    if server:
        return Credentials.named(certs_dir, "secc_iso20" if protocol is Protocol.ISO20 else "secc_iso2")
    return Credentials.named(certs_dir, "vehicle") if protocol is Protocol.ISO20 else None


# ssl.h: SSL_CTX_set1_sigalgs_list / SSL_CTX_set1_client_sigalgs_list are SSL_CTX_ctrl macros.
_SSL_CTRL_SET_SIGALGS_LIST = 98
_SSL_CTRL_SET_CLIENT_SIGALGS_LIST = 102
CIPHER_SUITES = {Protocol.ISO20: ISO20_CIPHER_SUITES, Protocol.ISO2: ISO2_CIPHER_SUITES}
"""Cipher suites offered and accepted per protocol."""
SIGNATURE_SCHEMES = {
    Protocol.ISO20: ("ecdsa_secp521r1_sha512", "ed448"),
    Protocol.ISO2: ("ecdsa_secp256r1_sha256",),
}
"""Signature schemes offered and accepted: those of the protocol's key types only."""

# x509_vfy.h: the verify error a chain refused for its role is reported with ("unsuitable certificate
# purpose"); OpenSSL sends the peer the alert unsupported_certificate for it (ssl_x509err2alert).
_X509_V_ERR_INVALID_PURPOSE = 26
# ssl.h: int (*SSL_verify_cb)(int preverify_ok, X509_STORE_CTX *x509_ctx)
_VERIFY_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
_PEER = {LeafRole.SECC: "SECC", LeafRole.VEHICLE: "EVCC"}
_PROFILES = {Protocol.ISO20: "ISO 15118-20 Annex B", Protocol.ISO2: "ISO 15118-2 Annex F"}

_libssl: ctypes.CDLL | None = None


def _ssl_library() -> ctypes.CDLL:
    """The libssl the ``ssl`` module itself is linked against (symbols resolve through ``_ssl``)."""
    global _libssl
    if _libssl is None:
        lib = ctypes.CDLL(_ssl.__file__)
        lib.SSL_CTX_get_options.restype = ctypes.c_uint64
        lib.SSL_CTX_get_options.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_set_ciphersuites.restype = ctypes.c_int
        lib.SSL_CTX_set_ciphersuites.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
        lib.SSL_CTX_ctrl.restype = ctypes.c_long
        lib.SSL_CTX_ctrl.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_long, ctypes.c_char_p]
        lib.SSL_CTX_get_verify_mode.restype = ctypes.c_int
        lib.SSL_CTX_get_verify_mode.argtypes = [ctypes.c_void_p]
        lib.SSL_CTX_set_verify.restype = None
        lib.SSL_CTX_set_verify.argtypes = [ctypes.c_void_p, ctypes.c_int, _VERIFY_CALLBACK]
        lib.X509_STORE_CTX_get_error_depth.restype = ctypes.c_int
        lib.X509_STORE_CTX_get_error_depth.argtypes = [ctypes.c_void_p]
        lib.X509_STORE_CTX_set_error.restype = None
        lib.X509_STORE_CTX_set_error.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.X509_STORE_CTX_get0_chain.restype = ctypes.c_void_p
        lib.X509_STORE_CTX_get0_chain.argtypes = [ctypes.c_void_p]
        lib.OPENSSL_sk_num.restype = ctypes.c_int
        lib.OPENSSL_sk_num.argtypes = [ctypes.c_void_p]
        lib.OPENSSL_sk_value.restype = ctypes.c_void_p
        lib.OPENSSL_sk_value.argtypes = [ctypes.c_void_p, ctypes.c_int]
        lib.i2d_X509.restype = ctypes.c_int
        lib.i2d_X509.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.POINTER(ctypes.c_ubyte))]
        _libssl = lib
    return _libssl


def _ssl_ctx(context: ssl.SSLContext) -> int:
    """The ``SSL_CTX *`` of *context*: PySSLContext starts with PyObject_HEAD, then that pointer."""
    pointer = ctypes.c_void_p.from_address(id(context) + object.__basicsize__).value
    if pointer is None or _ssl_library().SSL_CTX_get_options(pointer) != context.options:
        raise TlsError("cannot reach OpenSSL through the ssl module: unexpected object layout")
    return pointer


def _restrict(context: ssl.SSLContext, protocol: Protocol) -> None:
    """Limit TLS 1.3 cipher suites and signature schemes, which ``ssl`` has no setters for."""
    lib, pointer = _ssl_library(), _ssl_ctx(context)
    suites = ":".join(CIPHER_SUITES[protocol])
    if protocol is Protocol.ISO20 and lib.SSL_CTX_set_ciphersuites(pointer, suites.encode()) != 1:
        raise TlsError(f"OpenSSL rejected the TLS 1.3 cipher suites {suites}")
    schemes = ":".join(SIGNATURE_SCHEMES[protocol]).encode()
    for command in (_SSL_CTRL_SET_SIGALGS_LIST, _SSL_CTRL_SET_CLIENT_SIGALGS_LIST):
        if lib.SSL_CTX_ctrl(pointer, command, 0, schemes) != 1:
            raise TlsError(f"OpenSSL rejected the signature schemes {schemes.decode()}")


def _peer_problem(chain: Sequence[x509.Certificate], role: LeafRole, protocol: Protocol) -> str | None:
    """Why the peer's verified *chain* (leaf first, its trust anchor last) is not a chain of *role*
    with *protocol*'s profiles, in one line; None when it is."""
    problem = first_error(check_chain(chain, chain[-1:], role, protocol).findings)
    if problem is None:
        return None
    return f"the {_PEER[role]}'s certificate chain is not a valid {role.label} chain ({_PROFILES[protocol]}): {problem}"


def _verified_chain(store: int) -> list[x509.Certificate]:
    """The chain OpenSSL built and verified in the X509_STORE_CTX *store*, leaf first."""
    lib = _ssl_library()
    stack = lib.X509_STORE_CTX_get0_chain(store)
    chain = []
    for index in range(lib.OPENSSL_sk_num(stack)):
        cert = lib.OPENSSL_sk_value(stack, index)
        der = (ctypes.c_ubyte * lib.i2d_X509(cert, None))()
        lib.i2d_X509(cert, ctypes.byref(ctypes.cast(der, ctypes.POINTER(ctypes.c_ubyte))))
        chain.append(x509.load_der_x509_certificate(bytes(der)))
    return chain


class _Refusal(threading.local):
    """Why the verify callback refused the peer, for the handshake running in this thread."""

    reason: str | None = None


_refusal = _Refusal()


@functools.cache
def _peer_verifier(role: LeafRole, protocol: Protocol) -> _ctypes.CFuncPtr:
    """The verify callback that checks a peer of *role* (one per role and protocol, kept for good:
    OpenSSL holds a bare pointer to it)."""

    def verify(preverified: int, store: int | None) -> int:
        lib = _ssl_library()
        if not preverified or store is None or lib.X509_STORE_CTX_get_error_depth(store) != 0:
            return preverified  # OpenSSL's own verdict; it calls root first, so depth 0 comes last
        try:
            reason = _peer_problem(_verified_chain(store), role, protocol)
        except Exception as exc:  # an exception cannot cross OpenSSL: refuse the chain instead
            reason = f"cannot check the {_PEER[role]}'s certificate chain: {exc}"
        if reason is None:
            return 1
        _refusal.reason = reason
        lib.X509_STORE_CTX_set_error(store, _X509_V_ERR_INVALID_PURPOSE)
        return 0

    return _VERIFY_CALLBACK(verify)


def _check_peer_role(context: ssl.SSLContext, role: LeafRole, protocol: Protocol) -> None:
    """Check every peer chain OpenSSL accepts against *role*. The ``ssl`` module keeps a context's
    verify callback when its ``verify_mode`` changes."""
    lib, pointer = _ssl_library(), _ssl_ctx(context)
    lib.SSL_CTX_set_verify(pointer, lib.SSL_CTX_get_verify_mode(pointer), _peer_verifier(role, protocol))


@contextlib.contextmanager
def _explained() -> Iterator[None]:
    """Turn OpenSSL's "unsuitable certificate purpose" for a peer refused by its role into the reason."""
    _refusal.reason = None
    try:
        yield
    except ssl.SSLCertVerificationError as exc:
        reason, _refusal.reason = _refusal.reason, None
        if reason is None:
            raise
        refused = ssl.SSLCertVerificationError(exc.errno, f"certificate verify failed: {reason}")
        refused.reason, refused.library = exc.reason, exc.library
        refused.verify_code, refused.verify_message = exc.verify_code, reason
        raise refused from exc


class _CheckedSSLObject(ssl.SSLObject):
    """asyncio's TLS object: a peer refused for its role raises with the reason."""

    def do_handshake(self) -> None:
        with _explained():
            super().do_handshake()


class _CheckedSSLSocket(ssl.SSLSocket):
    """A blocking TLS socket: a peer refused for its role raises with the reason."""

    def do_handshake(self, block: bool = False) -> None:
        with _explained():
            super().do_handshake(block)


class V2GContext(ssl.SSLContext):
    """A context whose handshakes report a peer refused for its role (:func:`_check_peer_role`)."""

    sslobject_class = _CheckedSSLObject
    sslsocket_class = _CheckedSSLSocket


def _keylog(context: ssl.SSLContext, keylog: Path | None) -> None:
    """Write NSS key-log lines to *keylog*, or to $SSLKEYLOGFILE when no file is given."""
    target = keylog or (Path(os.environ["SSLKEYLOGFILE"]) if os.environ.get("SSLKEYLOGFILE") else None)
    if target is None:
        return
    try:
        # The secrets decrypt the session: create the file for its owner only.
        os.close(os.open(target, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600))
        context.keylog_filename = str(target)  # OpenSSL opens it again: a file that refuses appends fails here
    except OSError as exc:
        raise ConfigError(f"cannot open key-log file {target}: {exc.strerror}") from None


def _check_own_key(leaf: x509.Certificate, chain: Path, protocol: Protocol) -> None:
    """Refuse our own leaf when its key type is not one of *protocol*'s (ISO 15118-20 Annex B).

    OpenSSL would load it, then find no certificate matching the signature schemes of
    :data:`SIGNATURE_SCHEMES` and send none, which the peer reports as a missing certificate.
    """
    problem = key_problem(leaf, protocol)
    if problem is not None:
        raise TlsError(f"own certificate {chain}: {problem[1]}")


def check_own_chain(chain: Path, role: LeafRole, protocol: Protocol, roots: Sequence[x509.Certificate]) -> None:
    """Check our own certificate *chain* (PEM, leaf first) by *role*'s profiles before a peer sees it,
    as the peer checks it (:func:`_peer_problem`, standards digest section 5): an error (wrong role,
    keyUsage, expired or not yet valid, ...) is a :class:`TlsError` naming the file, the leaf's own
    problems first; a warning (expires within 14 days, [V2G20-2218]) is logged.

    A root missing from *roots* (our trust store) is no finding: the peer verifies our chain
    against its own trust anchors, which ours need not hold.
    """
    report = check_chain(load_pem_chain(chain), roots, role, protocol)
    leaf = report.subjects[0]
    findings = sorted((f for f in report.findings if f.code != "unknown-root"), key=lambda f: f.subject != leaf)
    problem = first_error(findings)
    if problem is not None:
        raise TlsError(f"own certificate {chain} is not a valid {role.label} chain ({_PROFILES[protocol]}): {problem}")
    for finding in findings:
        if finding.severity is Severity.WARNING:
            log.warning("own certificate %s: %s", chain, finding.detail)


def check_credentials(chain: Path, key: Path | None = None) -> x509.Certificate:
    """Read our own certificate *chain* (PEM, leaf first) and private *key* (PEM; None: in the chain
    file too) as OpenSSL will load them, and return the leaf. Each problem is a :class:`TlsError`
    (exit 5) naming the file and what is wrong with it, where OpenSSL would only say "PEM lib": an
    empty file, not a PEM certificate, not a private key, an encrypted key, a key that does not
    match the certificate."""
    leaf = _own_certificates(chain)[0]
    key_path = key or chain
    private = _own_key(key_path)
    if _public_der(private.public_key()) != _public_der(leaf.public_key()):
        raise TlsError(f"private key {key_path} does not match the certificate {chain} (the file's first, its leaf)")
    return leaf


def load_credentials(context: ssl.SSLContext, chain: Path, key: Path | None = None) -> None:
    """Load our own *chain* and *key* (None: in the chain file too) into *context*, once
    :func:`check_credentials` passed them, never asking for a passphrase; what OpenSSL still
    refuses is a :class:`TlsError` naming both files."""
    try:
        context.load_cert_chain(chain, key, password=refuse_passphrase(key or chain))
    except ssl.SSLError as exc:
        raise TlsError(f"cannot load {chain} with key {key or chain}: {exc.reason or exc}") from None


def _own_file(path: Path, what: str) -> bytes:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise TlsError(f"{what} {path}: {exc.strerror}") from None
    if not data.strip():
        raise TlsError(f"{what} {path}: empty file")
    return data


def _own_certificates(path: Path) -> list[x509.Certificate]:
    data = _own_file(path, "own certificate")
    try:
        return x509.load_pem_x509_certificates(data)
    except ValueError:
        hint = " (it holds a private key: give the chain, the .pem beside it)" if b"PRIVATE KEY-----" in data else ""
        raise TlsError(f"own certificate {path}: not a PEM certificate{hint}") from None


def _own_key(path: Path) -> PrivateKeyTypes:
    data = _own_file(path, "private key")
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:  # "Password was not given but private key is encrypted"
        raise encrypted_key(path) from None
    except (ValueError, UnsupportedAlgorithm):
        hint = " (it holds a certificate: give its key, the .key beside it)" if b"CERTIFICATE-----" in data else ""
        raise TlsError(f"private key {path}: not a private key{hint}") from None


def _public_der(key: PublicKeyTypes | CertificatePublicKeyTypes) -> bytes:
    return key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def encrypted_key(key: Path) -> TlsError:
    """The error for a private key file that is encrypted (v2gtool never asks for a passphrase)."""
    return TlsError(
        f"private key {key} is encrypted: v2gtool reads unencrypted keys only "
        f"(keep it mode 0600; decrypt it with openssl pkey -in {key} -out NEW.key)"
    )


def refuse_passphrase(key: Path) -> Callable[[], str]:
    """The ``password`` callback of ``load_cert_chain``: OpenSSL calls it for an encrypted key only.

    Without a callback OpenSSL would prompt "Enter PEM pass phrase:" on the terminal, which hangs
    a service; the callback's exception propagates out of ``load_cert_chain`` instead.
    """

    def refuse() -> str:
        raise encrypted_key(key)

    return refuse


def _build(
    purpose: ssl._SSLMethod,
    protocol: Protocol,
    trust_dir: Path,
    credentials: Credentials | None,
    keylog: Path | None,
) -> ssl.SSLContext:
    context = V2GContext(purpose)
    if protocol is Protocol.ISO20:
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_3
    else:
        context.minimum_version = context.maximum_version = ssl.TLSVersion.TLSv1_2
        context.set_ciphers(":".join(CIPHER_SUITES[protocol]))
        context.set_ecdh_curve("prime256v1")
    _restrict(context, protocol)
    # SECCs are addressed by link-local address; V2G certificates carry no host names to match.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_REQUIRED
    _check_peer_role(context, LeafRole.VEHICLE if purpose == ssl.PROTOCOL_TLS_SERVER else LeafRole.SECC, protocol)
    require_trust_dir(trust_dir)
    context.load_verify_locations(capath=str(trust_dir))
    if credentials is not None:
        for path in (credentials.chain, credentials.key):
            if not path.is_file():
                raise TlsError(f"cannot load certificate: {path} does not exist")
        _check_own_key(check_credentials(credentials.chain, credentials.key), credentials.chain, protocol)
        load_credentials(context, credentials.chain, credentials.key)
    _keylog(context, keylog)
    return context


def server_context(
    certs_dir: Path = DEFAULT_CERTS_DIR,
    trust_dir: Path = DEFAULT_TRUST_DIR,
    protocol: Protocol = Protocol.ISO20,
    *,
    credentials: Credentials | None = None,
    keylog: Path | None = None,
) -> ssl.SSLContext:
    """The SECC's context: its leaf for *protocol*; -20 requires and verifies the EVCC's certificate."""
    context = _build(
        ssl.PROTOCOL_TLS_SERVER,
        protocol,
        trust_dir,
        credentials or default_credentials(certs_dir, True, protocol),
        keylog,
    )
    if protocol is Protocol.ISO2:
        context.verify_mode = ssl.CERT_NONE  # -2: the EVCC has no TLS client certificate
    return context


def client_context(
    certs_dir: Path = DEFAULT_CERTS_DIR,
    trust_dir: Path = DEFAULT_TRUST_DIR,
    protocol: Protocol = Protocol.ISO20,
    *,
    credentials: Credentials | None = None,
    keylog: Path | None = None,
) -> ssl.SSLContext:
    """The EVCC's context: verifies the SECC; -20 presents the vehicle certificate."""
    return _build(
        ssl.PROTOCOL_TLS_CLIENT,
        protocol,
        trust_dir,
        credentials or default_credentials(certs_dir, False, protocol),
        keylog,
    )
