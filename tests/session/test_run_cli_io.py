"""``session run --sim`` at the ends of a pipeline: its trace on stdout (``--trace -``) and Ctrl-C
in the charge loop."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

from v2gtool.exit_codes import ExitCode

V2GTOOL = [sys.executable, "-m", "v2gtool"]


def test_trace_to_stdout_pipes_into_pcap_decode(tmp_path: Path) -> None:
    """``--trace -`` is stdout, tcpdump style: ``pcap-decode -`` reads the whole session from the
    pipe, people's output goes to stderr, and no file named ``-`` appears."""
    run = subprocess.Popen([*V2GTOOL, "session", "run", "--sim", "--duration", "2", "--trace", "-"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=tmp_path)
    decode = subprocess.run([*V2GTOOL, "--json", "pcap-decode", "-"], stdin=run.stdout, capture_output=True,
                            text=True, timeout=120)
    assert run.stdout is not None and run.stderr is not None
    run.stdout.close()
    run_err = run.stderr.read().decode()
    assert run.wait(timeout=60) == 0, run_err
    assert decode.returncode == 0, decode.stderr
    records = [json.loads(line) for line in decode.stdout.splitlines()]
    messages = [r["message"] for r in records if r["event"] == "V2GMessage"]
    assert messages[0] == "supportedAppProtocolReq" and messages[-1] == "SessionStopRes"
    assert "completed: SessionStop Terminate" in run_err
    assert list(tmp_path.iterdir()) == []


def test_trace_to_stdout_and_json_lines_are_a_usage_error(tmp_path: Path) -> None:
    proc = subprocess.run([*V2GTOOL, "--json", "session", "run", "--sim", "--trace", "-"], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path)
    assert proc.returncode == ExitCode.USAGE
    assert "--trace - writes the pcap to stdout, where --json writes its lines" in proc.stderr
    assert proc.stdout == "" and list(tmp_path.iterdir()) == []


def test_ctrl_c_in_the_charge_loop_only_says_aborted() -> None:
    """SIGINT while the loop runs (an hour of it, 20 times real time): exit 130 and one line, none of
    the tracebacks of the connection tasks asyncio cancels on the way out."""
    run = subprocess.Popen([*V2GTOOL, "--json", "session", "run", "--sim", "--no-trace", "--duration", "3600",
                            "--speed", "20"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert run.stdout is not None
        for line in run.stdout:  # the loop runs
            if json.loads(line)["event"] == "PowerFlow":
                break
        run.send_signal(signal.SIGINT)
        _out, err = run.communicate(timeout=60)
    finally:
        run.kill()
        run.wait()
    assert run.returncode == ExitCode.INTERRUPTED, err
    assert err.strip() == "v2gtool: aborted"
