"""``serve --speed N``: the SECC's ISO 15118-20 timeouts run on the session's clock, N times as fast as
the wall clock, as its simulated power path does (two network namespaces joined by veth)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.netns import VethPair, veth_pair
from v2gtool.exit_codes import ExitCode

pytestmark = pytest.mark.netns
V2GTOOL = [sys.executable, "-m", "v2gtool"]

# An EV that connects and never sends supportedAppProtocolReq: it prints "closed" once the SECC closes
# the connection, "open" when the SECC still holds it after 10 s (retrying while serve starts to listen).
_SILENT_EV = """
import socket, sys, time
host, port = sys.argv[1], int(sys.argv[2])
for _ in range(300):
    try:
        conn = socket.create_connection((host, port))
        break
    except ConnectionRefusedError:
        time.sleep(0.1)
conn.settimeout(10)
try:
    print("closed" if conn.recv(65536) == b"" else "answered")
except TimeoutError:
    print("open")
"""


@pytest.fixture(scope="module")
def link() -> Iterator[VethPair]:
    with veth_pair("v2gq") as pair:
        yield pair


def test_serve_speed_runs_the_secc_timeouts_on_the_session_clock(link: VethPair) -> None:
    """At --speed 1000 the 20 s V2G_SECC_CommunicationSetup_Timeout is 20 ms of wall time: the SECC
    ends the silent EV's session and closes its connection well within the EV's 10 s (at the wall
    clock's pace it would hold it 20 s), and ``--sessions 1`` exits with the timeout status."""
    secc = subprocess.Popen(link.cmd(link.secc_ns, *V2GTOOL, "--json", "v2g-message-handler", "serve", "--iface",
                                     link.secc_if, "--sessions", "1", "--no-tls", "--speed", "1000"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        shown = subprocess.run(["ip", "-n", link.secc_ns, "-6", "addr", "show", "dev", link.secc_if, "scope", "link"],
                               capture_output=True, text=True, timeout=10).stdout
        address = shown.split("inet6 ", 1)[1].split("/", 1)[0]
        ev = subprocess.run(link.cmd(link.ev_ns, sys.executable, "-c", _SILENT_EV, f"{address}%{link.ev_if}",
                                     "64109"), capture_output=True, text=True, timeout=60)
        _out, err = secc.communicate(timeout=60)
    finally:
        secc.kill()
        secc.wait()
    assert ev.stdout.strip() == "closed", ev.stderr + err
    assert secc.returncode == ExitCode.TIMEOUT, err
    assert err == ("v2gtool: error: SECC session failed: V2G_SECC_CommunicationSetup_Timeout: "
                   "no supportedAppProtocolReq\n")
