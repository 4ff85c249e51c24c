"""The SECC's listener (serve): failed TLS handshakes are reported and answered with their alert
(RFC 8446 clause 6.2), and the link-local address is awaited through duplicate address detection."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import shutil
import socket
from pathlib import Path

import pytest

from v2gtool.net.sdp_transport import usable_link_local_address
from v2gtool.net.v2g_tcp import start_server
from v2gtool.pki.create import init_pki
from v2gtool.pki.profiles import KeyType, Protocol
from v2gtool.pki.tls import server_context
from v2gtool.sdp import SdpInterfaceError

needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("pki")
    init_pki(base / "certs", base / "trust" / "certs", KeyType.SECP521R1, now=dt.datetime.now(dt.UTC))
    return base


async def _refused(pki: Path, version: str) -> tuple[list[tuple[str, str]], str, int]:
    """An ``openssl s_client`` without a client certificate against the SECC's listener: the failures the
    listener reported, the client's output and its local port."""
    failures: list[tuple[str, str]] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    context = server_context(pki / "certs", pki / "trust" / "certs", Protocol.ISO20)
    server = await start_server(handle, "127.0.0.1", 0, context, handshake_timeout=20.0,
                                handshake_failed=lambda peer, reason: failures.append((peer, reason)))
    port = server.sockets[0].getsockname()[1]
    try:
        # -ign_eof: read until the SECC closes, so the alert that comes after the client's Finished is seen
        client = await asyncio.create_subprocess_exec(
            "openssl", "s_client", "-ign_eof", "-connect", f"127.0.0.1:{port}", version,
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
        output, _ = await asyncio.wait_for(client.communicate(), 20)
        await asyncio.sleep(0.1)
    finally:
        server.close()
        await server.wait_closed()
    return failures, output.decode(errors="replace"), port


@needs_openssl
@pytest.mark.parametrize(("version", "reason", "alert"), [
    ("-tls1_2", "unsupported protocol", "alert protocol version"),  # ISO 15118-20 requires TLS 1.3
    ("-tls1_3", "peer did not return a certificate", "alert certificate required"),  # mutual authentication
])
def test_failed_handshake_is_reported_and_alerted(pki: Path, version: str, reason: str, alert: str) -> None:
    failures, output, _ = asyncio.run(_refused(pki, version))
    assert len(failures) == 1, output
    peer, said = failures[0]
    assert peer.startswith("127.0.0.1:") and said == reason
    assert alert in output  # asyncio alone closes without it (python/cpython#98078)


def _if_inet6(path: Path, flags: int) -> None:
    """A /proc/net/if_inet6 with one link-local address of lo, in the kernel's format."""
    address = ipaddress.IPv6Address("fe80::1").packed.hex()
    path.write_text(f"{address} {socket.if_nametoindex('lo'):02x} 40 20 {flags:02x}       lo\n")


def test_serve_waits_for_duplicate_address_detection(tmp_path: Path) -> None:
    """A veth that just came up: the address is tentative (IFA_F_TENTATIVE) for about a second."""
    table = tmp_path / "if_inet6"
    _if_inet6(table, 0xC0)  # tentative, permanent

    async def main() -> ipaddress.IPv6Address:
        asyncio.get_running_loop().call_later(0.3, _if_inet6, table, 0x80)  # DAD done
        return await usable_link_local_address("lo", table, wait=3.0)

    assert asyncio.run(main()) == ipaddress.IPv6Address("fe80::1")


def test_serve_gives_up_when_the_address_stays_tentative(tmp_path: Path) -> None:
    table = tmp_path / "if_inet6"
    _if_inet6(table, 0xC0)
    with pytest.raises(SdpInterfaceError, match=r"still in duplicate address detection"):
        asyncio.run(usable_link_local_address("lo", table, wait=0.2))


def test_serve_does_not_wait_for_a_duplicate_address(tmp_path: Path) -> None:
    table = tmp_path / "if_inet6"
    _if_inet6(table, 0xC8)  # DAD failed: the kernel keeps it tentative for good

    async def main() -> float:
        loop = asyncio.get_running_loop()
        start = loop.time()
        with pytest.raises(SdpInterfaceError, match=r"duplicate address detection failed"):
            await usable_link_local_address("lo", table, wait=3.0)
        return loop.time() - start

    assert asyncio.run(main()) < 1.0
