"""``session run``'s inputs, checked before anything starts: a bad one leaves the last trace as it was,
options that contradict each other or that the chosen way of running does not use are usage errors,
and the station runs with the machine's ``[hw]`` settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from v2gtool.cli.main import cli
from v2gtool.cli.realtime import check_options
from v2gtool.exit_codes import ExitCode
from v2gtool.net.netns import NetnsError
from v2gtool.realtime import RealtimeError

V2GTOOL = [sys.executable, "-m", "v2gtool"]
LAST_TRACE = b"the last session's trace"


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*V2GTOOL, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def last_trace(tmp_path: Path) -> Path:
    trace = tmp_path / "last.pcap"
    trace.write_bytes(LAST_TRACE)
    return trace


def test_a_missing_interface_keeps_the_last_trace(tmp_path: Path) -> None:
    """--role: the interface is checked before the trace is opened (it was wiped to a bare pcap header)."""
    trace = last_trace(tmp_path)
    proc = run("session", "run", "--role", "evse", "--iface", "nosuch0", "--no-tls", "--trace", str(trace))
    assert proc.returncode == ExitCode.ENVIRONMENT
    assert proc.stderr == "v2gtool: error: network interface 'nosuch0' does not exist\n"
    assert trace.read_bytes() == LAST_TRACE


def a_cpu_not_ours() -> int:
    """A CPU this process may not run on: past the last one it may (none, or outside its cpuset)."""
    return max(os.sched_getaffinity(0)) + 1


@pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
def test_netns_checks_cpu_before_the_trace_and_says_so_once(tmp_path: Path) -> None:
    """--cpu is applied by the two children; the parent checks it first: one error line, exit 4, the
    last trace kept, no namespaces or children started."""
    trace = last_trace(tmp_path)
    cpu = a_cpu_not_ours()
    proc = run("session", "run", "--netns", "--no-tls", "--cpu", str(cpu), "--trace", str(trace))
    assert proc.returncode == ExitCode.ENVIRONMENT
    assert len(proc.stderr.splitlines()) == 1 and proc.stderr.startswith(f"v2gtool: error: --cpu {cpu}: ")
    assert trace.read_bytes() == LAST_TRACE


def test_netns_without_root_keeps_the_last_trace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    trace = last_trace(tmp_path)
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    result = CliRunner().invoke(cli, ["session", "run", "--netns", "--no-tls", "--trace", str(trace)])
    assert isinstance(result.exception, NetnsError) and result.exception.exit_code == ExitCode.ENVIRONMENT
    assert trace.read_bytes() == LAST_TRACE


def test_the_realtime_check_leaves_this_threads_scheduling_alone() -> None:
    """:func:`check_options` tries --cpu on a thread of its own: a CPU we may use passes and this
    thread stays where it was; one we may not is the error apply_options would raise."""
    before = os.sched_getaffinity(0)
    check_options(None, min(before))
    assert os.sched_getaffinity(0) == before
    with pytest.raises(RealtimeError, match=rf"^--cpu {a_cpu_not_ours()}: "):
        check_options(None, a_cpu_not_ours())


@pytest.mark.parametrize(("options", "message"), [
    (["--sim", "--netns", "--speed", "50"], "--sim and --netns contradict each other"),
    (["--sim", "--role", "ev"], "--sim and --role ev contradict each other"),
    (["--netns", "--role", "evse"], "--netns and --role evse contradict each other"),
    (["--sim", "--netns", "--role", "ev"], "--sim, --netns and --role ev contradict each other"),
    (["--sim", "--iface", "eth0"], "--iface: --sim runs both roles on a simulated cable"),
    (["--sim", "--modem", "hw"], "--modem: --sim runs SLAC on a simulated cable"),
    (["--sim", "--certs-dir", "/nonexistent"], "--certs-dir: --sim runs the session over plain TCP"),
    (["--sim", "--trust-dir", "/nonexistent"], "--trust-dir: --sim runs the session over plain TCP"),
    (["--netns", "--iface", "eth0"], "--iface: --netns runs on a veth pair of its own"),
    (["--netns", "--modem", "hw"], "--modem: --netns runs SLAC on its veth pair"),
])
def test_options_the_way_of_running_does_not_use_are_usage_errors(
        options: list[str], message: str, tmp_path: Path) -> None:
    proc = run("session", "run", *options, "--trace", "t.pcap", cwd=tmp_path)
    assert proc.returncode == ExitCode.USAGE, proc.stderr
    assert f"Error: {message}" in proc.stderr and "Traceback" not in proc.stderr
    assert list(tmp_path.iterdir()) == []  # nothing ran, no trace written


def cable_check_failure(config: Path, scenario: Path) -> str:
    """The one-line error of a --sim session that fails its cable check."""
    proc = run("--config", str(config), "--json", "session", "run", "--sim", "--no-trace", "--scenario", str(scenario))
    assert proc.returncode == ExitCode.SAFETY, proc.stderr
    return proc.stderr


@pytest.mark.parametrize(("hw", "threshold"), [
    ("rated_voltage_v = 500\n", "50 kΩ"),  # IEC 61851-23:2014: 100 Ω/V of the configured rated voltage
    ("", "92 kΩ"),  # not configured: of the scenario charger's maximum, 920 V
])
def test_the_isolation_thresholds_follow_the_configured_rated_voltage(hw: str, threshold: str, tmp_path: Path) -> None:
    config = tmp_path / "v2gtool.toml"
    config.write_text(f"[hw]\nisolation_edition = 2014\n{hw}")
    scenario = tmp_path / "insulation.toml"
    scenario.write_text("[plant]\ninsulation_ohm = 45000\n")
    assert f"below the {threshold} fault threshold" in cable_check_failure(config, scenario)


def test_an_unknown_backend_is_refused_as_the_hardware_commands_refuse_it(tmp_path: Path) -> None:
    config = tmp_path / "v2gtool.toml"
    config.write_text('[hw]\nbackend = "bogus"\n')
    session = run("--config", str(config), "session", "run", "--sim", "--no-trace")
    contactor = run("--config", str(config), "contactor", "status")
    assert session.returncode == contactor.returncode == ExitCode.USAGE
    assert session.stderr == contactor.stderr
    assert "[hw] backend must be one of sim, serial, gpiod, got 'bogus'" in session.stderr


def test_without_a_vehicle_the_summary_reports_the_battery_as_it_stayed(tmp_path: Path) -> None:
    """No session started: the summary gives the plant's SoC, unchanged, not a false 0 %."""
    scenario = tmp_path / "nocar.toml"
    scenario.write_text('[plant]\nsoc = 0.635\n\n[[at]]\nt = 0\ncp = "A"\n')
    proc = run("--json", "session", "run", "--sim", "--no-trace", "--scenario", str(scenario))
    assert proc.returncode == ExitCode.FAILURE
    summary = json.loads(proc.stdout.splitlines()[-1])
    assert summary["event"] == "SessionSummary" and summary["soc_start"] == summary["soc_end"] == 63.5
    human = run("session", "run", "--sim", "--no-trace", "--scenario", str(scenario))
    assert "SoC 63.50 % -> 63.50 %" in human.stdout
