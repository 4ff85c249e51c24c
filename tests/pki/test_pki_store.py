"""pki init output, the trust store's hash links (against openssl as oracle) and trust-update."""

from __future__ import annotations

import datetime as dt
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from v2gtool.pki.create import CHAINS, generate_key, init_pki, issue
from v2gtool.pki.profiles import ROOT, KeyType, LeafRole, check_chain
from v2gtool.pki.trust import TrustStore, is_v2gtool, load_pem_chain, rehash, subject_hash

NOW = dt.datetime.now(dt.UTC)
REPO = Path(__file__).resolve().parents[2]
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "v2gtool", *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )


def test_init_writes_every_chain_with_private_keys_0600(pki_dir: Path) -> None:
    certs = pki_dir / "certs"
    keys = sorted(certs.rglob("*.key"))
    assert len(keys) == len(CHAINS) * 4  # leaf + root + two Sub-CAs per chain
    assert {stat.S_IMODE(k.stat().st_mode) for k in keys} == {0o600}
    assert stat.S_IMODE((certs / "ca").stat().st_mode) == 0o700
    store = TrustStore.load(pki_dir / "trust" / "certs")
    assert len(store.roots) == len(CHAINS)
    for name, spec in CHAINS.items():
        chain = load_pem_chain(certs / f"{name}.pem")
        report = check_chain(chain, store.roots, spec.role, spec.protocol)
        assert report.findings == (), name
        assert len(chain) == 3


def test_cli_init_never_prints_key_material(tmp_path: Path) -> None:
    result = run("pki", "init", str(tmp_path), "--key-type", "ed448", "--json")
    assert result.returncode == 0, result.stderr
    key_text = (tmp_path / "certs" / "vehicle.key").read_text()
    body = "".join(key_text.splitlines()[1:-1])
    assert "PRIVATE KEY" not in result.stdout + result.stderr
    assert body[:40] not in result.stdout + result.stderr
    again = run("pki", "init", str(tmp_path))
    assert again.returncode == 1
    assert again.stderr == (
        f"v2gtool: error: {tmp_path}/certs/secc_iso20.key exists; "
        f"pass --force to replace the PKI in {tmp_path}/certs\n"
    )


