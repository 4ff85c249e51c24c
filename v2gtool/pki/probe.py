"""``tls-verify`` online: one TLS handshake as EVCC (client) or SECC (server), observed and explained.

The handshake runs on a blocking socket with a context from :mod:`v2gtool.pki.tls`. Every
handshake message is observed through the context's message callback into a
:class:`~v2gtool.pki.handshake.HandshakeTrace`; from it the report gives the negotiated version,
suite, group and signature schemes, the peer chain with its -20 profile check, and for a failed
handshake a plain-words diagnosis of which side offered what.
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from v2gtool.exit_codes import ExitCode
from v2gtool.pki.handshake import (
    ALERTS,
    CIPHER_SUITES,
    GROUPS,
    SIGNATURE_SCHEMES,
    VERSIONS,
    HandshakeTrace,
    name_of,
)
from v2gtool.pki.profiles import (
    ChainReport,
    KeyType,
    LeafRole,
    Protocol,
    check_chain,
    key_type_of,
    subject_of,
)
from v2gtool.pki.tls import CIPHER_SUITES as OFFERED_SUITES
from v2gtool.pki.tls import SIGNATURE_SCHEMES as OFFERED_SCHEMES

# The TLS signature scheme a key of each V2G key type signs with (RFC 8446 section 4.2.3).
SCHEME_FOR_KEY = {KeyType.SECP521R1: 0x0603, KeyType.ED448: 0x0808, KeyType.SECP256R1: 0x0403}
_TLS13 = 0x0304
# After the client's Finished a -20 SECC may still refuse the vehicle certificate; wait this
# long for such an alert before calling the handshake good.
POST_HANDSHAKE_ALERT_WAIT = 0.2


@dataclass(frozen=True)
class HandshakeReport:
    """What one handshake showed, from our side (``side`` is ``"client"`` or ``"server"``)."""

    side: str
    peer: str
    protocol: Protocol
    ok: bool
    seconds: float
    version: str | None = None
    cipher_suite: str | None = None
    group: str | None = None
    peer_signature: str | None = None
    own_signature: str | None = None
    peer_chain: tuple[x509.Certificate, ...] = ()
    profile: ChainReport | None = None
    error: str | None = None
    diagnosis: tuple[str, ...] = field(default=())
    timed_out: bool = False
    """The peer stayed silent past the timeout (in connect or in the handshake)."""
    connected: bool = True
    """False when no TCP connection came up, so no TLS was tried."""

    @property
    def exit_code(self) -> ExitCode:
        """0 ok; 3 the peer stayed silent (timeout); 1 no TCP connection; 5 any TLS or certificate failure."""
        if self.ok:
            return ExitCode.OK
        if self.timed_out:
            return ExitCode.TIMEOUT
        return ExitCode.SECURITY if self.connected else ExitCode.FAILURE

    def to_json(self) -> dict[str, Any]:
        profile = self.profile
        return {
            "event": "TlsHandshake",
            "side": self.side,
            "peer": self.peer,
            "protocol": self.protocol.value,
            "ok": self.ok,
            "handshake_ms": round(self.seconds * 1000, 3),
            "version": self.version,
            "cipher_suite": self.cipher_suite,
            "group": self.group,
            "peer_signature": self.peer_signature,
            "own_signature": self.own_signature,
            "peer_chain": [subject_of(c) for c in self.peer_chain],
            "profile_findings": [str(f) for f in profile.findings] if profile else [],
            "error": self.error,
            "diagnosis": list(self.diagnosis),
        }


class _Observer:
    """Routes the context's message callback to one trace per connection."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self._traces: dict[int, HandshakeTrace] = {}
        # SSLContext._msg_callback is CPython's (undocumented, stable since 3.8) record-layer hook.
        context._msg_callback = self._callback  # type: ignore[attr-defined]

    def watch(self, conn: ssl.SSLSocket) -> HandshakeTrace:
        trace = HandshakeTrace()
        self._traces[id(conn)] = trace
        return trace

    def forget(self, conn: ssl.SSLSocket) -> None:
        self._traces.pop(id(conn), None)

    def _callback(
        self, conn: Any, direction: str, version: Any, content_type: Any, msg_type: Any, data: bytes
    ) -> None:
        trace = self._traces.get(id(conn))
        if trace is not None:
            trace.feed("sent" if direction == "write" else "received", int(content_type), data)


def _names(table: dict[int, str], codes: tuple[int, ...]) -> str:
    return ", ".join(name_of(table, c) for c in codes if c != 0x00FF) or "none"


