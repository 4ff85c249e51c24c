"""The hardware commands end to end on the sim backend: output, JSON lines and documented exit codes."""

from __future__ import annotations

import importlib.util
import json
import math
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import click
import pytest

from v2gtool.cli.contactor import open_ as contactor_open
from v2gtool.cli.main import main
from v2gtool.hw.errors import HardwareError
from v2gtool.hw.sim import SimIsolationMonitor, SimPowerModule

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "v2gtool", *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )


def lines(result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


def result_of(result: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    return next(r for r in lines(result) if "result" in r)


def one_line_error(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert result.returncode == code, result.stderr
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr


def scenario(tmp_path: Path, text: str) -> str:
    path = tmp_path / "scenario.toml"
    path.write_text(text)
    return str(path)


def test_cp_duty_set_5_percent_is_digital_communication() -> None:
    out = result_of(run("cp-duty", "set", "5", "--json"))
    assert out["meaning"] == "DIGITAL_COMMUNICATION" and out["state"] == "C" and out["diode_ok"]
    assert out["low_v"] == -12.0 and out["high_v"] == 6.0


def test_cp_duty_current_maps_both_ways() -> None:
    out = result_of(run("--json", "cp-duty", "current", "32"))
    assert out["duty_percent"] == pytest.approx(53.333, abs=0.001) and out["current_a"] == pytest.approx(32.0)
    dry = result_of(run("cp-duty", "current", "52", "--no-apply", "--json"))
    assert dry["duty_percent"] == 85.0 and dry["current_a"] == pytest.approx(51.0)
    one_line_error(run("cp-duty", "current", "90"), 2, "90.0 A has no duty cycle")


def test_cp_duty_watch_prints_transitions_with_simulated_timestamps(tmp_path: Path) -> None:
    path = scenario(tmp_path, '[[at]]\nt = 0\ncp = "B"\n[[at]]\nt = 1.5\ncp = "C"\n[[at]]\nt = 4\ncp = "A"\n')
    events = lines(run("cp-duty", "watch", "--scenario", path, "--duty", "5", "--json"))
    assert [(e["state"], round(e["t"], 2)) for e in events] == [("B", 0.0), ("C", 1.5), ("A", 4.0)]


def test_cp_duty_read_at_a_time_in_the_scenario(tmp_path: Path) -> None:
    path = scenario(tmp_path, '[[at]]\nt = 0\ncp = "C"\n[[at]]\nt = 2\ncp = "E"\n')
    assert result_of(run("cp-duty", "read", "--scenario", path, "--at", "1", "--json"))["state"] == "C"
    assert result_of(run("cp-duty", "read", "--scenario", path, "--at", "3", "--json"))["state"] == "E"


def test_contactor_close_runs_the_whole_sequence() -> None:
    result = run("contactor", "close", "--hold", "0.5", "--json")
    assert result.returncode == 0, result.stderr
    names = [e.get("event") for e in lines(result)]
    assert (
        names.index("ContactorsClosed")
        < names.index("EnergyTransferEnabled")
        < names.index("ContactorsOpened")
    )


@pytest.mark.parametrize(
    ("text", "condition"),
    [
        ('[[at]]\nt = 0\ncp = "B"\n', "CP_NOT_C_OR_D"),
        ('[[at]]\nt = 0\ncp = "C"\nestop = true\n', "EMERGENCY_STOP"),
    ],
)
def test_contactor_close_refusal_names_the_rule(tmp_path: Path, text: str, condition: str) -> None:
    one_line_error(run("contactor", "close", "--scenario", scenario(tmp_path, text)), 3, condition)


def test_contactor_close_reports_a_trip_during_the_hold(tmp_path: Path) -> None:
    path = scenario(tmp_path, '[[at]]\nt = 0\ncp = "C"\n[[at]]\nt = 16.8\ncp = "B"\n')
    result = run("contactor", "close", "--scenario", path, "--hold", "2", "--json")
    one_line_error(result, 5, "CP_NOT_C_OR_D")
    opened = next(e for e in lines(result) if e.get("event") == "ContactorsOpened")
    assert opened["since_trip_s"] <= 0.1


def test_contactor_open_times_the_release() -> None:
    out = result_of(run("contactor", "open", "--json"))
    assert out["opened"] and not out["forced"] and abs(out["current_at_release_a"]) <= 1.0
    assert out["open_after_s"] <= 0.1


def test_contactor_open_runs_the_session_its_help_shows() -> None:
    """--session defaults to 1 s, as --help shows; --session 0 runs none (nothing to open on a fresh sim)."""
    (session,) = [p for p in contactor_open.params if p.name == "session_s"]
    assert isinstance(session, click.Option) and session.default == 1.0 and session.show_default
    none = run("contactor", "open", "--session", "0", "--json")
    assert [e.get("event") for e in lines(none)] == ["CpStateChanged", None]
    assert result_of(none) == {"result": "contactor-open", "opened": True}


def test_weld_is_found_and_latched(tmp_path: Path) -> None:
    path = scenario(tmp_path, '[[at]]\nt = 0\ncp = "C"\n[[at]]\nt = 16.2\nfault = "weld"\npoles = ["K1"]\n')
    one_line_error(run("contactor", "open", "--scenario", path), 4, "Contactor Stuck on K1")
    check = run("contactor", "weld-check", "--scenario", path, "--session", "1", "--json")
    one_line_error(check, 4, "welded K1")
    assert result_of(check)["feedback_closed"] == ["K1"]
    status = run("contactor", "status", "--scenario", path, "--session", "1", "--json")
    assert status.returncode == 4 and result_of(status)["stuck"] == "K1"
    assert "CONTACTOR_STUCK" in result_of(status)["close_blocked_by"]


def test_weld_check_voltage_test_finds_both_poles_welded(tmp_path: Path) -> None:
    path = scenario(tmp_path, '[[at]]\nt = 0\ncp = "C"\n[[at]]\nt = 16.2\nfault = "weld"\n')
    check = run("contactor", "weld-check", "--scenario", path, "--session", "1", "--json")
    assert check.returncode == 4
    out = result_of(check)
    assert out["cable_v"] > 0.5 * out["test_voltage_v"]


def test_weld_check_passes_on_healthy_contactors() -> None:
    out = result_of(run("contactor", "weld-check", "--session", "1", "--json"))
    assert not out["welded"] and out["cable_v"] < 5.0 and out["link_v"] >= 45.0


def test_reset_needs_the_fault_gone(tmp_path: Path) -> None:
    mismatch = '[[at]]\nt = 0\ncp = "C"\nfault = "feedback_mismatch"\npoles = ["K2"]\n'
    one_line_error(
        run("contactor", "reset", "--scenario", scenario(tmp_path, mismatch), "--at", "1"), 4, "K2 closed"
    )
    repaired = run(
        "contactor",
        "reset",
        "--scenario",
        scenario(tmp_path, mismatch + '[[at]]\nt = 1\nclear = "all"\n'),
        "--at",
        "2",
        "--json",
    )
    assert repaired.returncode == 0 and result_of(repaired)["was_latched"]


def test_isolation_check_pass_warning_and_fault(tmp_path: Path) -> None:
    ok = run("isolation-check", "--json", "--samples", "3")
    assert ok.returncode == 0 and result_of(ok)["verdict"] == "pass"
    trace = result_of(ok)["trace"]
    assert [p for p in dict.fromkeys(r["phase"] for r in trace)] == [
        "close",
        "self-test",
        "ramp-up",
        "settle",
        "sample",
        "ramp-down",
    ]
    assert trace[-1]["voltage_v"] < 60.0 and max(r["voltage_v"] for r in trace) == pytest.approx(500.0, abs=1)
    low = scenario(tmp_path, '[plant]\ninsulation_ohm = 300e3\n[[at]]\nt = 0\ncp = "C"\n')
    assert run("isolation-check", "--scenario", low, "--edition", "2014", "--samples", "2").returncode == 7
    assert run("isolation-check", "--scenario", low, "--edition", "2023", "--samples", "2").returncode == 0
    marker = tmp_path / "stopped"
    bad = scenario(tmp_path, '[plant]\ninsulation_ohm = 60e3\n[[at]]\nt = 0\ncp = "C"\n')
    fault = run(
        "isolation-check",
        "--scenario",
        bad,
        "--samples",
        "2",
        "--json",
        "--on-fault-exec",
        f"{sys.executable} -c \"open('{marker}', 'w')\"",
    )
    one_line_error(fault, 6, "isolation fault")
    stop = next(e for e in lines(fault) if e.get("event") == "StopActionRun")
    assert stop["returncode"] == 0 and marker.exists()


def test_isolation_check_self_test_failure(tmp_path: Path) -> None:
    path = scenario(tmp_path, '[[at]]\nt = 0\ncp = "C"\nfault = "imd_self_test"\n')
    result = run("isolation-check", "--scenario", path)
    one_line_error(result, 6, "IMD self-test failed")
    assert "no verdict: IMD self-test failed" in result.stdout  # people see the outcome under the trace


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is not None, reason="matplotlib is installed")
def test_plot_without_matplotlib_is_a_one_line_error(tmp_path: Path) -> None:
    one_line_error(run("isolation-check", "--plot", str(tmp_path / "t.png")), 2, "--plot needs matplotlib")


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="matplotlib is not installed")
def test_plot_writes_a_png(tmp_path: Path) -> None:
    target = tmp_path / "t.png"
    assert run("isolation-check", "--samples", "2", "--plot", str(target)).returncode == 0
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_scenario_is_one_line(tmp_path: Path) -> None:
    path = scenario(tmp_path, "[[at]]\nt = 0\ncp = 'Q'\n")
    one_line_error(run("contactor", "status", "--scenario", path), 2, "cp must be one of")


def test_help_documents_exit_codes_and_the_sim_sequence() -> None:
    text = run("contactor", "close", "--help").stdout
    assert "Exit codes" in text and "3  refused by the interlock" in text and "self-contained" in text


def test_contactor_close_reports_the_current_actually_carried() -> None:
    """Asked for 500 A, the module carries its rated 300 A: that is what the command reports."""
    out = result_of(run("contactor", "close", "--current", "500", "--hold", "2", "--json"))
    assert out["requested_a"] == 500.0
    assert out["current_a"] == pytest.approx(300.0, abs=0.5)
    assert out["current_min_a"] == pytest.approx(300.0, abs=0.5) and out["current_max_a"] <= 300.5


@pytest.mark.parametrize(
    "args",
    [
        ("cp-duty", "read", "--at", "1e9"),
        ("contactor", "close", "--hold", "1e9"),
        ("contactor", "status", "--at", "86401"),
        ("isolation-check", "--at", "1e9"),
    ],
)
def test_times_beyond_what_the_sim_can_run_are_usage_errors(args: tuple[str, ...]) -> None:
    result = run(*args)
    assert result.returncode == 2 and "3600" in result.stderr and "Traceback" not in result.stderr


def test_a_scenario_without_a_cp_step_has_the_vehicle_in_state_c(tmp_path: Path) -> None:
    """As the help says (and as `session run` does): no CP step means a vehicle plugged in and ready."""
    path = scenario(tmp_path, "[plant]\nambient_c = 30\n")
    result = run("contactor", "close", "--hold", "0.5", "--scenario", path, "--json")
    assert result.returncode == 0, result.stderr
    assert result_of(result)["current_a"] == pytest.approx(100.0, abs=0.5)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_hold_opens_the_contactors_through_the_interlock(signum: int) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "v2gtool", "contactor", "close", "--hold", "3600", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    names: list[str] = []
    for line in proc.stdout:  # the coils are energised and current flows: signal now
        names.append(json.loads(line).get("event"))
        if names[-1] == "EnergyTransferEnabled":
            proc.send_signal(signum)
            break
    rest, err = proc.communicate(timeout=60)
    after = [json.loads(line) for line in rest.splitlines()]
    assert proc.returncode == 130, err
    assert [e.get("event") for e in after[-3:]] == ["InterlockTripped", "ContactorsOpening", "ContactorsOpened"]
    assert after[-3]["condition"] == "SESSION_STOP" and after[-2]["current_a"] == 0.0
    assert err == "v2gtool: aborted\n"


def _signal_on(
    args: list[str], event: dict[str, Any], signum: int
) -> tuple[subprocess.Popen[str], list[dict[str, Any]], str]:
    """Run ``v2gtool *args``, send *signum* once it reports an event with the items of *event*; the
    lines after, and stderr."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "v2gtool", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    for line in proc.stdout:
        if json.loads(line).items() >= event.items():
            proc.send_signal(signum)
            break
    rest, err = proc.communicate(timeout=60)
    return proc, [json.loads(line) for line in rest.splitlines()], err


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_the_cable_check_ramps_down_then_opens_through_the_interlock(
    tmp_path: Path, signum: int
) -> None:
    """Mid-sampling, with the Formula CC.1 test voltage on the output: the check stops, the output ramps
    below 60 V (standards.md 7.1), the contactors open at zero current, then exit 130."""
    # CP C -> D at t = 8 s (power may still flow): an event in the middle of the samples to signal on.
    path = scenario(tmp_path, '[[at]]\nt = 0\ncp = "C"\n[[at]]\nt = 8\ncp = "D"\n')
    proc, after, err = _signal_on(
        ["isolation-check", "--scenario", path, "--samples", "100000", "--json"],
        {"event": "CpStateChanged", "state": "D"},
        signum,
    )
    assert proc.returncode == 130, err
    assert err == "v2gtool: aborted\n"
    tripped, opening, opened, record = after[-4:]
    assert [tripped.get("event"), opening.get("event"), opened.get("event")] == [
        "InterlockTripped",
        "ContactorsOpening",
        "ContactorsOpened",
    ]
    assert tripped["condition"] == "SESSION_STOP" and opening["current_a"] == 0.0 and not opening["forced"]
    assert record["result"] == "isolation-check" and record["failure"] == "interrupted"
    trace = record["trace"]
    assert max(r["voltage_v"] for r in trace if r["phase"] == "sample") == pytest.approx(500.0, abs=1)
    # The ramp down ended below 60 V before the contactors were asked to open.
    assert trace[-1]["phase"] == "ramp-down" and trace[-1]["voltage_v"] < 60.0
    assert trace[-1]["t"] <= tripped["t"] + 1e-3  # the trace rounds to 0.1 ms


def test_a_signal_during_the_cable_check_of_a_close_goes_no_further(tmp_path: Path) -> None:
    """contactor close: a signal while the power-up's cable check runs ends it there (ramp down,
    open); no precharge and no energy transfer follow."""
    path = scenario(tmp_path, '[[at]]\nt = 0\ncp = "C"\n[[at]]\nt = 8\ncp = "D"\n')
    proc, after, err = _signal_on(
        ["contactor", "close", "--scenario", path, "--hold", "3600", "--json"],
        {"event": "CpStateChanged", "state": "D"},
        signal.SIGINT,
    )
    assert proc.returncode == 130, err
    names = [e.get("event") for e in after]
    assert "EnergyTransferEnabled" not in names and "PrechargeStarted" not in names, names
    assert names[-3:] == ["InterlockTripped", "ContactorsOpening", "ContactorsOpened"]
    assert after[-2]["current_a"] == 0.0


@pytest.mark.parametrize("command", ["open", "reset"])
def test_a_signal_during_a_sim_session_opens_the_contactors_then_exits_130(command: str) -> None:
    proc, after, err = _signal_on(
        ["contactor", command, "--session", "3600", "--json"], {"event": "EnergyTransferEnabled"}, signal.SIGTERM
    )
    assert proc.returncode == 130, err
    assert [e.get("event") for e in after] == ["InterlockTripped", "ContactorsOpening", "ContactorsOpened"]
    assert after[0]["condition"] == "SESSION_STOP" and abs(after[1]["current_a"]) <= 1.0


@pytest.mark.parametrize("command", ["status", "weld-check"])
def test_sigterm_during_a_sim_session_of_status_or_weld_check_exits_130(command: str) -> None:
    """These render no events: SIGTERM is held off (not the default kill), the session ends, exit 130."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "v2gtool", "contactor", command, "--session", "3600", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    time.sleep(1.0)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err == "v2gtool: aborted\n"
    assert out == ""  # aborted instead of going on to the status / the weld check