@needs_openssl
@pytest.mark.interop
def test_hash_links_match_openssl_and_openssl_verifies_every_chain(pki_dir: Path) -> None:
    trust = pki_dir / "trust" / "certs"
    links = sorted(p for p in trust.iterdir() if p.is_symlink())
    assert len(links) == len(CHAINS)
    for link in links:
        digest = subprocess.run(
            ["openssl", "x509", "-noout", "-hash", "-in", str(link)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        assert link.name == f"{digest}.0"
    for name in CHAINS:
        chain = pki_dir / "certs" / f"{name}.pem"
        result = subprocess.run(
            ["openssl", "verify", "-CApath", str(trust), "-untrusted", str(chain), str(chain)],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 0, result.stderr


spaced = st.text(alphabet=" \tAbCdEfZz09-", min_size=1, max_size=12).filter(lambda s: s.strip(" \t"))


@needs_openssl
@pytest.mark.interop
@settings(max_examples=25, deadline=None)
@given(spaced, spaced)
def test_subject_hash_equals_openssl_x509_name_hash(cn: str, org: str) -> None:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "V2G"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )
    assert subject_hash(name) == _openssl_name_hash(name)


def _openssl_name_hash(name: x509.Name) -> str:
    """``openssl x509 -hash`` of a throw-away self-signed certificate with subject *name*."""
    cert = issue(name, ROOT, generate_key(KeyType.SECP256R1), None, not_before=NOW, days=1).cert
    return (
        subprocess.run(
            ["openssl", "x509", "-noout", "-hash"],
            input=cert.public_bytes(Encoding.PEM),
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )


@given(st.text(alphabet="abcXYZ", min_size=1, max_size=8), st.sampled_from([" ", "  ", "\t"]))
def test_subject_hash_ignores_case_and_whitespace_runs(word: str, gap: str) -> None:
    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    assert subject_hash(name(f"{word}{gap}{word}")) == subject_hash(name(f" {word.upper()} {word.lower()}  "))


def fake_service(directory: Path, on_sighup: str) -> subprocess.Popen[str]:
    """A stand-in for a v2gtool daemon, started as the console script runs (``python .../bin/v2gtool``):
    it prints ``ready``, then runs *on_sighup* on SIGHUP."""
    script = directory / "bin" / "v2gtool"
    script.parent.mkdir(parents=True, exist_ok=True)
    script.write_text(
        f"import signal,sys,time\nsignal.signal(signal.SIGHUP, lambda *a: ({on_sighup}))\n"
        "print('ready', flush=True)\ntime.sleep(30)\n"
    )
    service = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    assert service.stdout is not None and service.stdout.readline() == "ready\n"
    return service


def test_trust_update_installs_beside_the_old_root_and_signals_services(
    pki_dir: Path, pki_dir_ed448: Path, tmp_path: Path
) -> None:
    trust = tmp_path / "trust"
    shutil.copytree(pki_dir / "trust" / "certs", trust, symlinks=True)
    service = fake_service(tmp_path, "print('reload', flush=True), sys.exit(0)")
    pid_file = tmp_path / "secc.pid"
    pid_file.write_text(f"{service.pid}\n")
    new_root = sorted((pki_dir_ed448 / "trust" / "certs").glob("V2G_Root_CA_*.pem"))[0]
    result = run("pki", "trust-update", str(new_root), "--trust-dir", str(trust), "--pid-file", str(pid_file))
    assert result.returncode == 0, result.stderr
    assert service.wait(10) == 0 and service.stdout is not None and service.stdout.read() == "reload\n"
    assert len(TrustStore.load(trust).roots) == len(CHAINS) + 1
    links = sorted(p.name for p in trust.iterdir() if p.is_symlink())
    digest = subject_hash(load_pem_chain(new_root)[0].subject)
    assert [f"{digest}.0", f"{digest}.1"] == [n for n in links if n.startswith(digest)]


def test_trust_update_refuses_a_bundle_with_a_leaf(pki_dir: Path, tmp_path: Path) -> None:
    result = run(
        "pki", "trust-update", str(pki_dir / "certs" / "secc_iso20.pem"), "--trust-dir", str(tmp_path)
    )
    assert result.returncode == 5  # TLS or certificate
    assert (
        result.stderr
        == "v2gtool: error: not a self-signed root CA certificate: CN=SECC,O=v2gtool test PKI,DC=CPO\n"
    )
    assert list(tmp_path.iterdir()) == []


def test_rehash_drops_links_of_removed_roots(pki_dir: Path, tmp_path: Path) -> None:
    trust = tmp_path / "trust"
    shutil.copytree(pki_dir / "trust" / "certs", trust, symlinks=True)
    removed = next(trust.glob("MO_Root_CA_*.pem"))
    removed_hash = subject_hash(load_pem_chain(removed)[0].subject)
    removed.unlink()
    links = rehash(trust)
    assert len(links) == len(CHAINS) - 1
    assert not (trust / f"{removed_hash}.0").exists() and not (trust / f"{removed_hash}.0").is_symlink()
    for link in links:
        assert subject_hash(load_pem_chain(link)[0].subject) == link.name.split(".")[0]


def test_unwritable_pki_directory_is_one_line() -> None:
    result = run("pki", "init", "/proc/v2gtool-nope")
    assert result.returncode == 1
    assert result.stderr == (
        "v2gtool: error: cannot write the PKI: /proc/v2gtool-nope: No such file or directory\n"
    )


def test_trust_update_reads_every_pid_file_before_changing_the_trust_store(
    pki_dir: Path, tmp_path: Path
) -> None:
    trust = tmp_path / "trust"
    good, bad = tmp_path / "good.pid", tmp_path / "bad.pid"
    good.write_text("999999\n")
    bad.write_text("abc\n")
    root = next((pki_dir / "trust" / "certs").glob("V2G_Root_CA_*.pem"))
    result = run(
        "pki", "trust-update", str(root), "--trust-dir", str(trust), "--pid-file", str(good), "--pid-file", str(bad)
    )
    assert result.returncode == 1
    assert result.stderr == f"v2gtool: error: pid file {bad}: 'abc' is not a process id\n"
    assert not trust.exists()


def test_trust_update_signals_every_service_and_reports_one_that_is_gone(pki_dir: Path, tmp_path: Path) -> None:
    trust = tmp_path / "trust"
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait(10)
    service = fake_service(tmp_path, "sys.exit(7)")
    stale, live = tmp_path / "a_stale.pid", tmp_path / "b_live.pid"
    stale.write_text(f"{gone.pid}\n")
    live.write_text(f"{service.pid}\n")
    root = next((pki_dir / "trust" / "certs").glob("V2G_Root_CA_*.pem"))
    result = run(
        "pki", "trust-update", str(root), "--trust-dir", str(trust), "--pid-file", str(stale), "--pid-file", str(live)
    )
    assert result.returncode == 0, result.stderr
    assert service.wait(10) == 7
    assert result.stderr == (
        f"v2gtool: warning: not reloaded: pid {gone.pid} (pid file {stale}): no such process\n"
    )
    assert f"told 1 service(s) to reload: {service.pid}" in result.stdout
    assert len(TrustStore.load(trust).roots) == 1


def test_init_force_replaces_the_old_roots_and_keeps_other_trust_anchors(tmp_path: Path) -> None:
    certs, trust = tmp_path / "certs", tmp_path / "trust"
    init_pki(certs, trust, KeyType.SECP521R1)
    old_secc = load_pem_chain(certs / "secc_iso20.pem")
    own = issue(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "site root")]), ROOT,
                generate_key(KeyType.SECP256R1), None, not_before=NOW, days=1).cert  # fmt: skip
    (trust / "site_root.pem").write_bytes(own.public_bytes(Encoding.PEM))
    layout = init_pki(certs, trust, KeyType.ED448, force=True)
    pems = sorted(p for p in trust.glob("*.pem"))
    assert pems == sorted([*layout.roots, trust / "site_root.pem"])
    links = [p for p in trust.iterdir() if p.is_symlink()]
    assert len(links) == len(CHAINS) + 1 and all(link.exists() for link in links)
    report = check_chain(old_secc, TrustStore.load(trust).roots, LeafRole.SECC)
    assert [f.code for f in report.findings] == ["unknown-root"]