def missing_mutual_authentication(trace: HandshakeTrace, side: str, protocol: Protocol) -> str | None:
    """Why the handshake of *trace* lacks the mutual authentication ISO 15118-20 requires, or None.

    -20 TLS authenticates both sides (clause 7.7.3, standards digest section 5): the SECC sends a
    CertificateRequest (RFC 8446 section 4.3.2) and the EVCC answers with its vehicle certificate
    (section 4.4.2). As server we miss the EVCC's certificate; as client, the SECC's request for ours.
    """
    if protocol is not Protocol.ISO20:
        return None
    if side == "server" and trace.certificates.get("received") == ():
        return (
            "the EVCC sent no certificate, but ISO 15118-20 requires mutual authentication; we asked for "
            f"one signed with {', '.join(OFFERED_SCHEMES[protocol])}"
        )
    if side == "client" and trace.certificate_request_schemes is None:
        return (
            "the SECC did not ask for our vehicle certificate (no CertificateRequest), but ISO 15118-20 "
            "requires mutual authentication"
        )
    return None


def diagnose(trace: HandshakeTrace, side: str, protocol: Protocol, own_key: KeyType | None) -> list[str]:
    """Explain a failed handshake in plain words: which side offered what, and what did not match."""
    peer = "EVCC" if side == "server" else "SECC"
    ours = OFFERED_SUITES[protocol]
    wanted_version = _TLS13 if protocol is Protocol.ISO20 else 0x0303
    received = trace.alerts.get("received")
    hello = trace.client_hello
    notes: list[str] = []
    if side == "server" and hello is not None:
        if wanted_version not in hello.versions:
            notes.append(
                f"the EVCC offered only {_names(VERSIONS, hello.versions)}; "
                f"ISO 15118-{protocol.value[3:]} here requires {VERSIONS[wanted_version]}"
            )
        offered = {name_of(CIPHER_SUITES, c) for c in hello.cipher_suites}
        if not offered & set(ours):
            notes.append(
                f"the EVCC offered only the cipher suites {_names(CIPHER_SUITES, hello.cipher_suites)}; "
                f"we accept only {', '.join(ours)}"
            )
        missing = missing_mutual_authentication(trace, side, protocol)
        if missing is not None:
            notes.append(missing)
        if own_key is not None and SCHEME_FOR_KEY[own_key] not in hello.signature_schemes:
            notes.append(
                f"the EVCC cannot verify our {own_key.value} certificate: it offered only the signature "
                f"schemes {_names(SIGNATURE_SCHEMES, hello.signature_schemes)}"
            )
    if side == "client":
        if received == 70:
            notes.append(
                f"the SECC refused {VERSIONS[wanted_version]} (alert protocol_version)"
                + (
                    ": it speaks only TLS 1.2 or older; ISO 15118-20 requires TLS 1.3 "
                    "(an ISO 15118-2 SECC: retry with --protocol iso2)"
                    if protocol is Protocol.ISO20
                    else ""
                )
            )
        elif received in (40, 71) and trace.server_hello is None:
            notes.append(
                f"the SECC refused our hello (alert {ALERTS[received]}): we offered only the cipher suites "
                f"{', '.join(ours)} and the signature schemes {', '.join(OFFERED_SCHEMES[protocol])}; "
                "it supports none of those suites or has no certificate of a key type we accept"
            )
        schemes = trace.certificate_request_schemes
        if own_key is not None and schemes is not None and SCHEME_FOR_KEY[own_key] not in schemes:
            notes.append(
                f"the SECC does not accept our {own_key.value} vehicle certificate: its CertificateRequest "
                f"allows only {_names(SIGNATURE_SCHEMES, schemes)}"
            )
    if received == 116:  # RFC 8446 section 6.2: a certificate is required and none was provided
        notes.append(f"the {peer} requires a certificate and we sent none (alert certificate_required)")
    elif received in (42, 43, 45, 46, 48):
        notes.append(f"the {peer} rejected our certificate chain (alert {ALERTS[received]})")
    if not notes and received is not None and received != 0:
        notes.append(f"the {peer} aborted the handshake with alert {ALERTS.get(received, received)}")
    return notes


def _own_key_type(context_chain: x509.Certificate | None) -> KeyType | None:
    if context_chain is None:
        return None
    key_type = key_type_of(context_chain)
    return key_type if isinstance(key_type, KeyType) else None


def _report(
    trace: HandshakeTrace,
    side: str,
    peer: str,
    protocol: Protocol,
    roots: tuple[x509.Certificate, ...],
    own_leaf: x509.Certificate | None,
    seconds: float,
    error: str | None,
    timed_out: bool,
) -> HandshakeReport:
    try:
        chain = tuple(x509.load_der_x509_certificate(der) for der in trace.certificates.get("received", ()))
    except ValueError:
        chain = ()
        error = error or "the peer sent a certificate that is not valid DER X.509"
    role = LeafRole.SECC if side == "client" else LeafRole.VEHICLE
    profile = check_chain(chain, roots, role, protocol) if chain else None
    hello = trace.server_hello
    ok = error is None and (profile is None or profile.ok)
    return HandshakeReport(
        side=side,
        peer=peer,
        protocol=protocol,
        ok=ok,
        seconds=seconds,
        version=VERSIONS.get(hello.version) if hello else None,
        cipher_suite=name_of(CIPHER_SUITES, hello.cipher_suite) if hello else None,
        group=name_of(GROUPS, trace.group) if trace.group is not None else None,
        peer_signature=name_of(SIGNATURE_SCHEMES, trace.verify_schemes["received"])
        if "received" in trace.verify_schemes
        else None,
        own_signature=name_of(SIGNATURE_SCHEMES, trace.verify_schemes["sent"])
        if "sent" in trace.verify_schemes
        else None,
        peer_chain=chain,
        profile=profile,
        error=error,
        diagnosis=tuple(diagnose(trace, side, protocol, _own_key_type(own_leaf))) if error else (),
        timed_out=timed_out,
    )


