"""Plug & Charge between ``serve --pnc`` and ``connect --pnc`` over a veth pair between two network
namespaces: TLS 1.3 with mutual authentication, then AuthorizationReq with the contract chain and
the signed challenge (ISO 15118-20 8.3.4.2), checked by the SECC against its MO/V2G roots."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import VethPair, veth_pair
from v2gtool.exit_codes import ExitCode

pytestmark = pytest.mark.netns
V2GTOOL = [sys.executable, "-m", "v2gtool"]


@pytest.fixture(scope="module")
def link() -> Iterator[VethPair]:
    with veth_pair("v2gp") as pair:
        yield pair


@pytest.fixture(scope="module")
def pkis(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two independent PKIs of `pki init`: the charger's and the EV's own, and a foreign one."""
    own, foreign = tmp_path_factory.mktemp("own"), tmp_path_factory.mktemp("foreign")
    for base in (own, foreign):
        subprocess.run([*V2GTOOL, "pki", "init", str(base)], check=True, capture_output=True, timeout=120)
    return own, foreign


def tls_dirs(base: Path, certs: Path | None = None) -> list[str]:
    return ["--certs-dir", str(certs or base / "certs"), "--trust-dir", str(base / "trust" / "certs")]


def run_pair(
    link: VethPair, pki: Path, ev_certs: Path | None = None
) -> tuple[subprocess.CompletedProcess[str], list[dict[str, object]]]:
    """``serve --pnc --sessions 1`` and ``connect --pnc``: the EV's completed process and the SECC's
    JSON records."""
    secc = subprocess.Popen(link.cmd(link.secc_ns, *V2GTOOL, "--json", "v2g-message-handler", "serve", "--iface",
                                     link.secc_if, "--sessions", "1", "--pnc", *tls_dirs(pki)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ev = subprocess.run(link.cmd(link.ev_ns, *V2GTOOL, "--json", "v2g-message-handler", "connect", "--iface",
                                     link.ev_if, "--pnc", "--duration", "1", *tls_dirs(pki, ev_certs)),
                            capture_output=True, text=True, timeout=120)
        secc_out, _ = secc.communicate(timeout=30)
    finally:
        secc.kill()
    return ev, [json.loads(line) for line in secc_out.splitlines()]


def authorization(records: list[dict[str, object]]) -> tuple[dict[str, object], dict[str, object]]:
    """The SECC's AuthorizationReq (received) and AuthorizationRes (sent)."""
    req = next(r for r in records if r["event"] == "MessageReceived" and r["message"] == "AuthorizationReq")
    res = next(r for r in records if r["event"] == "MessageSent" and r["message"] == "AuthorizationRes")
    return req, res


def test_pnc_session_over_tls13_mutual_auth(link: VethPair, pkis: tuple[Path, Path]) -> None:
    own, _foreign = pkis
    ev, secc = run_pair(link, own)
    assert ev.returncode == 0, ev.stderr
    records = [json.loads(line) for line in ev.stdout.splitlines()]
    assert records[-1]["event"] == "SessionEnded" and records[-1]["ok"] is True
    req, res = authorization(secc)
    assert req["summary"]["SelectedAuthorizationService"] == "PnC"
    # The contract chain (two DER certificates) and the ECDSA P-521 signature: far more than an EIM
    # request's header and empty EIM element (under 30 bytes of EXI).
    assert isinstance(req["size"], int) and req["size"] > 500
    assert res["summary"] == {"ResponseCode": "OK", "EVSEProcessing": "Finished"}
    assert any(r["event"] == "SessionEnded" and r["ok"] for r in secc)


def test_a_foreign_contract_is_refused_in_one_line(link: VethPair, pkis: tuple[Path, Path], tmp_path: Path) -> None:
    """TLS passes (the EV's own vehicle certificate), but its contract comes from another MO root."""
    own, foreign = pkis
    certs = tmp_path / "certs"
    shutil.copytree(own / "certs", certs)
    for name in ("contract.pem", "contract.key"):
        shutil.copy(foreign / "certs" / name, certs / name)
    ev, secc = run_pair(link, own, certs)
    assert ev.returncode == ExitCode.SECURITY, ev.stderr
    assert ev.stderr.count("\n") == 1 and "Traceback" not in ev.stderr
    assert "WARNING_CertificateValidationError" in ev.stderr and "contract" in ev.stderr
    _req, res = authorization(secc)
    assert res["summary"] == {"ResponseCode": "WARNING_CertificateValidationError", "EVSEProcessing": "Finished"}


def test_a_contract_key_that_is_not_the_certificates_is_refused(
    link: VethPair, pkis: tuple[Path, Path], tmp_path: Path
) -> None:
    """A tampered contract: the certificate is ours but the key that signs the challenge is not its key."""
    own, foreign = pkis
    certs = tmp_path / "certs"
    shutil.copytree(own / "certs", certs)
    shutil.copy(foreign / "certs" / "contract.key", certs / "contract.key")
    ev, secc = run_pair(link, own, certs)
    assert ev.returncode == ExitCode.SECURITY, ev.stderr
    assert ev.stderr.count("\n") == 1 and "Traceback" not in ev.stderr
    assert "FAILED_SignatureError" in ev.stderr
    _req, res = authorization(secc)
    assert res["summary"]["ResponseCode"] == "FAILED_SignatureError"  # type: ignore[index]


def test_session_run_netns_with_pnc(pkis: tuple[Path, Path]) -> None:
    """`session run --netns --pnc`: the EVSE process offers PnC with its roots, the EV process signs
    with its contract; the EV's own battery follows the discharge the EVSE reports."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    own, _foreign = pkis
    proc = subprocess.run([*V2GTOOL, "--json", "session", "run", "--netns", "--pnc", "--duration", "2",
                           "--direction", "discharge", *tls_dirs(own)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    req, res = authorization(records)
    assert req["summary"]["SelectedAuthorizationService"] == "PnC"
    assert res["summary"] == {"ResponseCode": "OK", "EVSEProcessing": "Finished"}
    socs = [r["soc"] for r in records if r["event"] == "PowerFlow" and r["role"] == "EVCC"]
    assert socs[-1] < socs[0]