def test_trust_update_does_not_signal_a_process_that_took_over_a_stale_pid(pki_dir: Path, tmp_path: Path) -> None:
    """A daemon killed without removing its pid file leaves the pid to the next process: SIGHUP would
    end an unrelated program (SIGHUP's default action), so only a v2gtool process is told to reload."""
    other = subprocess.Popen(["sleep", "30"])
    try:
        pid_file = tmp_path / "secc.pid"
        pid_file.write_text(f"{other.pid}\n")
        root = next((pki_dir / "trust" / "certs").glob("V2G_Root_CA_*.pem"))
        result = run("pki", "trust-update", str(root), "--trust-dir", str(tmp_path / "trust"), "--pid-file",
                     str(pid_file))  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stderr == (
            f"v2gtool: warning: not reloaded: pid {other.pid} (pid file {pid_file}): stale pid file: the process "
            "is 'sleep', not v2gtool\n"
        )
        assert "told 0 service(s) to reload: -" in result.stdout
        time.sleep(0.2)
        assert other.poll() is None
    finally:
        other.kill()
        other.wait()


@pytest.mark.parametrize(
    ("cmdline", "ours"),
    [
        (b"/usr/bin/python3\0/opt/v2gtool/bin/v2gtool\0tls-verify\0--serve\0", True),
        (b"/usr/bin/python3.11\0-X\0dev\0-m\0v2gtool\0serve\0", True),
        (b"/usr/local/bin/v2gtool\0serve\0", True),
        (b"sleep\x0030\0", False),
        (b"/usr/bin/python3\0/home/u/v2gtool-notes.py\0", False),
        (b"", False),
    ],
)
def test_is_v2gtool_recognises_the_console_script_and_the_module(cmdline: bytes, ours: bool) -> None:
    assert is_v2gtool(cmdline.split(b"\0")) is ours
