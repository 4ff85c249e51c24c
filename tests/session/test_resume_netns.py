"""A paused session resumed on a new TCP connection (ISO 15118-20 8.3.4.3.1 SessionStop Pause,
8.3.5.3.2 SessionSetup with the old SessionID -> OK_OldSessionJoined) from ``serve``, which keeps
serving one connection after another: ``connect --pause`` then ``connect --resume``, and a scripted EV
for what our EVCC does not do (pausing before any energy transfer)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from tests.netns import VethPair, veth_pair
from v2gtool.cli.main import cli

pytestmark = pytest.mark.netns
REPO = Path(__file__).resolve().parents[2]
V2GTOOL = [sys.executable, "-m", "v2gtool"]


@pytest.fixture(scope="module")
def link() -> Iterator[VethPair]:
    with veth_pair("v2gr") as pair:
        yield pair


def serve(link: VethPair, sessions: int) -> subprocess.Popen[str]:
    return subprocess.Popen(link.cmd(link.secc_ns, *V2GTOOL, "--json", "v2g-message-handler", "serve", "--iface",
                                     link.secc_if, "--no-tls", "--sessions", str(sessions)),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def connect(link: VethPair, *args: str) -> list[dict[str, Any]]:
    ev = subprocess.run(link.cmd(link.ev_ns, *V2GTOOL, "--json", "v2g-message-handler", "connect", "--iface",
                                 link.ev_if, "--no-tls", "--duration", "1", *args),
                        capture_output=True, text=True, timeout=60)
    assert ev.returncode == 0, ev.stderr
    return [json.loads(line) for line in ev.stdout.splitlines()]


def secc_results(secc: subprocess.Popen[str]) -> tuple[list[str], list[str]]:
    """serve's SessionSetupRes codes and SessionEnded reasons, once it ended by itself (exit 0)."""
    out, err = secc.communicate(timeout=30)
    assert secc.returncode == 0, err
    records = [json.loads(line) for line in out.splitlines()]
    setups = [r["summary"]["ResponseCode"] for r in records
              if r["event"] == "MessageSent" and r["message"] == "SessionSetupRes"]
    return setups, [r["reason"] for r in records if r["event"] == "SessionEnded"]


def test_connect_pauses_then_resumes_the_session(link: VethPair) -> None:
    secc = serve(link, 3)
    try:
        first = connect(link, "--pause", "--direction", "discharge")
        paused = first[-1]
        assert paused["event"] == "SessionPaused" and first[-2]["reason"] == "SessionStop Pause"
        session_id = paused["session_id"]
        assert len(session_id) == 16 and session_id != "00" * 8

        # right after the pause: the charger has checked the cable again before the energy transfer
        second = connect(link, "--resume", session_id)
        assert second[-1] == {"event": "SessionResumed", "t": second[-1]["t"], "role": "EVCC",
                              "session_id": session_id, "joined": True}
        sent = [r["message"] for r in second if r["event"] == "MessageSent"]
        assert sent.index("DC_CableCheckReq") < sent.index("DC_ChargeLoopReq")

        # a resumed session is used up: the same SessionID again starts a new session
        third = connect(link, "--resume", session_id)
        assert third[-1]["joined"] is False and third[-1]["session_id"] not in (session_id, "00" * 8)
        setups, ended = secc_results(secc)
    finally:
        secc.kill()
    assert setups == ["OK_NewSessionEstablished", "OK_OldSessionJoined", "OK_NewSessionEstablished"]
    assert ended == ["SessionStop Pause", "SessionStop Terminate", "SessionStop Terminate"]


def test_a_session_paused_before_energy_transfer_resumes(link: VethPair) -> None:
    """The scripted EV pauses after ServiceSelection and stops the resumed session at once."""
    secc = serve(link, 2)
    try:
        ev = subprocess.run(link.cmd(link.ev_ns, sys.executable, "-m", "tests.session.resume_client", link.ev_if),
                            cwd=REPO, capture_output=True, text=True, timeout=60)
        assert ev.returncode == 0, ev.stderr
        setups, ended = secc_results(secc)
    finally:
        secc.kill()
    responses = [json.loads(line) for line in ev.stdout.splitlines()]
    first = [r for r in responses if r["connection"] == 1]
    assert [r["message"] for r in first] == [
        "supportedAppProtocolRes", "SessionSetupRes", "AuthorizationSetupRes", "AuthorizationRes",
        "ServiceDiscoveryRes", "ServiceDetailRes", "ServiceSelectionRes", "SessionStopRes"]
    assert first[1]["code"] == "OK_NewSessionEstablished" and first[-1]["code"] == "OK"
    paused = first[1]["session_id"]
    second = [r for r in responses if r["connection"] == 2]
    assert [(r["message"], r["code"]) for r in second] == [
        ("supportedAppProtocolRes", "OK_SuccessfulNegotiation"), ("SessionSetupRes", "OK_OldSessionJoined"),
        ("AuthorizationSetupRes", "OK"), ("SessionStopRes", "OK")]
    assert {r["session_id"] for r in second[1:]} == {paused}
    assert setups == ["OK_NewSessionEstablished", "OK_OldSessionJoined"]
    assert ended == ["SessionStop Pause", "SessionStop Terminate"]


@pytest.mark.parametrize("value", ["00" * 8, "abc", "12" * 9, "zz" * 8])
def test_resume_needs_a_session_id(value: str) -> None:
    result = CliRunner().invoke(cli, ["v2g-message-handler", "connect", "--iface", "lo", "--resume", value])
    assert result.exit_code == 2
    assert "--resume" in result.output and "16 hex digits" in result.output