def peer_name(address: tuple[Any, ...]) -> str:
    """``[addr%iface]:port`` for IPv6 (the interface names a link-local scope), ``addr:port`` for IPv4."""
    if len(address) != 4:
        return f"{address[0]}:{address[1]}"
    host = str(address[0]).partition("%")[0]
    if address[3]:
        try:
            host = f"{host}%{socket.if_indextoname(address[3])}"
        except OSError:
            host = f"{host}%{address[3]}"
    return f"[{host}]:{address[1]}"


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"certificate verification failed: {exc.verify_message}"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed: {exc.reason or exc}"
    if isinstance(exc, TimeoutError):
        return "TLS handshake timed out"
    return f"TLS handshake failed: {exc}"


def _timed_handshake(conn: ssl.SSLSocket) -> tuple[float, str | None, bool]:
    """Run *conn*'s handshake: how long it took (seconds), why it failed (None: it did not) and
    whether the peer stayed silent past the socket's timeout."""
    start = time.perf_counter()
    try:
        conn.do_handshake()
    except (ssl.SSLError, OSError) as exc:
        return time.perf_counter() - start, _error_text(exc), isinstance(exc, TimeoutError)
    return time.perf_counter() - start, None, False


def _wait_for_late_alert(conn: ssl.SSLSocket, wait: float) -> str | None:
    """TLS 1.3 client: the server checks our certificate after our Finished; catch its refusal."""
    conn.settimeout(wait)
    try:
        conn.recv(1)
    except TimeoutError:
        return None
    except ssl.SSLError as exc:
        return _error_text(exc)
    except OSError:
        return None
    return None


def handshake_as_client(
    address: tuple[Any, ...],
    context: ssl.SSLContext,
    protocol: Protocol,
    roots: tuple[x509.Certificate, ...],
    own_leaf: x509.Certificate | None,
    *,
    timeout: float = 20.0,
    late_alert_wait: float = POST_HANDSHAKE_ALERT_WAIT,
) -> HandshakeReport:
    """Connect to *address* (a ``socket.getaddrinfo`` sockaddr) and run one handshake as the EVCC.

    ``seconds`` of the report covers the TLS handshake only. With TLS 1.3 the SECC judges our
    certificate after our Finished, so the report waits *late_alert_wait* seconds for its verdict
    (0 skips that, e.g. to time handshakes back to back).
    """
    observer = _Observer(context)
    family = socket.AF_INET6 if len(address) == 4 else socket.AF_INET
    peer = peer_name(address)
    raw = socket.socket(family, socket.SOCK_STREAM)
    raw.settimeout(timeout)
    try:
        raw.connect(address)
    except OSError as exc:
        raw.close()
        return HandshakeReport(
            "client", peer, protocol, False, 0.0, error=f"cannot connect to {peer}: {exc}",
            timed_out=isinstance(exc, TimeoutError), connected=False,
        )  # fmt: skip
    conn = context.wrap_socket(raw, do_handshake_on_connect=False)
    trace = observer.watch(conn)
    seconds, error, timed_out = _timed_handshake(conn)
    if error is None:
        error = missing_mutual_authentication(trace, "client", protocol)
    if error is None and protocol is Protocol.ISO20 and late_alert_wait > 0:
        error = _wait_for_late_alert(conn, late_alert_wait)
    try:
        return _report(trace, "client", peer, protocol, roots, own_leaf, seconds, error, timed_out)
    finally:
        observer.forget(conn)
        conn.close()


def handshake_as_server(
    raw: socket.socket,
    address: tuple[Any, ...],
    context: ssl.SSLContext,
    protocol: Protocol,
    roots: tuple[x509.Certificate, ...],
    own_leaf: x509.Certificate | None,
    *,
    timeout: float = 20.0,
) -> HandshakeReport:
    """Run one handshake as the SECC on the accepted connection *raw* from *address*; close it."""
    observer = _Observer(context)
    raw.settimeout(timeout)
    conn = context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
    trace = observer.watch(conn)
    seconds, error, timed_out = _timed_handshake(conn)
    try:
        return _report(
            trace, "server", peer_name(address), protocol, roots, own_leaf, seconds, error, timed_out
        )
    finally:
        observer.forget(conn)
        conn.close()
