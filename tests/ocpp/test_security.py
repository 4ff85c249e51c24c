"""OCPP security profiles between our bridge and our aggregator: TLS with a client certificate
(profile 3), TLS with HTTP Basic (2), and what each side refuses."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.ocpp.wire import until
from v2gtool.ocpp.csms import StationConnected, Vpp, VppConfig
from v2gtool.ocpp.outbox import Outbox
from v2gtool.ocpp.profile import ProfileSetpoint
from v2gtool.ocpp.security import client_context, server_context
from v2gtool.ocpp.station import BridgeConfig, CsmsConnected, CsmsDisconnected, StationBridge
from v2gtool.pki.tls import TlsError
from v2gtool.session.events import Event

NOW = dt.datetime.now(dt.UTC)


def issue(
    name: str,
    issuer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None,
    ca: bool = False,
    san: x509.SubjectAlternativeName | None = None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer[0].subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - dt.timedelta(minutes=5))
        .not_valid_after(NOW + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    cert = builder.sign(issuer[1] if issuer else key, hashes.SHA256())
    return cert, key


def write(directory: Path, name: str, cert: x509.Certificate, key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    pem, key_pem = directory / f"{name}.pem", directory / f"{name}.key"
    pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return pem, key_pem


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("ocpp-pki")
    root = issue("CSMS Root", None, ca=True)
    station_ca = issue("Station CA", None, ca=True)
    other_ca = issue("Someone else", None, ca=True)
    san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")])
    server = issue("csms.local", root, san=san)
    station = issue("CS-3", station_ca)
    stranger = issue("CS-3", other_ca)
    paths = {"root": write(base, "root", *root)[0], "station_ca": write(base, "station_ca", *station_ca)[0]}
    paths["server"], paths["server_key"] = write(base, "server", *server)
    paths["station"], paths["station_key"] = write(base, "station", *station)
    paths["stranger"], paths["stranger_key"] = write(base, "stranger", *stranger)
    return paths


async def attempt(tmp: Path, vpp_config: VppConfig, bridge_config: BridgeConfig, seconds: float = 3.0) -> list[Event]:
    """Run the aggregator and one bridge for a moment; the bridge's events, and the VPP's."""
    events: list[Event] = []
    vpp = Vpp(vpp_config, listener=events.append)
    server = await vpp.serve("127.0.0.1", 0)
    port = next(iter(server.sockets)).getsockname()[1]
    scheme = "wss" if vpp_config.ssl else "ws"
    bridge_config.url = f"{scheme}://127.0.0.1:{port}/ocpp"
    bridge = StationBridge(bridge_config, Outbox(tmp / bridge_config.station_id), ProfileSetpoint(), events.append)
    link = asyncio.create_task(bridge.run())
    try:
        await until(lambda: any(isinstance(e, CsmsConnected) for e in events), seconds)
    finally:
        link.cancel()
        await asyncio.gather(link, return_exceptions=True)
        server.close()
        vpp.log.close()
    return events


def connected(events: list[Event]) -> bool:
    return any(isinstance(e, CsmsConnected) for e in events) and any(isinstance(e, StationConnected) for e in events)


def refusals(events: list[Event]) -> list[str]:
    return [e.reason for e in events if isinstance(e, CsmsDisconnected)]


def profile3(pki: dict[str, Path], tmp: Path, cert: str | None) -> list[Event]:
    vpp = VppConfig(tmp / "state", ssl=server_context(pki["server"], pki["server_key"], pki["station_ca"]))
    context = client_context(pki["root"], pki[cert] if cert else None, pki[f"{cert}_key"] if cert else None)
    return asyncio.run(attempt(tmp, vpp, BridgeConfig(url="", station_id="CS-3", ssl=context, reconnect=(0.2, 0.2))))


def test_profile3_client_certificate_accepted(pki: dict[str, Path], tmp_path: Path) -> None:
    events = profile3(pki, tmp_path, "station")
    assert connected(events)
    assert next(e for e in events if isinstance(e, CsmsConnected)).url.startswith("wss://")


@pytest.mark.parametrize("cert", [None, "stranger"])
def test_profile3_refuses_a_station_without_a_trusted_certificate(
    pki: dict[str, Path], tmp_path: Path, cert: str | None
) -> None:
    events = profile3(pki, tmp_path, cert)
    assert not connected(events)
    assert refusals(events)  # each try ends in a TLS or connection error, reported, retried


def test_station_refuses_a_csms_it_does_not_trust(pki: dict[str, Path], tmp_path: Path) -> None:
    vpp = VppConfig(tmp_path / "state", ssl=server_context(pki["server"], pki["server_key"]))
    context = client_context(pki["station_ca"])  # the wrong root
    events = asyncio.run(
        attempt(tmp_path, vpp, BridgeConfig(url="", station_id="CS-2", ssl=context, reconnect=(0.2, 0.2)))
    )
    assert not connected(events) and any("CERTIFICATE_VERIFY_FAILED" in r for r in refusals(events))


@pytest.mark.parametrize(("password", "ok"), [("s3cret", True), ("wrong", False), (None, False)])
def test_profile2_basic_auth_over_tls(pki: dict[str, Path], tmp_path: Path, password: str | None, ok: bool) -> None:
    vpp = VppConfig(
        tmp_path / "state", ssl=server_context(pki["server"], pki["server_key"]), passwords={"CS-2": "s3cret"}
    )
    bridge: Any = BridgeConfig(
        url="", station_id="CS-2", ssl=client_context(pki["root"]), password=password, reconnect=(0.2, 0.2)
    )
    events = asyncio.run(attempt(tmp_path, vpp, bridge))
    assert connected(events) is ok
    if not ok:
        assert any("401" in r for r in refusals(events))


def test_unreadable_tls_files_are_one_line_errors(tmp_path: Path) -> None:
    """Exit 5, TLS or certificate, as every command that reads a certificate (tests/pki/test_cert_exit_codes.py)."""
    missing = tmp_path / "missing.pem"
    with pytest.raises(TlsError, match=r"^CSMS root CA: cannot read .*missing\.pem: No such file or directory$"):
        client_context(missing)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(TlsError, match=r"^CSMS certificate: own certificate .*garbage\.pem: not a PEM certificate$"):
        server_context(garbage, None)


def test_an_encrypted_key_is_refused_without_asking_for_a_passphrase(tmp_path: Path) -> None:
    """OpenSSL would prompt "Enter PEM pass phrase:" on the terminal (a service hangs there)."""
    cert, key = issue("station", None)
    pem, key_pem = write(tmp_path, "station", cert, key)
    key_pem.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.BestAvailableEncryption(b"secret")))
    with pytest.raises(TlsError, match=f"private key {key_pem} is encrypted"):
        client_context(None, pem, key_pem)
    with pytest.raises(TlsError, match="is encrypted"):
        server_context(pem, key_pem)
