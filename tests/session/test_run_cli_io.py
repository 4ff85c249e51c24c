"""``session run --sim`` at the ends of a pipeline: its trace on stdout (``--trace -``, or ``[session]
trace = "-"``) and Ctrl-C in the charge loop."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.session.trace_pipe import trace_through_pcap_decode
from v2gtool.exit_codes import ExitCode

V2GTOOL = [sys.executable, "-m", "v2gtool"]


def stdout_trace(how: str, tmp_path: Path) -> tuple[list[str], list[str], Path]:
    """The trace to stdout, *how*: by the option (``--trace -``) or by the configuration (``[session]
    trace = "-"``, in a file outside the directory returned to run in, which starts empty): the
    global options, the ``session run`` options and that directory."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    if how == "option":
        return [], ["--trace", "-"], cwd
    config = tmp_path / "v2gtool.toml"
    config.write_text('[session]\ntrace = "-"\n')
    return ["--config", str(config)], [], cwd


@pytest.mark.parametrize("how", ["option", "config"])
def test_trace_to_stdout_pipes_into_pcap_decode(how: str, tmp_path: Path) -> None:
    """``--trace -`` is stdout, tcpdump style, and so is ``[session] trace = "-"``: ``pcap-decode -``
    reads the whole session from the pipe, people's output goes to stderr, and no file named ``-``
    appears."""
    global_options, options, cwd = stdout_trace(how, tmp_path)
    records, run_err = trace_through_pcap_decode(
        [*global_options, "session", "run", "--sim", "--duration", "2", *options], cwd, 120
    )
    messages = [r["message"] for r in records if r["event"] == "V2GMessage"]
    assert messages[0] == "supportedAppProtocolReq" and messages[-1] == "SessionStopRes"
    assert "completed: SessionStop Terminate" in run_err


@pytest.mark.parametrize(("how", "setting"), [("option", "--trace -"), ("config", '[session] trace = "-"')])
def test_trace_to_stdout_and_json_lines_are_a_usage_error(how: str, setting: str, tmp_path: Path) -> None:
    global_options, options, cwd = stdout_trace(how, tmp_path)
    proc = subprocess.run([*V2GTOOL, *global_options, "--json", "session", "run", "--sim", *options],
                          capture_output=True, text=True, timeout=60, cwd=cwd)
    assert proc.returncode == ExitCode.USAGE
    assert f"{setting} writes the pcap to stdout, where --json writes its lines" in proc.stderr
    assert proc.stdout == "" and list(cwd.iterdir()) == []


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
