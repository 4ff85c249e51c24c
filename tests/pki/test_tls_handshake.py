"""TLS handshakes on loopback: our EVCC and SECC with each other and with openssl as the independent peer."""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from ipaddress import IPv6Address
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from v2gtool.exit_codes import ExitCode
from v2gtool.pki.create import CHAINS
from v2gtool.pki.handshake import HandshakeTrace
from v2gtool.pki.probe import HandshakeReport, diagnose, handshake_as_client, handshake_as_server
from v2gtool.pki.profiles import KeyType, Protocol
from v2gtool.pki.tls import Credentials, TlsError, client_context, server_context
from v2gtool.pki.trust import TrustStore, load_pem_chain, rehash
from v2gtool.sdp import SdpRequest, SdpResponse, SdpResult, Security, TransportProtocol

REPO = Path(__file__).resolve().parents[2]
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")
SUITES_20 = {"TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"}


def certs(base: Path) -> Path:
    return base / "certs"


def trust(base: Path) -> Path:
    return base / "trust" / "certs"


def leaf(base: Path, name: str):  # type: ignore[no-untyped-def]
    return load_pem_chain(certs(base) / f"{name}.pem")[0]


def serve_once(
    base: Path, protocol: Protocol = Protocol.ISO20, trust_dir: Path | None = None, **kwargs: object
) -> tuple[int, Future[HandshakeReport]]:
    context = server_context(certs(base), trust_dir or trust(base), protocol, **kwargs)  # type: ignore[arg-type]
    listener = socket.create_server(("127.0.0.1", 0))
    future: Future[HandshakeReport] = Future()
    own = leaf(base, "secc_iso20" if protocol is Protocol.ISO20 else "secc_iso2")
    roots = TrustStore.load(trust_dir or trust(base)).roots

    def run() -> None:
        with listener:
            raw, peer = listener.accept()
            future.set_result(handshake_as_server(raw, peer, context, protocol, roots, own, timeout=10))

    threading.Thread(target=run, daemon=True).start()
    return listener.getsockname()[1], future


def connect(base: Path, port: int, protocol: Protocol = Protocol.ISO20, **kwargs: object) -> HandshakeReport:
    context = client_context(certs(base), trust(base), protocol, **kwargs)  # type: ignore[arg-type]
    own = leaf(base, "vehicle") if protocol is Protocol.ISO20 else None
    return handshake_as_client(
        ("127.0.0.1", port), context, protocol, TrustStore.load(trust(base)).roots, own, timeout=10
    )


@pytest.mark.parametrize(
    ("fixture", "scheme"), [("pki_dir", "ecdsa_secp521r1_sha512"), ("pki_dir_ed448", "ed448")]
)
def test_mutual_tls13_between_our_evcc_and_secc(
    fixture: str, scheme: str, request: pytest.FixtureRequest
) -> None:
    base: Path = request.getfixturevalue(fixture)
    port, server = serve_once(base)
    client = connect(base, port)
    secc = server.result(10)
    for report in (client, secc):
        assert report.ok, report
        assert (report.version, report.peer_signature, report.own_signature) == ("TLSv1.3", scheme, scheme)
        assert report.cipher_suite in SUITES_20
        assert report.group is not None
        assert report.profile is not None and report.profile.findings == ()
    assert client.profile is not None and client.profile.subjects[0] == "CN=SECC,O=v2gtool test PKI,DC=CPO"
    assert secc.profile is not None and secc.profile.subjects[0].endswith("DC=OEM")
    assert len(client.peer_chain) == 3  # leaf + two Sub-CAs as sent; the root comes from the trust store


def test_iso2_is_tls12_with_the_iso2_suite(pki_dir: Path) -> None:
    port, server = serve_once(pki_dir, Protocol.ISO2)
    client = connect(pki_dir, port, Protocol.ISO2)
    assert client.ok, client
    assert (client.version, client.cipher_suite, client.group, client.peer_signature) == (
        "TLSv1.2",
        "ECDHE-ECDSA-AES128-SHA256",
        "secp256r1",
        "ecdsa_secp256r1_sha256",
    )
    assert server.result(10).ok


