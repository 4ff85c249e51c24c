"""Certificates that can never work are refused where they are put to use, not found out later from a
peer's alert: ``pki trust-update`` refuses a root no V2G chain can be valid under (and warns about one
not yet valid or expiring soon), and ``tls-verify`` checks its own chain by its role's profiles before
it listens or connects, as the peer will (ISO 15118-20 Annex B; [V2G20-2218] for the 14 days)."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key
from cryptography.x509.oid import NameOID

from v2gtool.exit_codes import ExitCode
from v2gtool.pki.create import LEAF_DAYS, Issued, PrivateKey, generate_key, issue, v2g_name, write_private_key
from v2gtool.pki.profiles import (
    LEAF_PROFILES,
    ROOT,
    CertificateError,
    KeyType,
    LeafRole,
    Profile,
    Protocol,
    Severity,
    check_root,
)
from v2gtool.pki.tls import TlsError, check_own_chain
from v2gtool.pki.trust import TrustStore, install_roots, load_pem_chain

REPO = Path(__file__).resolve().parents[2]
NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)
RECENT = NOW - dt.timedelta(minutes=5)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "v2gtool", *args], cwd=REPO, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def v2g_root(*, not_before: dt.datetime = RECENT, days: int = 3650, profile: Profile = ROOT) -> x509.Certificate:
    return issue(v2g_name("Renewed V2G Root CA", "V2G"), profile, generate_key(KeyType.SECP521R1), None,
                 not_before=not_before, days=days).cert  # fmt: skip


def rsa_root() -> x509.Certificate:
    """A web-PKI style root: RSA, no domain component; CA and keyUsage as a root's."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Some RSA Root")])
    usage = dict.fromkeys(("content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
                           "encipher_only", "decipher_only", "digital_signature"), False)  # fmt: skip
    return (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(RECENT).not_valid_after(NOW + dt.timedelta(days=9))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(key_cert_sign=True, crl_sign=True, **usage), critical=True)
        .sign(key, hashes.SHA256())
    )  # fmt: skip


def bundle(tmp_path: Path, *roots: x509.Certificate) -> Path:
    path = tmp_path / "bundle.pem"
    path.write_bytes(b"".join(root.public_bytes(Encoding.PEM) for root in roots))
    return path


# --- trust-update: roots ------------------------------------------------------------------------


def test_the_roots_of_pki_init_pass_the_root_profile(pki_dir: Path, pki_dir_ed448: Path) -> None:
    for base in (pki_dir, pki_dir_ed448):
        roots = TrustStore.load(base / "trust" / "certs").roots
        assert len(roots) == 4 and all(check_root(root) == () for root in roots)  # -20 V2G, OEM, MO and the -2 root


@pytest.mark.parametrize(
    ("make", "codes"),
    [
        (rsa_root, ["wrong-key-type", "wrong-root"]),
        (lambda: v2g_root(not_before=NOW - dt.timedelta(days=20), days=10), ["expired"]),
        (lambda: v2g_root(profile=Profile("root CA", True, None, frozenset({"key_cert_sign"}))), ["key-usage"]),
    ],
    ids=["rsa-without-dc", "expired", "no-crl-sign"],
)
def test_a_root_no_chain_can_be_valid_under_is_refused(make, codes: list[str], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = make()
    assert [f.code for f in check_root(root) if f.severity is Severity.ERROR] == codes
    with pytest.raises(CertificateError, match=f"^not a usable V2G root CA: {codes[0]}: ") as info:
        install_roots([root], tmp_path / "trust")
    assert info.value.exit_code == ExitCode.SECURITY
    assert not (tmp_path / "trust").exists()


def test_trust_update_refuses_an_expired_or_rsa_root_in_one_line_and_installs_nothing(
    pki_dir: Path, tmp_path: Path
) -> None:
    trust = tmp_path / "trust"
    good = load_pem_chain(next((pki_dir / "trust" / "certs").glob("OEM_Root_CA_*.pem")))[0]
    expired = v2g_root(not_before=NOW - dt.timedelta(days=20), days=10)
    refused = [(expired, "expired: CN=Renewed V2G Root CA,O=v2gtool test PKI,DC=V2G: expired "),
               (rsa_root(), "wrong-key-type: CN=Some RSA Root: key is RSA; ISO 15118-20 requires ")]
    for bad, rule in refused:
        result = run("pki", "trust-update", str(bundle(tmp_path, good, bad)), "--trust-dir", str(trust))
        assert result.returncode == ExitCode.SECURITY, result.stderr
        (line,) = result.stderr.splitlines()
        assert line.startswith(f"v2gtool: error: not a usable V2G root CA: {rule}"), line
        assert not trust.exists()


@pytest.mark.parametrize(
    ("not_before", "days", "warning"),
    [(RECENT, 7, "expires-soon"), (NOW + dt.timedelta(days=2), 3650, "not-yet-valid")],
)
def test_a_root_expiring_soon_or_not_yet_valid_is_installed_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, not_before: dt.datetime, days: int, warning: str
) -> None:
    root = v2g_root(not_before=not_before, days=days)
    with caplog.at_level(logging.WARNING, logger="v2gtool.pki.trust"):
        install_roots([root], tmp_path)
    assert TrustStore.load(tmp_path).roots == (root,)
    (record,) = caplog.records
    assert record.getMessage().startswith(f"root CA installed, but {warning}: CN=Renewed V2G Root CA,")


