"""InstallCertificate (OCPP 2.0.1 M05) puts V2G and MO roots into the station's trust directory, as the
README says: ``ocpp-bridge`` gives its stations the one ``--trust-dir`` names (``--iface``: the SECC's
trust directory, also from ``[pki] trust_dir``), and a refusal's reasonCode says why."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from ocpp.v201 import call as call201

from tests.ocpp.test_interop_csms import Seen, start_csms
from tests.ocpp.wire import until
from v2gtool.cli import ocpp_bridge
from v2gtool.cli.main import cli
from v2gtool.ocpp.outbox import Outbox
from v2gtool.ocpp.payloads import OCPP201
from v2gtool.ocpp.profile import ProfileSetpoint
from v2gtool.ocpp.station import BridgeConfig, StationBridge
from v2gtool.pki.create import init_pki
from v2gtool.pki.profiles import KeyType
from v2gtool.pki.trust import TrustStore


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A -20 test PKI's certificates directory (``ca/v2g_root_ca.pem``, the leaves)."""
    base = tmp_path_factory.mktemp("pki")
    init_pki(base / "certs", base / "trust", KeyType.SECP521R1)
    return base / "certs"


def test_a_simulated_station_installs_a_v2g_root_into_its_trust_dir(tmp_path: Path, pki: Path) -> None:
    """The tester's case: ``ocpp-bridge --sim --trust-dir DIR`` and a CSMS's InstallCertificate of a
    V2G root: Accepted, and the root is in DIR."""
    trust = tmp_path / "trust"

    async def scenario() -> Any:
        seen = Seen()
        server, port = await start_csms(OCPP201, seen)
        bridge = await asyncio.create_subprocess_exec(
            *[sys.executable, "-m", "v2gtool", "ocpp-bridge", "--sim", "--csms", f"ws://127.0.0.1:{port}/ocpp"],
            *["--station-id", "CERT", "--trust-dir", str(trust), "--outbox-dir", str(tmp_path / "outbox")],
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:
            assert await until(lambda: bool(seen.boots), 60)
            pem = (pki / "ca" / "v2g_root_ca.pem").read_text()
            install = call201.InstallCertificate(certificate_type="V2GRootCertificate", certificate=pem)
            return await seen.peer.call(install)
        finally:
            with contextlib.suppress(ProcessLookupError):
                bridge.kill()
            await bridge.wait()
            server.close()

    answer = asyncio.run(scenario())
    assert answer.status == "Accepted", answer
    assert len(TrustStore.load(trust).roots) == 1


def _configs(monkeypatch: pytest.MonkeyPatch, args: list[str], env: dict[str, str] | None = None) -> list[Any]:
    """The BridgeConfigs ``ocpp-bridge *args*`` runs its stations with (the run itself left out)."""
    seen: list[Any] = []

    async def run_park(_park: object, configs: list[Any]) -> list[bool]:
        seen.extend(configs)
        return [True]

    async def secc_on_link(_park: object, config: Any, *_: object) -> list[bool]:
        seen.append(config)
        return [True]

    monkeypatch.setattr(ocpp_bridge, "_run_park", run_park)
    monkeypatch.setattr(ocpp_bridge, "_secc_on_link", secc_on_link)
    result = CliRunner().invoke(cli, ["ocpp-bridge", "--csms", "ws://127.0.0.1:9/ocpp", *args], env=env)
    assert result.exit_code == 0, result.output
    return seen


def test_the_trust_directory_reaches_every_station(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """--sim: the --trust-dir given, none without it (a simulated park does not write into the
    machine's trust store); --iface: the SECC's, from --trust-dir or [pki] trust_dir."""
    outbox = ["--outbox-dir", str(tmp_path / "outbox")]
    sim = _configs(monkeypatch, ["--sim", "--stations", "2", "--trust-dir", str(tmp_path / "t"), *outbox])
    assert [c.trust_dir for c in sim] == [tmp_path / "t"] * 2
    assert [c.trust_dir for c in _configs(monkeypatch, ["--sim", *outbox])] == [None]
    iface = ["--iface", "eth1", "--no-tls", *outbox]
    given = _configs(monkeypatch, [*iface, "--trust-dir", str(tmp_path / "t")])
    assert [c.trust_dir for c in given] == [tmp_path / "t"]
    configured = _configs(monkeypatch, iface, env={"V2GTOOL_PKI__TRUST_DIR": str(tmp_path / "c")})
    assert [c.trust_dir for c in configured] == [tmp_path / "c"]


def _install(tmp: Path, trust_dir: Path | None, kind: str, pem: str) -> tuple[str, str, str]:
    config = BridgeConfig(url="ws://x", station_id="CERT", trust_dir=trust_dir)
    return StationBridge(config, Outbox(tmp / "outbox"), ProfileSetpoint()).install_certificate(kind, pem)


def test_each_refusal_says_why_in_its_reason_code(tmp_path: Path, pki: Path) -> None:
    root = (pki / "ca" / "v2g_root_ca.pem").read_text()
    leaf = next(pki.glob("*.pem")).read_text()
    (tmp_path / "afile").touch()
    no_trust = _install(tmp_path, None, "V2GRootCertificate", root)
    assert no_trust[:2] == ("Rejected", "NotEnabled") and "no trust directory" in no_trust[2]
    assert _install(tmp_path, tmp_path / "t", "CSMSRootCertificate", root)[:2] == ("Rejected", "UnsupportedRequest")
    assert _install(tmp_path, tmp_path / "t", "MORootCertificate", "garbage")[:2] == ("Rejected", "InvalidCertificate")
    assert _install(tmp_path, tmp_path / "t", "MORootCertificate", leaf)[:2] == ("Rejected", "InvalidCertificate")
    unwritable = _install(tmp_path, tmp_path / "afile" / "t", "V2GRootCertificate", root)
    assert unwritable[:2] == ("Failed", "InternalError") and "cannot update the trust directory" in unwritable[2]
    assert not (tmp_path / "t").exists()
    assert _install(tmp_path, tmp_path / "t", "V2GRootCertificate", root) == ("Accepted", "", "")