def test_iso20_client_refuses_an_iso2_secc(pki_dir: Path) -> None:
    port, server = serve_once(pki_dir, Protocol.ISO2)
    client = connect(pki_dir, port)
    assert not client.ok
    assert client.diagnosis[0].startswith(
        "the SECC refused TLSv1.3 (alert protocol_version): it speaks only TLS 1.2"
    )
    server.result(10)


def _trust_without_oem(pki_dir: Path, tmp_path: Path) -> Path:
    """A trust directory with every root of *pki_dir* but the OEM root (the vehicle's anchor)."""
    partial = tmp_path / "trust"
    partial.mkdir()
    for pem in trust(pki_dir).glob("*.pem"):
        if not pem.name.startswith("OEM"):
            shutil.copy(pem, partial)
    rehash(partial)
    return partial


def test_secc_without_the_oem_root_rejects_the_vehicle_certificate(pki_dir: Path, tmp_path: Path) -> None:
    partial = _trust_without_oem(pki_dir, tmp_path)
    port, server = serve_once(pki_dir, trust_dir=partial)
    client = connect(pki_dir, port)
    secc = server.result(10)
    assert secc.error == "certificate verification failed: unable to get local issuer certificate"
    assert secc.profile is not None
    assert [f.code for f in secc.profile.findings] == ["unknown-root"]
    assert not client.ok
    assert "the SECC rejected our certificate chain (alert unknown_ca)" in client.diagnosis


def test_keylog_file_gets_tls13_secrets_and_mode_0600(pki_dir: Path, tmp_path: Path) -> None:
    keylog = tmp_path / "keys.log"
    port, server = serve_once(pki_dir)
    assert connect(pki_dir, port, keylog=keylog).ok
    server.result(10)
    labels = {line.split()[0] for line in keylog.read_text().splitlines()}
    assert {
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET",
        "SERVER_HANDSHAKE_TRAFFIC_SECRET",
        "CLIENT_TRAFFIC_SECRET_0",
        "SERVER_TRAFFIC_SECRET_0",
        "EXPORTER_SECRET",
    } <= labels
    assert stat.S_IMODE(keylog.stat().st_mode) == 0o600


