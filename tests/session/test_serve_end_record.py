"""How ``serve`` records a session it did not end normally: stopped by SIGTERM in the loop, or ended by
its V2G_SECC_Sequence_Timeout when the EV went silent. Either way the record ends with the station's
session stop at the time it happened, the SECC's SessionEnded, and the contactors reported open."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from tests.netns import VethPair, veth_pair
from v2gtool.exit_codes import ExitCode

pytestmark = pytest.mark.netns
V2GTOOL = [sys.executable, "-m", "v2gtool", "--json", "v2g-message-handler"]
SEQUENCE_TIMEOUT_S = 60.0  # V2G_SECC_Sequence_Timeout (standards.md 4.4)


@pytest.fixture(scope="module")
def link() -> Iterator[VethPair]:
    with veth_pair("v2ge") as pair:
        yield pair


def _serve_until_the_loop(
    link: VethPair, serve_args: list[str], act: Any
) -> tuple[int, list[dict[str, Any]]]:
    """Serve one session to ``connect``; once the SECC answered a DC_ChargeLoopReq, ``act(secc, ev)``;
    then the SECC's exit status and its records."""
    secc = subprocess.Popen(link.cmd(link.secc_ns, *V2GTOOL, "serve", "--iface", link.secc_if, "--no-tls",
                                     "--sessions", "1", *serve_args), stdout=subprocess.PIPE, text=True)
    ev = subprocess.Popen(link.cmd(link.ev_ns, *V2GTOOL, "connect", "--iface", link.ev_if, "--no-tls",
                                   "--duration", "120"), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        assert secc.stdout is not None
        lines = []
        while '"DC_ChargeLoopRes"' not in (line := secc.stdout.readline()):
            assert line, "serve ended before the loop"
            lines.append(line)
        act(secc, ev)
        rest, _ = secc.communicate(timeout=120)
    finally:
        secc.kill()
        ev.kill()
        ev.wait()
    return secc.returncode, [json.loads(line) for line in [*lines, line, *rest.splitlines()]]


def _end_of(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The last record of each event that ends a session, by name."""
    return {r["event"]: r for r in records if r["event"] in
            ("InterlockTripped", "SessionEnded", "ContactorsOpening", "ContactorsOpened")}


def test_a_sigterm_in_the_loop_ends_the_session_and_opens_the_contactors(link: VethPair) -> None:
    rc, records = _serve_until_the_loop(link, [], lambda secc, ev: secc.send_signal(signal.SIGTERM))
    assert rc == ExitCode.INTERRUPTED
    end = _end_of(records)
    assert [r["event"] for r in records[-4:]] == [
        "InterlockTripped", "SessionEnded", "ContactorsOpening", "ContactorsOpened"
    ]
    assert end["InterlockTripped"]["condition"] == "SESSION_STOP"
    assert end["SessionEnded"]["role"] == "SECC" and not end["SessionEnded"]["ok"]
    assert "stopped" in end["SessionEnded"]["reason"]
    last_request = max(r["t"] for r in records if r["event"] == "MessageReceived")
    assert last_request <= end["InterlockTripped"]["t"] <= end["SessionEnded"]["t"]
    assert end["ContactorsOpening"]["t"] <= end["ContactorsOpened"]["t"]
    assert not end["ContactorsOpening"]["forced"]


def test_an_ev_gone_silent_is_stopped_when_the_timeout_ends_it(link: VethPair) -> None:
    """The EV stops (SIGSTOP) in the loop: V2G_SECC_Sequence_Timeout ends the session (exit 3), and the
    station's session stop is stamped then, not at the last request; --speed 10 runs the 60 s in 6."""
    rc, records = _serve_until_the_loop(link, ["--speed", "10"], lambda secc, ev: ev.send_signal(signal.SIGSTOP))
    assert rc == ExitCode.TIMEOUT
    end = _end_of(records)
    assert [r["event"] for r in records[-4:]] == [
        "InterlockTripped", "SessionEnded", "ContactorsOpening", "ContactorsOpened"
    ]
    assert end["SessionEnded"]["reason"].startswith("V2G_SECC_Sequence_Timeout")
    last_request = max(r["t"] for r in records if r["event"] == "MessageReceived")
    assert last_request + SEQUENCE_TIMEOUT_S / 2 < end["InterlockTripped"]["t"] <= end["SessionEnded"]["t"]
    assert end["InterlockTripped"]["t"] <= end["ContactorsOpened"]["t"]
