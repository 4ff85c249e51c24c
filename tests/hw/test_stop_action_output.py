"""What a ``[hw] on_fault_exec`` stop action prints goes to stderr: stdout stays the command's own
``--json`` lines, so a pipeline reading them never meets a line of the stop action's."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from v2gtool.exit_codes import ExitCode

SAID = "stop-action-says-hello"


@pytest.mark.parametrize(("command", "status"), [
    (["contactor", "status", "--session", "10"], ExitCode.OK),
    (["session", "run", "--sim", "--no-trace"], ExitCode.SAFETY),
])
def test_a_stop_action_that_prints_leaves_json_stdout_to_json_lines(
    tmp_path: Path, command: list[str], status: ExitCode
) -> None:
    """The insulation drops at t = 20 s: the interlock trips and runs the stop action, which echoes."""
    config, scenario = tmp_path / "v2gtool.toml", tmp_path / "drop.toml"
    config.write_text(f"[hw]\non_fault_exec = {json.dumps(f'echo {SAID}')}\n")  # a TOML basic string
    scenario.write_text('[[at]]\nt = 0\ncp = "C"\n[[at]]\nt = 20\ninsulation_ohm = 50e3\n')
    proc = subprocess.run([sys.executable, "-m", "v2gtool", "--json", "--config", str(config), *command,
                           "--scenario", str(scenario)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == status, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines and all(isinstance(json.loads(line), dict) for line in lines)
    assert SAID in proc.stderr.splitlines()