def test_sslkeylogfile_is_honoured(pki_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keylog = tmp_path / "env.log"
    monkeypatch.setenv("SSLKEYLOGFILE", str(keylog))
    port, server = serve_once(pki_dir)
    assert connect(pki_dir, port).ok
    server.result(10)
    assert "CLIENT_HANDSHAKE_TRAFFIC_SECRET" in keylog.read_text()


def test_missing_credentials_are_one_line(pki_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(
        TlsError, match=f"^cannot load certificate: {tmp_path}/secc_iso20.pem does not exist$"
    ):
        server_context(tmp_path, trust(pki_dir))


# --- openssl as the independent peer ------------------------------------------------------------


def split_chain(base: Path, name: str, tmp_path: Path) -> tuple[Path, Path, Path]:
    """openssl wants the leaf and its Sub-CAs in separate files."""
    pem = (certs(base) / f"{name}.pem").read_text()
    blocks = pem.split("-----END CERTIFICATE-----\n")
    leaf_file, chain_file = tmp_path / f"{name}_leaf.pem", tmp_path / f"{name}_subcas.pem"
    leaf_file.write_text(blocks[0] + "-----END CERTIFICATE-----\n")
    chain_file.write_text("-----END CERTIFICATE-----\n".join(blocks[1:]))
    return leaf_file, chain_file, certs(base) / f"{name}.key"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def s_server(tmp_path: Path) -> Iterator[object]:
    processes: list[subprocess.Popen[str]] = []

    def start(base: Path, name: str, *extra: str) -> int:
        cert, chain, key = split_chain(base, name, tmp_path)
        port = free_port()
        proc = subprocess.Popen(
            [
                "openssl",
                "s_server",
                "-accept",
                f"127.0.0.1:{port}",
                "-cert",
                str(cert),
                "-cert_chain",
                str(chain),
                "-key",
                str(key),
                "-CApath",
                str(trust(base)),
                "-naccept",
                "1",
                *extra,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        processes.append(proc)
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith("ACCEPT"):
                return port
        raise AssertionError("openssl s_server did not start")

    yield start
    for proc in processes:
        proc.kill()
        proc.wait()


def s_client(base: Path, port: int, tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    cert, chain, key = split_chain(base, "vehicle", tmp_path)
    return subprocess.run(
        [
            "openssl",
            "s_client",
            "-connect",
            f"127.0.0.1:{port}",
            "-cert",
            str(cert),
            "-cert_chain",
            str(chain),
            "-key",
            str(key),
            "-CApath",
            str(trust(base)),
            "-verify_return_error",
            *extra,
        ],
        input="",
        capture_output=True,
        text=True,
        timeout=20,
    )


@needs_openssl
@pytest.mark.interop
@pytest.mark.parametrize(
    ("fixture", "scheme"), [("pki_dir", "ecdsa_secp521r1_sha512"), ("pki_dir_ed448", "ed448")]
)
def test_our_evcc_with_openssl_s_server(
    fixture: str, scheme: str, s_server, request: pytest.FixtureRequest
) -> None:  # type: ignore[no-untyped-def]
    base: Path = request.getfixturevalue(fixture)
    port = s_server(base, "secc_iso20", "-tls1_3", "-Verify", "3", "-verify_return_error")
    report = connect(base, port)
    assert report.ok, report
    assert (report.version, report.peer_signature) == ("TLSv1.3", scheme)
    assert report.cipher_suite in SUITES_20


@needs_openssl
@pytest.mark.interop
def test_our_secc_with_openssl_s_client(pki_dir: Path, tmp_path: Path) -> None:
    port, server = serve_once(pki_dir)
    result = s_client(pki_dir, port, tmp_path, "-tls1_3")
    report = server.result(10)
    assert report.ok, report
    assert "Verification: OK" in result.stdout
    assert "TLSv1.3" in result.stdout and report.cipher_suite in result.stdout


@needs_openssl
@pytest.mark.interop
def test_tls12_only_secc_is_diagnosed(pki_dir: Path, s_server) -> None:  # type: ignore[no-untyped-def]
    port = s_server(pki_dir, "secc_iso20", "-tls1_2")
    report = connect(pki_dir, port)
    assert not report.ok
    assert report.error == "TLS handshake failed: TLSV1_ALERT_PROTOCOL_VERSION"
    assert report.diagnosis == (
        "the SECC refused TLSv1.3 (alert protocol_version): it speaks only TLS 1.2 or older; ISO 15118-20 "
        "requires TLS 1.3 (an ISO 15118-2 SECC: retry with --protocol iso2)",
    )


@needs_openssl
@pytest.mark.interop
def test_tls12_only_evcc_is_diagnosed(pki_dir: Path, tmp_path: Path) -> None:
    port, server = serve_once(pki_dir)
    s_client(pki_dir, port, tmp_path, "-tls1_2")
    report = server.result(10)
    assert not report.ok
    assert report.diagnosis[0] == "the EVCC offered only TLSv1.2; ISO 15118-20 here requires TLSv1.3"


@needs_openssl
@pytest.mark.interop
def test_secc_with_only_other_suites_is_diagnosed(pki_dir: Path, s_server) -> None:  # type: ignore[no-untyped-def]
    port = s_server(pki_dir, "secc_iso20", "-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256")
    report = connect(pki_dir, port)
    assert not report.ok
    assert report.diagnosis == (
        "the SECC refused our hello (alert handshake_failure): we offered only the cipher suites "
        "TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256 and the signature schemes "
        "ecdsa_secp521r1_sha512, ed448; it supports none of those suites or has no certificate of a key type "
        "we accept",
    )


@needs_openssl
@pytest.mark.interop
def test_evcc_with_only_other_suites_is_diagnosed(pki_dir: Path, tmp_path: Path) -> None:
    port, server = serve_once(pki_dir)
    s_client(
        pki_dir, port, tmp_path, "-tls1_3", "-ciphersuites", "TLS_AES_128_GCM_SHA256:TLS_AES_128_CCM_SHA256"
    )
    report = server.result(10)
    assert not report.ok
    assert report.diagnosis == (
        "the EVCC offered only the cipher suites TLS_AES_128_GCM_SHA256, TLS_AES_128_CCM_SHA256; "
        "we accept only TLS_AES_256_GCM_SHA384, TLS_CHACHA20_POLY1305_SHA256",
    )


@needs_openssl
@pytest.mark.interop
def test_evcc_that_cannot_verify_our_key_type_is_diagnosed(pki_dir_ed448: Path, tmp_path: Path) -> None:
    port, server = serve_once(pki_dir_ed448)
    s_client(
        pki_dir_ed448, port, tmp_path, "-tls1_3", "-sigalgs", "ecdsa_secp521r1_sha512:ecdsa_secp384r1_sha384"
    )
    report = server.result(10)
    assert not report.ok
    assert (
        "the EVCC cannot verify our ed448 certificate: it offered only the signature schemes "
        "ecdsa_secp521r1_sha512, ecdsa_secp384r1_sha384" in report.diagnosis
    )


# --- the command line ---------------------------------------------------------------------------


def run_cli(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "v2gtool", *args],
        cwd=REPO,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_offline_check_names_each_failure(pki_dir: Path) -> None:
    ok = run_cli(
        "tls-verify", "--chain", str(certs(pki_dir) / "secc_iso20.pem"), "--trust-dir", str(trust(pki_dir))
    )
    assert ok.returncode == 0 and "conforms to the profile" in ok.stdout
    bad = run_cli(
        "tls-verify",
        "--chain",
        str(certs(pki_dir) / "contract.pem"),
        "--trust-dir",
        str(trust(pki_dir)),
        "--at",
        "2100-01-01",
    )
    assert bad.returncode == ExitCode.SECURITY
    lines = bad.stdout.splitlines()
    assert (
        "error: wrong-role: CN=DEV2GTOOLC000001,O=v2gtool test PKI,DC=MO: is a contract certificate (DC=MO), "
        "expected a SECC certificate (DC=CPO)" in lines
    )
    assert sum(line.startswith("error: expired: ") for line in lines) == 4


def dynamic_port_listener() -> socket.socket:
    """A listener on ::1 in 49152-65535, the only range SDP announces."""
    for candidate in random.sample(range(49152, 65536), 50):
        try:
            return socket.create_server(("::1", candidate), family=socket.AF_INET6)
        except OSError:
            continue
    raise AssertionError("no free port in 49152-65535")


def test_cli_from_sdp_record_connects_to_the_announced_secc(pki_dir: Path) -> None:
    context = server_context(certs(pki_dir), trust(pki_dir))
    listener = dynamic_port_listener()
    port = listener.getsockname()[1]
    roots = TrustStore.load(trust(pki_dir)).roots
    listener.settimeout(20)
    thread = threading.Thread(
        target=lambda: handshake_as_server(*listener.accept(), context, Protocol.ISO20, roots, None),
        daemon=True,
    )
    thread.start()
    # The record sdp-discovery --json prints, announcing loopback (an EVCC's SDP client would only
    # take a link-local address; the veth tests in tests/sdp run that whole chain).
    found = SdpResult(response=SdpResponse(IPv6Address("::1"), port, Security.TLS), source="::1",
                      requested=SdpRequest(Security.TLS, TransportProtocol.TCP), attempts=1, elapsed=0.01,
                      round_trip=0.01, malformed=0)
    record = json.dumps(found.to_json()) + "\n"
    result = run_cli(
        "tls-verify",
        "--from-sdp",
        "-",
        "--json",
        "--certs-dir",
        str(certs(pki_dir)),
        "--trust-dir",
        str(trust(pki_dir)),
        stdin='{"event":"SdpRequestSent"}\n' + record,
    )
    thread.join(10)
    listener.close()
    assert result.returncode == 0, result.stderr
    assert '"ok":true' in result.stdout and '"version":"TLSv1.3"' in result.stdout


@pytest.mark.parametrize(("line", "error"), [
    ("not json", "Expecting value: line 1 column 1 (char 0)"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
])
def test_cli_from_sdp_without_a_record_is_one_line(pki_dir: Path, line: str, error: str) -> None:
    result = run_cli("tls-verify", "--from-sdp", "-", "--trust-dir", str(trust(pki_dir)), stdin=f"\n{line}\n")
    assert result.returncode == 1
    assert result.stderr == f"v2gtool: error: --from-sdp: line 2 is not JSON from sdp-discovery --json: {error}\n"


def test_cli_from_sdp_reads_a_file_too(tmp_path: Path) -> None:
    path = tmp_path / "sdp.jsonl"
    path.write_text('{"event": "SdpRequestSent"}\n')
    result = run_cli("tls-verify", "--from-sdp", str(path))
    assert result.returncode == 1
    assert result.stderr == 'v2gtool: error: input is not an sdp-discovery --json record (no "event": "SdpResult")\n'


def test_cli_from_sdp_with_stdin_closed_is_one_line_exit_2() -> None:
    result = subprocess.run([sys.executable, "-m", "v2gtool", "tls-verify", "--from-sdp", "-"], capture_output=True,
                            text=True, timeout=60, preexec_fn=lambda: os.close(0))
    assert result.returncode == ExitCode.USAGE
    assert result.stderr == "v2gtool: error: '-' reads stdin, but stdin is closed\n"


@needs_openssl
@pytest.mark.interop
def test_secc_with_an_iso2_key_under_iso20_is_diagnosed(pki_dir: Path, s_server) -> None:  # type: ignore[no-untyped-def]
    port = s_server(pki_dir, "secc_iso2", "-tls1_3")  # a secp256r1 leaf offered for -20
    report = connect(pki_dir, port)
    assert not report.ok
    assert report.diagnosis[0].startswith("the SECC refused our hello (alert handshake_failure)")
    assert "has no certificate of a key type we accept" in report.diagnosis[0]


@needs_openssl
@pytest.mark.interop
def test_evcc_with_an_iso2_key_is_diagnosed(pki_dir: Path, tmp_path: Path) -> None:
    port, server = serve_once(pki_dir)
    cert, chain, key = split_chain(pki_dir, "secc_iso2", tmp_path)  # any secp256r1 certificate
    subprocess.run(
        ["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-cert", str(cert),
         "-cert_chain", str(chain), "-key", str(key), "-tls1_3"],
        input="", capture_output=True, text=True, timeout=20,
    )  # fmt: skip
    report = server.result(10)
    assert not report.ok
    assert report.diagnosis[0] == (
        "the EVCC sent no certificate, but ISO 15118-20 requires mutual authentication; "
        "we asked for one signed with ecdsa_secp521r1_sha512, ed448"
    )


def test_human_report_keeps_bracketed_text_and_one_line_per_item() -> None:
    from rich.console import Console

    from v2gtool.cli.context import AppContext
    from v2gtool.cli.tls_verify import _render_handshake
    from v2gtool.config import Config

    console = Console(record=True, width=40)
    app = AppContext(Config(), False, False, console, Console(stderr=True))
    report = HandshakeReport(
        "client", "[fe80::1%eth1]:64109", Protocol.ISO20, False, 0.0012,
        error="TLS handshake failed: [x] broken", diagnosis=("the [SECC] refused",),
    )  # fmt: skip
    _render_handshake(app, report)
    lines = console.export_text().splitlines()
    assert lines == [
        "TLS handshake as EVCC (client) with [fe80::1%eth1]:64109 (ISO 15118-20): FAILED in 1.20 ms",
        "  TLS handshake failed: [x] broken",
        "  the [SECC] refused",
    ]


@contextlib.contextmanager
def _serving_secc(pki_dir: Path, trust_dir: Path, pid_file: Path, port: int) -> Iterator[subprocess.Popen[str]]:
    """``tls-verify --serve`` with *pid_file*, once it has written it; killed at the end if still running."""
    server = subprocess.Popen(
        [sys.executable, "-m", "v2gtool", "tls-verify", "--serve", "--listen", "127.0.0.1",
         "--port", str(port), "--pid-file", str(pid_file), "--json",
         "--certs-dir", str(certs(pki_dir)), "--trust-dir", str(trust_dir)],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while not pid_file.exists():
            assert time.monotonic() < deadline and server.poll() is None, "the SECC did not start"
            time.sleep(0.02)
        yield server
    finally:
        if server.poll() is None:
            server.kill()
        server.communicate()


def test_trust_update_makes_a_running_secc_reload(pki_dir: Path, tmp_path: Path) -> None:
    partial = _trust_without_oem(pki_dir, tmp_path)
    pid_file, port = tmp_path / "secc.pid", free_port()
    with _serving_secc(pki_dir, partial, pid_file, port) as server:
        oem_root = next(trust(pki_dir).glob("OEM_Root_CA_*.pem"))
        update = run_cli(
            "pki", "trust-update", str(oem_root), "--trust-dir", str(partial), "--pid-file", str(pid_file)
        )
        assert update.returncode == 0, update.stderr
        assert server.stdout is not None
        assert json.loads(server.stdout.readline()) == {"event": "TlsReloaded", "roots": len(CHAINS)}
        assert connect(pki_dir, port).ok
        handshake = json.loads(server.stdout.readline())
        assert (handshake["ok"], handshake["profile_findings"]) == (True, [])
        assert server.wait(10) == 0
        assert not pid_file.exists()


def test_cli_offline_json_reports_the_clock_margin(pki_dir: Path) -> None:
    chain, trust_dir = str(certs(pki_dir) / "vehicle.pem"), str(trust(pki_dir))
    result = run_cli("tls-verify", "--json", "--chain", chain, "--role", "vehicle", "--trust-dir", trust_dir)
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    leaf = load_pem_chain(certs(pki_dir) / "vehicle.pem")[0]
    now = time.time()
    # How far the clock may be off: back to the latest notBefore, ahead to the earliest notAfter.
    assert record["clock_behind_s"] == pytest.approx(now - leaf.not_valid_before_utc.timestamp(), abs=30)
    assert record["clock_ahead_s"] == pytest.approx(leaf.not_valid_after_utc.timestamp() - now, abs=30)
    assert (record["ok"], record["findings"], len(record["chain"])) == (True, [], 4)


@pytest.mark.parametrize("build", [client_context, server_context])
def test_own_certificate_of_a_forbidden_key_type_is_refused(
    pki_dir: Path, build: Callable[..., ssl.SSLContext]
) -> None:
    """A P-256 leaf under -20 would be loaded, then silently not sent (Annex B: secp521r1 or Ed448)."""
    chain = certs(pki_dir) / "secc_iso2.pem"
    with pytest.raises(
        TlsError, match=f"^own certificate {chain}: key is secp256r1; ISO 15118-20 requires ed448 or secp521r1$"
    ):
        build(certs(pki_dir), trust(pki_dir), credentials=Credentials.named(certs(pki_dir), "secc_iso2"))


def test_certificate_required_alert_says_we_sent_none() -> None:
    trace = HandshakeTrace(alerts={"received": 116})
    assert diagnose(trace, "client", Protocol.ISO20, KeyType.SECP521R1) == [
        "the SECC requires a certificate and we sent none (alert certificate_required)"
    ]


def test_cli_without_a_mode_is_a_usage_error_before_the_trust_store_is_read(tmp_path: Path) -> None:
    result = run_cli("tls-verify", "--trust-dir", str(tmp_path / "missing"))
    assert result.returncode == 2
    assert result.stderr.endswith(
        "Error: give exactly one of: --chain FILE, --serve, --from-sdp FILE, or TARGET PORT\n"
    )


@pytest.mark.parametrize(
    ("args", "flag"),
    [(("--serve", "--at", "2027-01-01"), "--at"), (("::1", "64109", "--role", "vehicle"), "--role")],
)
def test_cli_offline_options_outside_chain_mode_are_usage_errors(args: tuple[str, ...], flag: str) -> None:
    result = run_cli("tls-verify", *args)
    assert result.returncode == 2
    assert result.stderr.endswith(f"Error: {flag} applies to --chain only\n")


# --- exit status, credentials, pid file, mutual authentication ----------------------------------


def encrypted_key(base: Path, name: str, tmp_path: Path) -> Path:
    """*name*'s key as ``openssl pkey -aes256`` writes it: a passphrase-protected PEM."""
    key = serialization.load_pem_private_key((certs(base) / f"{name}.key").read_bytes(), None)
    path = tmp_path / f"{name}_encrypted.key"
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.BestAvailableEncryption(b"x")))  # fmt: skip
    return path


@pytest.mark.parametrize(("name", "mode"), [("secc_iso20", ("--serve", "--port", "1")), ("vehicle", ("::1", "1"))])
def test_cli_encrypted_key_is_one_line_and_never_prompts(
    pki_dir: Path, tmp_path: Path, name: str, mode: tuple[str, ...]
) -> None:
    """OpenSSL would ask for the passphrase on the terminal (a service hangs there), then fail with a
    traceback; v2gtool reads unencrypted keys only and says so before any connection."""
    key = encrypted_key(pki_dir, name, tmp_path)
    result = subprocess.run(
        [sys.executable, "-m", "v2gtool", "tls-verify", *mode, "--cert", str(certs(pki_dir) / f"{name}.pem"),
         "--key", str(key), "--trust-dir", str(trust(pki_dir))],
        cwd=REPO, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=30,
        start_new_session=True,  # no controlling terminal: an OpenSSL prompt fails instead of waiting
    )  # fmt: skip
    assert result.returncode == ExitCode.SECURITY
    assert result.stderr == (
        f"v2gtool: error: private key {key} is encrypted: v2gtool reads unencrypted keys only "
        f"(keep it mode 0600; decrypt it with openssl pkey -in {key} -out NEW.key)\n"
    )


def test_cli_handshake_exit_status_says_what_failed(pki_dir: Path) -> None:
    """5 for a TLS or certificate failure, 3 for a peer that never speaks TLS, 1 for no connection."""
    args = ("--certs-dir", str(certs(pki_dir)), "--trust-dir", str(trust(pki_dir)), "--timeout", "1")
    port, server = serve_once(pki_dir, Protocol.ISO2)  # a -2 SECC: refuses TLS 1.3
    refused = run_cli("tls-verify", "127.0.0.1", str(port), *args)
    server.result(10)
    assert refused.returncode == ExitCode.SECURITY, refused.stdout
    assert "FAILED" in refused.stdout
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts TCP (backlog), never answers
        timed_out = run_cli("tls-verify", "127.0.0.1", str(silent.getsockname()[1]), *args)
    assert timed_out.returncode == ExitCode.TIMEOUT, timed_out.stdout
    assert "TLS handshake timed out" in timed_out.stdout
    unreachable = run_cli("tls-verify", "127.0.0.1", str(free_port()), *args)
    assert unreachable.returncode == ExitCode.FAILURE, unreachable.stdout
    assert "cannot connect to 127.0.0.1:" in unreachable.stdout


def test_cli_own_certificate_of_a_forbidden_key_type_exits_5(pki_dir: Path) -> None:
    chain = certs(pki_dir) / "secc_iso2.pem"
    result = run_cli("tls-verify", "--serve", "--cert", str(chain), "--key", str(certs(pki_dir) / "secc_iso2.key"),
                     "--trust-dir", str(trust(pki_dir)))  # fmt: skip
    assert result.returncode == ExitCode.SECURITY
    assert result.stderr == (
        f"v2gtool: error: own certificate {chain}: key is secp256r1; ISO 15118-20 requires ed448 or secp521r1\n"
    )



@pytest.mark.parametrize("mode", [("--serve",), ("::1", "1")])
def test_cli_own_certificate_that_is_no_certificate_exits_5(pki_dir: Path, tmp_path: Path,
                                                              mode: tuple[str, ...]) -> None:
    """--cert given the key by mistake, or a file that is not there: an unusable own certificate is a
    TLS or certificate failure (5) in the server and the client alike, as ``serve`` says it."""
    key = certs(pki_dir) / "secc_iso20.key"
    missing = tmp_path / "missing.pem"
    for cert, problem in ((key, "not a PEM certificate (it holds a private key: give the chain, the .pem beside it)"),
                          (missing, "No such file or directory")):
        result = run_cli("tls-verify", *mode, "--cert", str(cert), "--key", str(key),
                         "--trust-dir", str(trust(pki_dir)))  # fmt: skip
        assert result.returncode == ExitCode.SECURITY, result.stderr
        assert result.stderr == f"v2gtool: error: own certificate {cert}: {problem}\n"

def test_sigterm_ends_the_server_and_removes_its_pid_file(pki_dir: Path, tmp_path: Path) -> None:
    """systemd stops a service with SIGTERM: a pid file left behind would make a later
    ``pki trust-update`` signal whatever process gets the pid next."""
    pid_file = tmp_path / "secc.pid"
    with _serving_secc(pki_dir, trust(pki_dir), pid_file, free_port()) as server:
        server.terminate()
        assert server.wait(10) == ExitCode.OK
        assert not pid_file.exists()


@needs_openssl
@pytest.mark.interop
def test_our_evcc_flags_an_secc_that_does_not_ask_for_the_vehicle_certificate(
    pki_dir: Path, s_server
) -> None:  # type: ignore[no-untyped-def]
    """-20 requires mutual authentication: a handshake without CertificateRequest is not "ok"."""
    port = s_server(pki_dir, "secc_iso20", "-tls1_3")  # no -Verify: the SECC never asks
    report = connect(pki_dir, port)
    assert not report.ok
    assert report.exit_code == ExitCode.SECURITY
    assert report.version == "TLSv1.3" and report.profile is not None and report.profile.ok
    assert report.error == (
        "the SECC did not ask for our vehicle certificate (no CertificateRequest), but ISO 15118-20 requires "
        "mutual authentication"
    )


@needs_openssl
@pytest.mark.interop
def test_cli_client_exits_5_without_mutual_authentication(pki_dir: Path, s_server) -> None:  # type: ignore[no-untyped-def]
    port = s_server(pki_dir, "secc_iso20", "-tls1_3")
    result = run_cli("tls-verify", "--json", "127.0.0.1", str(port), "--certs-dir", str(certs(pki_dir)),
                     "--trust-dir", str(trust(pki_dir)))  # fmt: skip
    assert result.returncode == ExitCode.SECURITY, result.stdout
    record = json.loads(result.stdout)
    assert record["ok"] is False and "no CertificateRequest" in record["error"]