def test_trust_update_warns_on_one_line_about_a_root_expiring_soon(tmp_path: Path) -> None:
    pid_file = tmp_path / "other.pid"
    pid_file.write_text(f"{os.getpid()}\n")  # pytest: not v2gtool, so reported and never signalled
    result = run("pki", "trust-update", str(bundle(tmp_path, v2g_root(days=7))), "--trust-dir", str(tmp_path / "t"),
                 "--pid-file", str(pid_file))  # fmt: skip
    assert result.returncode == 0, result.stderr
    warning, stale = result.stderr.splitlines()
    assert warning.startswith("v2gtool: warning: root CA installed, but expires-soon: CN=Renewed V2G Root CA,")
    assert warning.endswith("(within 14 days, [V2G20-2218])")
    assert stale.startswith("v2gtool: warning: not reloaded: ")


# --- tls-verify: our own chain ------------------------------------------------------------------


def cpo_leaf(
    pki_dir: Path,
    tmp_path: Path,
    *,
    profile: Profile = LEAF_PROFILES[LeafRole.SECC],
    not_before: dt.datetime = RECENT,
    days: int = LEAF_DAYS,
) -> tuple[Path, Path]:
    """An SECC chain (leaf, Sub-CA 2, Sub-CA 1) under *pki_dir*'s CPO Sub-CAs, with this leaf's profile
    and validity: the chain file and the key file."""
    ca = pki_dir / "certs" / "ca"
    key = load_pem_private_key((ca / "v2g_sub_ca_2.key").read_bytes(), None)
    assert isinstance(key, PrivateKey)
    sub2, sub1 = load_pem_chain(ca / "v2g_sub_ca_2.pem")[0], load_pem_chain(ca / "v2g_sub_ca_1.pem")[0]
    leaf = issue(v2g_name("SECC", "CPO"), profile, generate_key(KeyType.SECP521R1), Issued(sub2, key),
                 not_before=not_before, days=days)  # fmt: skip
    chain, key_file = tmp_path / "secc.pem", tmp_path / "secc.key"
    chain.write_bytes(b"".join(c.public_bytes(Encoding.PEM) for c in (leaf.cert, sub2, sub1)))
    write_private_key(key_file, leaf.key)
    return chain, key_file


