"""How a ``session run --sim`` ends when SIGTERM or SIGINT stops it: the session ends as a charger's
operator ends one (EVSENotification Terminate, the station's contactors opened through its interlock),
both sides' SessionEnded and the summary are reported (JSON lines, journal, panel), and the command
exits 130; and what the live panel shows once a session ended."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.session.test_journal import parse_datagram
from v2gtool.exit_codes import ExitCode

V2GTOOL = [sys.executable, "-m", "v2gtool"]


def long_session(speed: str = "20") -> list[str]:
    """An hour of charge loop, *speed* times real time: only a signal ends it."""
    return ["session", "run", "--sim", "--duration", "3600", "--speed", speed]


def signalled_json(after: str, *signals: signal.Signals, speed: str = "20") -> tuple[int, list[dict[str, object]]]:
    """Run :func:`long_session` with --json and send *signals* at the first record of the event
    *after*; its exit status and every record it wrote. Its stderr is one line, "aborted"."""
    run = subprocess.Popen([*V2GTOOL, "--json", *long_session(speed), "--no-trace"], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        assert run.stdout is not None
        records = []
        for line in run.stdout:
            records.append(json.loads(line))
            if records[-1]["event"] == after:
                for signum in signals:
                    run.send_signal(signum)
                break
        out, err = run.communicate(timeout=60)
    finally:
        run.kill()
        run.wait()
    assert err.strip() == "v2gtool: aborted", err
    return run.returncode, records + [json.loads(line) for line in out.splitlines()]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=lambda s: s.name)
def test_a_signal_in_the_loop_ends_the_session_and_reports_it(signum: signal.Signals) -> None:
    returncode, records = signalled_json("PowerFlow", signum)
    assert returncode == ExitCode.INTERRUPTED
    events = [r["event"] for r in records]
    assert "ContactorsOpened" in events[events.index("PowerFlow"):]  # the station came down through the interlock
    ended = [r for r in records if r["event"] == "SessionEnded"]
    assert {r["role"] for r in ended} == {"EVCC", "SECC"}
    assert all(r["reason"] == "SessionStop Terminate" for r in ended)
    summary = records[-1]
    assert summary["event"] == "SessionSummary"
    assert summary["interrupted"] == signum.name and summary["ok"] is False


def test_a_second_signal_does_not_wait_for_the_session_to_end() -> None:
    """Before the loop (real time) the SECC cannot notify the EV yet: a second signal ends the command
    at once, with 130 and one line."""
    returncode, records = signalled_json("MessageSent", signal.SIGTERM, signal.SIGINT, speed="1")
    assert returncode == ExitCode.INTERRUPTED
    assert "SessionSummary" not in [r["event"] for r in records]


def test_the_panel_and_the_summary_after_sigint(tmp_path: Path) -> None:
    """People's output: the last panel shows the end, and the summary line says what ended it. The
    trace, a FIFO, says when the session runs: its first frame follows the pcap header."""
    fifo = tmp_path / "trace.pcap"
    os.mkfifo(fifo)
    run = subprocess.Popen([*V2GTOOL, *long_session(), "--trace", str(fifo)], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        with fifo.open("rb") as trace:
            trace.read(24 + 16)  # the pcap header and the first frame's record header
            run.send_signal(signal.SIGINT)
            trace.read()  # the rest, until the session closes it: the writer must not block
        out, err = run.communicate(timeout=60)
    finally:
        run.kill()
        run.wait()
    assert run.returncode == ExitCode.INTERRUPTED and err.splitlines()[-1] == "v2gtool: aborted", err
    assert panel_row(out, "phase") == "ended" and panel_row(out, "current").startswith("+0.0 A")
    assert "\ninterrupted (SIGINT): SessionStop Terminate; " in out


def panel_row(stdout: str, name: str) -> str:
    """The value of the last panel's row *name* (people's output, not a terminal: the final panel)."""
    rows = [line for line in stdout.splitlines() if line.startswith(f"│ {name} ")]
    return rows[-1].split("│")[2].strip()


def test_the_panel_shows_no_current_once_the_session_ended() -> None:
    proc = subprocess.run([*V2GTOOL, "session", "run", "--sim", "--no-trace", "--duration", "3"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert panel_row(proc.stdout, "phase") == "ended"
    assert panel_row(proc.stdout, "current").startswith("+0.0 A")
    assert panel_row(proc.stdout, "power") == "+0.00 kW"
    assert float(panel_row(proc.stdout, "voltage").removesuffix(" V")) < 60  # welding detection's, bled down


def test_sigterm_under_systemd_leaves_the_end_in_the_journal(tmp_path: Path) -> None:
    """Under systemd (``$JOURNAL_STREAM`` naming its stderr) the events go to the journal: SIGTERM, as
    ``systemctl stop`` sends it, still leaves both SessionEnded records there, and exits 130."""
    path = tmp_path / "journal.socket"
    journald = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    journald.bind(str(path))
    journald.settimeout(0.05)
    stderr = (tmp_path / "stderr").open("w")
    status = os.fstat(stderr.fileno())
    # The journal's socket is a module constant: the child sets it to ours, then runs the command.
    child = ("import sys; from pathlib import Path; from v2gtool.session import journal; "
             "journal.JOURNAL_SOCKET = Path(sys.argv[1]); from v2gtool.cli.main import main; main(sys.argv[2:])")
    run = subprocess.Popen([sys.executable, "-c", child, str(path), *long_session(), "--no-trace"],
                           stdout=subprocess.DEVNULL, stderr=stderr,
                           env={**os.environ, "JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"})
    records: list[dict[str, str]] = []
    signalled = False
    try:
        while run.poll() is None:
            if (received := receive(journald)) is not None:
                records.append(received)
                if received["V2G_EVENT"] == "PowerFlow" and not signalled:  # in the loop
                    run.send_signal(signal.SIGTERM)
                    signalled = True
        run.wait(timeout=60)
        while (received := receive(journald)) is not None:  # what it sent before it exited
            records.append(received)
    finally:
        run.kill()
        run.wait()
        journald.close()
        stderr.close()
    assert run.returncode == ExitCode.INTERRUPTED
    ended = [r for r in records if r["V2G_EVENT"] == "SessionEnded"]
    assert {r["V2G_ROLE"] for r in ended} == {"EVCC", "SECC"}
    assert all(r["V2G_REASON"] == "SessionStop Terminate" for r in ended)


def receive(journald: socket.socket) -> dict[str, str] | None:
    """The next record on *journald*; None when none came within its timeout."""
    try:
        return dict(parse_datagram(journald.recv(65536)))
    except TimeoutError:
        return None