def _main(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[dict[str, Any]], str]:
    """``v2gtool *args`` in this process (so a sim part can be made to fail): exit code, lines, stderr."""
    with pytest.raises(SystemExit) as exited:
        main(args)
    out, err = capsys.readouterr()
    code = exited.value.code
    assert isinstance(code, int)
    return code, [json.loads(line) for line in out.splitlines()], err


def test_a_hardware_error_during_the_cable_check_opens_the_contactors_first(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def imd_gone(self: SimIsolationMonitor) -> float | None:
        if self._plant.measure().cable_v > 400.0:  # the test voltage is on
            raise HardwareError("IMD: no answer")
        return 5e6

    monkeypatch.setattr(SimIsolationMonitor, "resistance_ohm", imd_gone)
    code, events, err = _main(["isolation-check", "--json"], capsys)
    assert code == 1 and err == "v2gtool: error: IMD: no answer\n"
    assert [e.get("event") for e in events[-3:]] == ["InterlockTripped", "ContactorsOpening", "ContactorsOpened"]
    assert events[-3]["condition"] == "SESSION_STOP" and not events[-2]["forced"]


def test_a_hardware_error_during_the_hold_opens_the_contactors_first(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    regulate_current = SimPowerModule.regulate_current

    def module_fault(self: SimPowerModule, amps: float, max_voltage: float = math.inf) -> None:
        if self.measure().current_a > 50.0:  # carrying current in the hold
            raise HardwareError("power module: CAN timeout")
        regulate_current(self, amps, max_voltage)

    monkeypatch.setattr(SimPowerModule, "regulate_current", module_fault)
    code, events, err = _main(["contactor", "close", "--hold", "5", "--json"], capsys)
    assert code == 1 and err == "v2gtool: error: power module: CAN timeout\n"
    assert [e.get("event") for e in events[-3:]] == ["InterlockTripped", "ContactorsOpening", "ContactorsOpened"]
    assert events[-3]["condition"] == "SESSION_STOP"
    assert abs(events[-2]["current_a"]) <= 1.0 and not events[-2]["forced"]
