"""The commands that wait on a peer show what they wait for on a terminal's stderr, and only there.

In-process through click's CliRunner (``TTY_COMPATIBLE=1 TTY_INTERACTIVE=1`` make rich treat the
captured stderr as an interactive terminal), and as real processes whose stderr is a pty while
stdout is a pipe, the way a field engineer runs ``serve > session.log``.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from tests.netns import VethPair, veth_pair
from v2gtool.cli.main import cli
from v2gtool.cli.progress import FRAMES

V2GTOOL = [sys.executable, "-m", "v2gtool"]
TERMINAL = {"TTY_COMPATIBLE": "1", "TTY_INTERACTIVE": "1"}


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    root = tmp_path_factory.mktemp("pki")
    subprocess.run([*V2GTOOL, "pki", "init", str(root)], check=True, capture_output=True, timeout=120)
    return ["--certs-dir", str(root / "certs"), "--trust-dir", str(root / "trust" / "certs")]


def _free_port() -> int:
    with socket.socket(socket.AF_INET6) as probe:
        probe.bind(("::1", 0))
        return int(probe.getsockname()[1])


def _drawn(stderr: str) -> bool:
    return any(frame in stderr for frame in FRAMES)


def _invoke(args: list[str]) -> Result:
    return CliRunner().invoke(cli, args, env=TERMINAL)


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_tls_verify_client_spins_while_connecting_and_stops_on_the_error(pki: list[str], json_flag: list[str]) -> None:
    port = _free_port()  # nobody listens: connection refused
    result = _invoke([*json_flag, "tls-verify", "::1", str(port), *pki])
    assert result.exit_code == 1
    assert "cannot connect to [::1]" in result.stdout
    if json_flag:
        assert result.stderr == ""
        assert json.loads(result.stdout)["ok"] is False
    else:
        assert f"connecting to [::1]:{port}, TLS handshake (0 s)" in result.stderr
        assert result.stderr.endswith("\r\x1b[2K")  # erased when the command gave up
    assert not _drawn(result.stdout) and "\x1b[2K" not in result.stdout


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_tls_verify_server_spins_until_the_client_came(pki: list[str], json_flag: list[str]) -> None:
    port = _free_port()
    client: list[subprocess.CompletedProcess[str]] = []

    def connect_when_listening() -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket(socket.AF_INET6) as probe:
                if probe.connect_ex(("::1", port)) == 0:
                    break
            time.sleep(0.05)
        client.append(subprocess.run([*V2GTOOL, "tls-verify", "::1", str(port), *pki], capture_output=True,
                                     text=True, timeout=60))

    # The probe connection above is the first accepted "client" (no handshake): count 2.
    thread = threading.Thread(target=connect_when_listening)
    thread.start()
    result = _invoke([*json_flag, "tls-verify", "--serve", "--listen", "::1", "--port", str(port), "--count", "2",
                      *pki])
    thread.join()
    assert client[0].returncode == 0, client[0].stdout
    if json_flag:
        assert result.stderr == ""
        reports = [json.loads(line) for line in result.stdout.splitlines()]
        assert reports[-1]["ok"] is True
    else:
        assert f"waiting for a client on [::1]:{port}, handshake 1 of 2" in result.stderr
        assert f"waiting for a client on [::1]:{port}, handshake 2 of 2" in result.stderr
        assert "TLS handshake with [::1]:" in result.stderr
        assert result.stderr.endswith("\r\x1b[2K")
        assert f"listening on [::1]:{port}" in result.stdout
    assert not _drawn(result.stdout) and "\x1b[2K" not in result.stdout


# --- real processes, stderr on a pty ------------------------------------------------------------


class PtyProcess:
    """A child whose stderr is a pty (an interactive terminal) and whose stdout is a pipe."""

    def __init__(self, args: list[str]) -> None:
        master, slave = pty.openpty()
        self.master = master
        self.process = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave)
        os.close(slave)
        self.terminal = b""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(self.master, 65536)
                except OSError:  # the child closed the pty
                    return
                if not chunk:
                    return
                self.terminal += chunk
            elif self.process.poll() is not None:
                return

    def finish(self, timeout: float) -> tuple[int, str, str]:
        """Exit status, stdout, and everything the terminal received."""
        try:
            stdout, _ = self.process.communicate(timeout=timeout)
        finally:
            self.process.kill()
            self._reader.join(timeout=5)
            os.close(self.master)
        return self.process.returncode, stdout.decode(), self.terminal.decode(errors="replace")


@pytest.fixture(scope="module")
def link() -> Iterator[VethPair]:
    with veth_pair("v2gw") as pair:
        yield pair


@pytest.mark.netns
@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_serve_and_connect_show_what_they_wait_for_on_the_terminal_only(link: VethPair, json_flag: list[str]) -> None:
    secc = PtyProcess(link.cmd(link.secc_ns, *V2GTOOL, *json_flag, "v2g-message-handler", "serve", "--iface",
                               link.secc_if, "--sessions", "1", "--no-tls"))
    time.sleep(1.0)  # the SECC is waiting for an EV
    ev = PtyProcess(link.cmd(link.ev_ns, *V2GTOOL, *json_flag, "v2g-message-handler", "connect", "--iface",
                             link.ev_if, "--no-tls", "--duration", "1"))
    ev_rc, ev_out, ev_terminal = ev.finish(timeout=120)
    secc_rc, secc_out, secc_terminal = secc.finish(timeout=30)
    assert (ev_rc, secc_rc) == (0, 0), ev_terminal + secc_terminal
    for out in (ev_out, secc_out):
        assert "SessionStop" in out
        assert "\x1b" not in out and not _drawn(out)
        if json_flag:
            assert all(json.loads(line) for line in out.splitlines())
    if json_flag:
        assert secc_terminal == ev_terminal == ""
        return
    assert f"waiting for an EV on {link.secc_if}: SDP on UDP 15118, TCP [fe80::" in secc_terminal
    assert "in session with the EV at [fe80::" in secc_terminal
    assert f"discovering the SECC on {link.ev_if}: SDP requests to [ff02::1]:15118" in ev_terminal
    assert "in session with the SECC at [fe80::" in ev_terminal
    for terminal in (secc_terminal, ev_terminal):
        assert terminal.endswith("\r\x1b[2K")  # erased at the end


@pytest.mark.netns
def test_evse_slac_says_which_mme_it_waits_for_and_stops_on_ctrl_c(link: VethPair, tmp_path: Path) -> None:
    """The EVSE on a real interface with nobody on the cable waits for CM_SLAC_PARM.REQ until Ctrl-C."""
    evse = PtyProcess(link.cmd(link.secc_ns, *V2GTOOL, "evse-slac", "--iface", link.secc_if, "--backend", "sim"))
    deadline = time.monotonic() + 30
    while b"CM_SLAC_PARM.REQ on" not in evse.terminal and time.monotonic() < deadline:
        time.sleep(0.1)
    evse.process.send_signal(2)  # SIGINT, as Ctrl-C
    rc, out, terminal = evse.finish(timeout=30)
    assert f"waiting for the EV's CM_SLAC_PARM.REQ on {link.secc_if}" in terminal
    assert rc == 130
    assert terminal.endswith("\r\x1b[2K\r\nv2gtool: aborted\r\n")  # erased first, then the one line
    assert "SETTING_KEY → WAIT_SLAC_PARM_REQ" in out  # the timeline went to stdout
    assert "\x1b" not in out and not _drawn(out)


@pytest.mark.netns
def test_sdp_discovery_spins_in_both_roles(link: VethPair) -> None:
    evse = PtyProcess(link.cmd(link.secc_ns, *V2GTOOL, "sdp-discovery", "--iface", link.secc_if, "--role", "evse",
                               "--security", "none", "--answers", "1"))
    time.sleep(1.0)
    ev = PtyProcess(link.cmd(link.ev_ns, *V2GTOOL, "sdp-discovery", "--iface", link.ev_if, "--security", "none"))
    ev_rc, ev_out, ev_terminal = ev.finish(timeout=60)
    evse_rc, evse_out, evse_terminal = evse.finish(timeout=30)
    assert (ev_rc, evse_rc) == (0, 0), ev_terminal + evse_terminal
    assert f"discovering the SECC on {link.ev_if}: SDP requests to [ff02::1]:15118" in ev_terminal
    assert f"waiting for SDP requests on {link.secc_if} (UDP 15118)" in evse_terminal
    assert "SECC found" in ev_out and "answered NO_TLS" in evse_out
    for out in (ev_out, evse_out):
        assert "\x1b[2K" not in out and not _drawn(out)


@pytest.mark.netns
def test_session_run_netns_has_one_spinner_above_which_both_roles_print(tmp_path: Path) -> None:
    """Two child processes share the terminal: only the parent draws, and their lines pass through it."""
    run = PtyProcess([*V2GTOOL, "session", "run", "--netns", "--no-tls", "--duration", "1"])
    rc, out, terminal = run.finish(timeout=300)
    assert rc == 0, terminal
    assert re.search(r"waiting for the EVSE on v2gns\d+ and the EV on v2gne\d+ \(\d+ s\)", terminal)
    assert terminal.count("\r\x1b[2K⠋ starting the EVSE on ") == 1  # the children drew nothing
    assert "SECC -> SessionStopRes" in out and "EVCC -> SessionStopReq" in out
    assert "\x1b[2K" not in out and not _drawn(out)
