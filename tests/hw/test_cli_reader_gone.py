"""The hardware commands when the reader of their output leaves early (``| head -1``): the closed
pipe is no hardware error. The command runs to its end, its safety path untouched (the contactors
open, a fault's stop action runs), and exits with its own status, without warnings."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from v2gtool.exit_codes import ExitCode


def first_line_only(*args: str) -> tuple[int, str]:
    """Run ``v2gtool *args``, read its first line of output and close the pipe, as ``| head -1``
    does; its exit status and stderr."""
    process = subprocess.Popen([sys.executable, "-m", "v2gtool", *args], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stderr is not None
    assert process.stdout.readline()
    process.stdout.close()
    stderr = process.stderr.read()
    return process.wait(timeout=120), stderr


@pytest.mark.parametrize("output", [["--json"], []])
def test_an_isolation_fault_is_still_found_and_acted_on(tmp_path: Path, output: list[str]) -> None:
    marker, scenario = tmp_path / "stopped", tmp_path / "low.toml"
    scenario.write_text('[plant]\ninsulation_ohm = 60e3\n[[at]]\nt = 0\ncp = "C"\n')
    status, stderr = first_line_only(*output, "isolation-check", "--scenario", str(scenario), "--samples", "2",
                                     "--on-fault-exec", f"{sys.executable} -c \"open('{marker}', 'w')\"")
    assert status == 6  # isolation-check's isolation fault
    assert stderr == "v2gtool: error: isolation fault: 59.9 kOhm < 100.0 kOhm\n"
    assert marker.exists()  # the stop action ran


@pytest.mark.parametrize("output", [["--json"], []])
def test_a_hold_is_still_supervised_by_the_interlock(tmp_path: Path, output: list[str]) -> None:
    """The vehicle leaves CP state C during the hold: the interlock opens the contactors, exit 5."""
    scenario = tmp_path / "unplug.toml"
    scenario.write_text('[[at]]\nt = 0\ncp = "C"\n[[at]]\nt = 16.8\ncp = "B"\n')
    status, stderr = first_line_only(*output, "contactor", "close", "--scenario", str(scenario), "--hold", "2")
    assert status == 5  # contactor's "the interlock opened the contactors during the run"
    assert stderr == "v2gtool: error: contactors opened during the hold: CP_NOT_C_OR_D\n"


@pytest.mark.parametrize("output", [["--json"], []])
def test_a_hold_runs_to_its_end_without_warnings(output: list[str]) -> None:
    status, stderr = first_line_only(*output, "contactor", "close", "--current", "100", "--hold", "3")
    assert (status, stderr) == (ExitCode.OK, "")
