"""The TLS peer's certificate must be one of its role (standards digest section 5): the EVCC takes only
an SECC chain (DC=CPO under the V2G root), the SECC only a vehicle chain (DC=OEM under the OEM root),
although the trust directory holds both roots. Real TLS 1.3 on loopback, both directions, through
the asyncio transport of serve / connect / session run and the blocking sockets of tls-verify."""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from pathlib import Path

import pytest

from v2gtool.net.v2g_tcp import start_server
from v2gtool.pki.probe import HandshakeReport, handshake_as_client, handshake_as_server
from v2gtool.pki.profiles import Protocol
from v2gtool.pki.tls import Credentials, client_context, server_context
from v2gtool.pki.trust import TrustStore

SECC_REFUSED = "the SECC's certificate chain is not a valid SECC certificate chain (ISO 15118-20 Annex B): "
EVCC_REFUSED = "the EVCC's certificate chain is not a valid vehicle certificate chain (ISO 15118-20 Annex B): "


def contexts(base: Path, secc_leaf: str = "secc_iso20", ev_leaf: str = "vehicle") -> tuple[ssl.SSLContext, ...]:
    certs, trust = base / "certs", base / "trust" / "certs"
    return (
        server_context(certs, trust, credentials=Credentials.named(certs, secc_leaf)),
        client_context(certs, trust, credentials=Credentials.named(certs, ev_leaf)),
    )


async def session(server: ssl.SSLContext, client: ssl.SSLContext) -> tuple[bytes | BaseException, list[str]]:
    """One connection through :func:`start_server`: what the EVCC read (the SECC sends b"hi" after
    the handshake) or the exception it got, and the SECC's handshake failures."""
    failures: list[str] = []
    failed = asyncio.Event()

    def handshake_failed(_peer: str, reason: str) -> None:
        failures.append(reason)
        failed.set()

    async def handle(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"hi")
        await writer.drain()
        writer.close()

    server_task = await start_server(
        handle, "127.0.0.1", 0, server, handshake_timeout=5, handshake_failed=handshake_failed
    )
    port = server_task.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
        received: bytes | BaseException = await asyncio.wait_for(reader.read(2), 5)
        writer.close()
    except (ssl.SSLError, ConnectionError) as exc:
        received = exc
        await asyncio.wait_for(failed.wait(), 5)  # the SECC's side of the refused handshake ends too
    server_task.close()
    await server_task.wait_closed()
    return received, failures


def test_a_valid_pair_still_connects(pki_dir: Path) -> None:
    received, failures = asyncio.run(session(*contexts(pki_dir)))
    assert (received, failures) == (b"hi", [])


def test_the_evcc_refuses_an_secc_that_presents_a_vehicle_certificate(pki_dir: Path) -> None:
    received, _ = asyncio.run(session(*contexts(pki_dir, secc_leaf="vehicle")))
    assert isinstance(received, ssl.SSLCertVerificationError)
    assert str(received).startswith(f"certificate verify failed: {SECC_REFUSED}wrong-root: CN=OEM Root CA")
    assert "must chain to a root with DC=V2G, this root has DC=OEM" in str(received)


def test_the_secc_refuses_an_evcc_that_presents_the_secc_certificate(pki_dir: Path) -> None:
    received, failures = asyncio.run(session(*contexts(pki_dir, ev_leaf="secc_iso20")))
    # TLS 1.3: the EVCC's handshake is over before the SECC judges its certificate; its alert comes next
    assert isinstance(received, ssl.SSLError) and "ALERT_UNSUPPORTED_CERTIFICATE" in str(received)
    (failure,) = failures
    assert failure.startswith(f"certificate verify failed: {EVCC_REFUSED}wrong-root: CN=V2G Root CA")


def handshake(base: Path, server: ssl.SSLContext, client: ssl.SSLContext) -> tuple[HandshakeReport, HandshakeReport]:
    """tls-verify's blocking handshakes: (the EVCC's report, the SECC's report)."""
    roots = TrustStore.load(base / "trust" / "certs").roots
    listener = socket.create_server(("127.0.0.1", 0))
    reports: list[HandshakeReport] = []

    def serve() -> None:
        raw, peer = listener.accept()
        reports.append(handshake_as_server(raw, peer, server, Protocol.ISO20, roots, None, timeout=5))

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        client_report = handshake_as_client(
            listener.getsockname(), client, Protocol.ISO20, roots, None, timeout=5
        )
    finally:
        thread.join(10)
        listener.close()
    return client_report, reports[0]


@pytest.mark.parametrize(
    ("secc_leaf", "ev_leaf", "refusing_side", "reason"),
    [("vehicle", "vehicle", 0, SECC_REFUSED), ("secc_iso20", "secc_iso20", 1, EVCC_REFUSED)],
)
def test_tls_verify_handshakes_refuse_the_wrong_role(
    pki_dir: Path, secc_leaf: str, ev_leaf: str, refusing_side: int, reason: str
) -> None:
    reports = handshake(pki_dir, *contexts(pki_dir, secc_leaf, ev_leaf))
    refusing, refused = reports[refusing_side], reports[1 - refusing_side]
    assert refusing.error is not None and refusing.error.startswith(f"certificate verification failed: {reason}")
    assert refusing.exit_code == 5
    assert not refused.ok
    assert any("rejected our certificate chain (alert unsupported_certificate)" in d for d in refused.diagnosis)
