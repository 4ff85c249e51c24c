"""The same certificate problem gives the same exit status in every command: 5 (TLS or certificate,
``v2gtool/exit_codes.py``) with one line naming the file, whether the file is missing, is no
certificate, or holds a key that does not match its certificate, and whichever command reads it
(tls-verify offline, server and client, pki trust-update, vpp serve, ocpp-bridge)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from v2gtool.exit_codes import ExitCode
from v2gtool.ocpp.security import client_context, server_context
from v2gtool.pki.profiles import CertificateError
from v2gtool.pki.tls import TlsError
from v2gtool.pki.trust import TrustStore, load_pem_chain

REPO = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "v2gtool", *args], cwd=REPO, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single error line of a command that exited 5."""
    assert result.returncode == ExitCode.SECURITY, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("v2gtool: error: ")
    return line


def test_a_missing_trust_directory_exits_5_in_every_mode(pki_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-trust"
    certs = str(pki_dir / "certs")
    commands = [
        ("tls-verify", "--chain", str(pki_dir / "certs" / "secc_iso20.pem")),
        ("tls-verify", "--serve", "--port", "1", "--certs-dir", certs),
        ("tls-verify", "::1", "1", "--certs-dir", certs),
    ]
    for command in commands:
        line = one_line(run(*command, "--trust-dir", str(missing)))
        assert line == f"v2gtool: error: trust directory {missing} does not exist", command


def test_a_missing_trust_directory_exits_5_in_ocpp_bridge_on_a_link(pki_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-trust"
    result = run("ocpp-bridge", "--iface", "lo", "--csms", "ws://127.0.0.1:1/ocpp", "--station-id", "CS1",
                 "--certs-dir", str(pki_dir / "certs"), "--trust-dir", str(missing),
                 "--outbox-dir", str(tmp_path / "outbox"))  # fmt: skip
    assert one_line(result) == f"v2gtool: error: trust directory {missing} does not exist"


def test_trust_store_and_certificate_files_are_certificate_errors(tmp_path: Path) -> None:
    """The library's errors carry exit status 5 themselves, so every caller exits the same way."""
    with pytest.raises(CertificateError, match=r"^trust directory .* does not exist$") as info:
        TrustStore.load(tmp_path / "none")
    assert info.value.exit_code == ExitCode.SECURITY
    with pytest.raises(CertificateError, match=r"no PEM certificate found$") as info:
        load_pem_chain(Path(__file__))
    assert info.value.exit_code == ExitCode.SECURITY


def test_a_key_that_does_not_match_its_certificate_exits_5(pki_dir: Path, tmp_path: Path) -> None:
    cert, key = pki_dir / "certs" / "secc_iso20.pem", pki_dir / "certs" / "vehicle.key"
    mismatch = f"private key {key} does not match the certificate {cert} (the file's first, its leaf)"
    tls = one_line(run("tls-verify", "--serve", "--port", "1", "--cert", str(cert), "--key", str(key),
                       "--trust-dir", str(pki_dir / "trust" / "certs")))  # fmt: skip
    assert tls == f"v2gtool: error: {mismatch}"
    vpp = one_line(run("vpp", "serve", "--port", "1", "--http-port", "2", "--state-dir", str(tmp_path / "state"),
                       "--cert", str(cert), "--key", str(key)))  # fmt: skip
    assert vpp == f"v2gtool: error: CSMS certificate: {mismatch}"


def test_a_file_that_is_no_certificate_as_a_ca_exits_5(pki_dir: Path, tmp_path: Path) -> None:
    cert, key = pki_dir / "certs" / "secc_iso20.pem", pki_dir / "certs" / "secc_iso20.key"
    vpp = one_line(run("vpp", "serve", "--port", "1", "--http-port", "2", "--state-dir", str(tmp_path / "state"),
                       "--cert", str(cert), "--key", str(key), "--client-ca", str(key)))  # fmt: skip
    assert vpp == f"v2gtool: error: station CA: {key}: no PEM certificate found"
    bridge = one_line(run("ocpp-bridge", "--sim", "--csms", "wss://127.0.0.1:1/ocpp", "--station-id", "CS1",
                          "--ca", str(key), "--outbox-dir", str(tmp_path / "outbox")))  # fmt: skip
    assert bridge == f"v2gtool: error: CSMS root CA: {key}: no PEM certificate found"


def test_a_file_that_is_no_certificate_or_is_missing_exits_5_offline_too(pki_dir: Path, tmp_path: Path) -> None:
    """--chain and trust-update's bundle: as tls-verify's --cert, a certificate file that is not there
    is a certificate problem (5), not a usage error."""
    key, missing = pki_dir / "certs" / "secc_iso20.key", tmp_path / "missing.pem"
    trust = str(pki_dir / "trust" / "certs")
    for path, problem in ((key, f"{key}: no PEM certificate found"),
                          (missing, f"cannot read {missing}: No such file or directory")):  # fmt: skip
        assert one_line(run("tls-verify", "--chain", str(path), "--trust-dir", trust)) == f"v2gtool: error: {problem}"
        update = run("pki", "trust-update", str(path), "--trust-dir", str(tmp_path / "trust"))
        assert one_line(update) == f"v2gtool: error: {problem}"
    assert not (tmp_path / "trust").exists()


def test_ocpp_tls_files_name_what_they_are_for(pki_dir: Path, tmp_path: Path) -> None:
    cert, key = pki_dir / "certs" / "secc_iso20.pem", pki_dir / "certs" / "secc_iso20.key"
    missing = tmp_path / "missing.pem"
    cases = [
        (lambda: client_context(missing), f"CSMS root CA: cannot read {missing}: No such file or directory"),
        (lambda: client_context(None, key, key), f"station certificate: own certificate {key}: not a PEM certificate"),
        (lambda: server_context(cert, pki_dir / "certs" / "vehicle.key"), "CSMS certificate: private key "),
        (lambda: server_context(cert, key, cert.with_suffix(".nope")), "station CA: cannot read "),
    ]
    for build, start in cases:
        with pytest.raises(TlsError) as info:
            build()
        assert str(info.value).startswith(start) and info.value.exit_code == ExitCode.SECURITY
    root = next((pki_dir / "trust" / "certs").glob("V2G_Root_CA_*.pem"))
    trusted = [dict(rdn[0] for rdn in ca["subject"]) for ca in client_context(root).get_ca_certs()]
    assert {"domainComponent": "V2G", "organizationName": "v2gtool test PKI", "commonName": "V2G Root CA"} in trusted