def serve(pki_dir: Path, chain: Path, key: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run("tls-verify", "--serve", "--listen", "127.0.0.1", "--port", "1", "--cert", str(chain), "--key",
               str(key), "--trust-dir", str(pki_dir / "trust" / "certs"), *extra)  # fmt: skip


def test_serve_refuses_a_vehicle_certificate_as_the_secc_one_before_listening(pki_dir: Path) -> None:
    chain = pki_dir / "certs" / "vehicle.pem"
    result = serve(pki_dir, chain, pki_dir / "certs" / "vehicle.key")
    assert result.returncode == ExitCode.SECURITY, result.stderr
    assert result.stderr == (
        f"v2gtool: error: own certificate {chain} is not a valid SECC certificate chain (ISO 15118-20 Annex B): "
        "wrong-role: CN=V2GTOOL0VEHICLE0001,O=v2gtool test PKI,DC=OEM: is a vehicle certificate (DC=OEM), "
        "expected a SECC certificate (DC=CPO) (and 1 more)\n"
    )


@pytest.mark.parametrize(
    ("leaf", "rule"),
    [
        ({"profile": Profile("SECC leaf", False, None, frozenset({"digital_signature"}))},
         "key-usage: CN=SECC,O=v2gtool test PKI,DC=CPO: SECC leaf keyUsage lacks key_agreement"),
        ({"not_before": NOW - dt.timedelta(days=40), "days": 30}, "expired: CN=SECC,O=v2gtool test PKI,DC=CPO: "),
    ],
    ids=["keyusage", "expired"],
)  # fmt: skip
def test_serve_refuses_an_own_leaf_the_evcc_would_refuse(
    pki_dir: Path, tmp_path: Path, leaf: dict[str, object], rule: str
) -> None:
    chain, key = cpo_leaf(pki_dir, tmp_path, **leaf)  # type: ignore[arg-type]
    result = serve(pki_dir, chain, key)
    assert result.returncode == ExitCode.SECURITY, result.stderr
    prefix = f"v2gtool: error: own certificate {chain} is not a valid SECC certificate chain (ISO 15118-20 Annex B): "
    (line,) = result.stderr.splitlines()
    assert line.startswith(prefix + rule), line


def test_the_client_refuses_an_secc_certificate_as_its_vehicle_certificate(pki_dir: Path) -> None:
    chain = pki_dir / "certs" / "secc_iso20.pem"
    result = run("tls-verify", "::1", "1", "--cert", str(chain), "--key", str(pki_dir / "certs" / "secc_iso20.key"),
                 "--trust-dir", str(pki_dir / "trust" / "certs"))  # fmt: skip
    assert result.returncode == ExitCode.SECURITY, result.stderr
    assert result.stderr.startswith(
        f"v2gtool: error: own certificate {chain} is not a valid vehicle certificate chain (ISO 15118-20 Annex B): "
        "wrong-role: CN=SECC,O=v2gtool test PKI,DC=CPO: is a SECC certificate (DC=CPO)"
    )


def test_a_root_missing_from_our_own_trust_store_is_no_finding(pki_dir: Path, tmp_path: Path) -> None:
    """The EVCC checks our chain against its own V2G root; the SECC's store need not hold it."""
    check_own_chain(pki_dir / "certs" / "secc_iso20.pem", LeafRole.SECC, Protocol.ISO20, roots=())
    chain, _ = cpo_leaf(pki_dir, tmp_path, not_before=NOW - dt.timedelta(days=40), days=30)
    expired = r"\(ISO 15118-20 Annex B\): expired: CN=SECC,O=v2gtool test PKI,DC=CPO: "
    with pytest.raises(TlsError, match=expired) as info:
        check_own_chain(chain, LeafRole.SECC, Protocol.ISO20, roots=())
    assert "more)" not in str(info.value)  # its only error: the expiry


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_serve_warns_once_about_an_own_certificate_expiring_soon_and_still_listens(
    pki_dir: Path, tmp_path: Path
) -> None:
    chain, key = cpo_leaf(pki_dir, tmp_path, not_before=NOW - dt.timedelta(days=25), days=30)
    pid_file = tmp_path / "secc.pid"
    server = subprocess.Popen(
        [sys.executable, "-m", "v2gtool", "--json", "tls-verify", "--serve", "--listen", "127.0.0.1", "--port",
         str(free_port()), "--cert", str(chain), "--key", str(key), "--trust-dir", str(pki_dir / "trust" / "certs"),
         "--pid-file", str(pid_file)],
        cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not pid_file.exists():  # written once it listens
            assert server.poll() is None and time.monotonic() < deadline, "the SECC did not start"
            time.sleep(0.02)
        server.send_signal(signal.SIGTERM)
        _, err = server.communicate(timeout=30)
    finally:
        if server.poll() is None:
            server.kill()
            server.communicate()
    assert server.returncode == 0, err
    (line,) = err.splitlines()
    assert line.startswith(f"v2gtool: warning: own certificate {chain}: expires-soon: CN=SECC,O=v2gtool test PKI,"
                           "DC=CPO: expires ")  # fmt: skip
    assert line.endswith("(within 14 days, [V2G20-2218])")
