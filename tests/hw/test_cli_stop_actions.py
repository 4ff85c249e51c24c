"""The ``[hw] on_fault_exec`` stop action of a hardware command: waited for (and reported) before the
command exits, whichever command it is and however it ends."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("command", ["open", "status", "weld-check", "reset"])
def test_the_stop_action_of_an_isolation_fault_ends_before_the_command(tmp_path: Path, command: str) -> None:
    """The insulation drops during the simulated session: the interlock trips and starts the stop
    action, which takes a while; the command's end waits for it (Station.close)."""
    marker, config, scenario = tmp_path / "stopped", tmp_path / "v2gtool.toml", tmp_path / "drop.toml"
    action = f"{sys.executable} -c \"import time; time.sleep(1); open('{marker}', 'w')\""
    config.write_text(f"[hw]\non_fault_exec = {json.dumps(action)}\n")  # a TOML basic string
    scenario.write_text('[[at]]\nt = 0\ncp = "C"\n[[at]]\nt = 20\ninsulation_ohm = 50e3\n')
    errors = tmp_path / "stderr"
    with errors.open("w") as stderr:  # not a pipe: the stop action would hold it open, and run() wait for it
        subprocess.run([sys.executable, "-m", "v2gtool", "--config", str(config), "contactor", command, "--session",
                        "10", "--scenario", str(scenario)], stdout=subprocess.DEVNULL, stderr=stderr, timeout=120)
    assert marker.exists(), errors.read_text()
    assert "Traceback" not in errors.read_text()
