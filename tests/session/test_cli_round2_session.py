"""``session run`` and ``connect``: inputs checked before the trace is touched, the emergency stop's
exit status, --netns's TLS from the configuration, its children when the parent dies or the reader
leaves, and a TLS handshake the SECC drops."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.session.test_run_netns import _children_of
from v2gtool.exit_codes import ExitCode

V2GTOOL = [sys.executable, "-m", "v2gtool"]
netns = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("pki")
    subprocess.run([*V2GTOOL, "pki", "init", str(base)], check=True, capture_output=True, timeout=120)
    return base


def _config(path: Path, certs: Path, trust: Path) -> Path:
    path.write_text(f'[pki]\ncerts_dir = "{certs}"\ntrust_dir = "{trust}"\n')
    return path


def test_a_missing_contract_key_leaves_the_last_trace_alone(tmp_path: Path) -> None:
    trace = tmp_path / "keep.pcap"
    trace.write_bytes(b"the last session's trace")
    proc = subprocess.run([*V2GTOOL, "session", "run", "--sim", "--pnc", "--certs-dir", str(tmp_path),
                           "--trace", str(trace)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == ExitCode.SECURITY, proc.stderr
    assert "contract.key" in proc.stderr
    assert trace.read_bytes() == b"the last session's trace"


def test_an_emergency_stop_before_the_session_is_a_safety_exit_without_a_hint(tmp_path: Path) -> None:
    """The interlock refuses the cable check's close for the pressed e-stop: exit 6, and no
    subcommand to debug it (the cable check step would point at isolation-check)."""
    scenario = tmp_path / "estop.toml"
    scenario.write_text("[[at]]\nt = 0\nestop = true\n")
    proc = subprocess.run([*V2GTOOL, "session", "run", "--sim", "--no-trace", "--scenario", str(scenario)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == ExitCode.SAFETY, proc.stderr
    assert "EMERGENCY_STOP" in proc.stderr and "debug with" not in proc.stderr


def test_netns_checks_the_configured_certificates_before_it_starts(tmp_path: Path) -> None:
    """``[pki]`` certificates are TLS as --certs-dir's are: one that is missing is the error the
    other paths give (exit 5), before the trace is opened or anything started."""
    config = _config(tmp_path / "pki.toml", tmp_path / "none" / "certs", tmp_path / "none" / "trust")
    trace = tmp_path / "keep.pcap"
    trace.write_bytes(b"the last session's trace")
    proc = subprocess.run([*V2GTOOL, "--config", str(config), "session", "run", "--netns", "--trace", str(trace)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == ExitCode.SECURITY, proc.stderr
    assert proc.stderr == f"v2gtool: error: trust directory {tmp_path / 'none' / 'trust'} does not exist\n"
    assert trace.read_bytes() == b"the last session's trace"


@pytest.mark.netns
@netns
def test_netns_runs_tls_with_the_configured_certificates(tmp_path: Path, pki: Path) -> None:
    config = _config(tmp_path / "pki.toml", pki / "certs", pki / "trust" / "certs")
    keylog = tmp_path / "keys.log"
    proc = subprocess.run([*V2GTOOL, "--config", str(config), "--json", "session", "run", "--netns", "--no-trace",
                           "--duration", "1", "--keylog", str(keylog)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "CLIENT_TRAFFIC_SECRET_0" in keylog.read_text()


@pytest.mark.netns
@netns
def test_the_children_die_with_a_sigkilled_parent() -> None:
    parent = subprocess.Popen([*V2GTOOL, "--json", "session", "run", "--netns", "--no-tls", "--no-trace",
                               "--duration", "60"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(_children_of(parent.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(_children_of(parent.pid)) == 2
        parent.kill()
        parent.wait()
        deadline = time.monotonic() + 20
        while _children_of(parent.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _children_of(parent.pid) == []
    finally:
        for child in _children_of(parent.pid):
            os.kill(child, signal.SIGKILL)
        for ns in (f"v2gn{parent.pid}ev", f"v2gn{parent.pid}se"):  # what a SIGKILLed parent cannot delete
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


@pytest.mark.netns
@netns
def test_a_reader_leaving_early_ends_the_netns_run_quietly() -> None:
    """``| head -3``: no relay traceback, both children stopped, the namespaces deleted, exit 0."""
    parent = subprocess.Popen([*V2GTOOL, "--json", "session", "run", "--netns", "--no-tls", "--no-trace",
                               "--duration", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert parent.stdout is not None and parent.stderr is not None
    try:
        for _ in range(3):
            json.loads(parent.stdout.readline())
        parent.stdout.close()
        err = parent.stderr.read()
        assert parent.wait(timeout=120) == 0, err
    finally:
        parent.kill()
        parent.wait()
    assert "Traceback" not in err and "BrokenPipeError" not in err
    assert _children_of(parent.pid) == []
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert f"v2gn{parent.pid}" not in namespaces


def test_a_tls_handshake_the_secc_drops_is_a_tls_error(pki: Path) -> None:
    """The SECC reads the ClientHello and closes: exit 5, saying so, not an empty OSError."""
    server = socket.socket(socket.AF_INET6)
    server.bind(("::1", 0))
    server.listen(1)
    port = server.getsockname()[1]

    def drop() -> None:
        connection, _ = server.accept()
        connection.recv(4096)
        connection.close()

    dropper = threading.Thread(target=drop, daemon=True)
    dropper.start()
    with server:
        proc = subprocess.run([*V2GTOOL, "v2g-message-handler", "connect", "--iface", "lo", "--host", "::1",
                               "--port", str(port), "--certs-dir", str(pki / "certs"),
                               "--trust-dir", str(pki / "trust" / "certs")], capture_output=True, text=True,
                              timeout=120)
    assert proc.returncode == ExitCode.SECURITY, proc.stderr
    assert proc.stderr.startswith(f"v2gtool: error: cannot connect to [::1]:{port}: TLS handshake failed: ")
    assert proc.stderr.endswith(" (a TLS 1.2-only SECC?)\n")
