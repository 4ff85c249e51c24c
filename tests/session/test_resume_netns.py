"""A paused session resumed on a new TCP connection (ISO 15118-20 8.3.5.3.2 SessionSetup with the old
SessionID -> OK_OldSessionJoined) from ``serve``, which keeps serving one connection after another."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import VethPair, veth_pair

pytestmark = pytest.mark.netns
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def link() -> Iterator[VethPair]:
    with veth_pair("v2gr") as pair:
        yield pair


def test_serve_resumes_a_paused_session_on_a_new_connection(link: VethPair) -> None:
    secc = subprocess.Popen(link.cmd(link.secc_ns, sys.executable, "-m", "v2gtool", "--json", "v2g-message-handler",
                                     "serve", "--iface", link.secc_if, "--no-tls", "--sessions", "3"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ev = subprocess.run(link.cmd(link.ev_ns, sys.executable, "-m", "tests.session.resume_client", link.ev_if),
                            cwd=REPO, capture_output=True, text=True, timeout=60)
        secc_out, secc_err = secc.communicate(timeout=30)
    finally:
        secc.kill()
    assert ev.returncode == 0, ev.stderr + secc_err
    responses = [json.loads(line) for line in ev.stdout.splitlines()]
    by_connection = {n: [r for r in responses if r["connection"] == n] for n in (1, 2, 3)}

    first = by_connection[1]
    assert [r["message"] for r in first] == [
        "supportedAppProtocolRes", "SessionSetupRes", "AuthorizationSetupRes", "AuthorizationRes",
        "ServiceDiscoveryRes", "ServiceDetailRes", "ServiceSelectionRes", "SessionStopRes"]
    assert first[1]["code"] == "OK_NewSessionEstablished"
    paused = first[1]["session_id"]
    assert paused != "00" * 8 and first[-1]["code"] == "OK"

    second = by_connection[2]
    assert [(r["message"], r["code"]) for r in second] == [
        ("supportedAppProtocolRes", "OK_SuccessfulNegotiation"), ("SessionSetupRes", "OK_OldSessionJoined"),
        ("AuthorizationSetupRes", "OK"), ("SessionStopRes", "OK")]
    assert {r["session_id"] for r in second[1:]} == {paused}

    # A resumed session is used up: the same SessionID again starts a new session.
    third = by_connection[3]
    assert third[1]["message"] == "SessionSetupRes" and third[1]["code"] == "OK_NewSessionEstablished"
    assert third[1]["session_id"] not in (paused, "00" * 8)

    # serve kept serving: three sessions on three connections, each ended by SessionStop; exit 0
    assert secc.returncode == 0, secc_err
    ended = [json.loads(line) for line in secc_out.splitlines() if '"SessionEnded"' in line]
    assert [e["reason"] for e in ended] == ["SessionStop Pause", "SessionStop Terminate", "SessionStop Terminate"]
