"""A scenario whose vehicle declares a voltage range its own battery is not in is refused at load: the
EV would ask to precharge to its battery's voltage, outside what it declared it stands."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from v2gtool.errors import ConfigError
from v2gtool.session import scenario as scenarios


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[vehicle]\nmax_voltage = 100\nmin_voltage = 50\n",
         r"\[vehicle\] max_voltage 100 is below the battery's 375 V at the start \(\[plant\] soc 0.5 between "
         r"ocv_empty_v 330 and ocv_full_v 420\): the EV would precharge above its own maximum$"),
        ("[vehicle]\nmax_voltage = 400\n[plant]\nsoc = 0.9\n",
         r"\[vehicle\] max_voltage 400 is below the battery's 411 V"),
        ("[vehicle]\nmin_voltage = 400\n",
         r"\[vehicle\] min_voltage 400 is above the battery's 375 V .*: the EV would precharge below its own minimum$"),
    ],
)
def test_a_vehicle_range_without_its_battery_is_refused(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "v.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        scenarios.load(path)


def test_a_vehicle_range_that_holds_its_battery_at_the_start_is_kept(tmp_path: Path) -> None:
    # 339 V at 10 %: within the 350 V maximum now; the charge towards it ends in constant voltage.
    path = tmp_path / "v.toml"
    path.write_text("[vehicle]\nmax_voltage = 350\n[plant]\nsoc = 0.1\n")
    assert scenarios.load(path).vehicle.max_voltage == 350.0


def test_session_run_refuses_it_in_one_line_with_exit_2(tmp_path: Path) -> None:
    path = tmp_path / "v.toml"
    path.write_text("[vehicle]\nmax_voltage = 100\nmin_voltage = 50\n")
    run = subprocess.run([sys.executable, "-m", "v2gtool", "session", "run", "--sim", "--scenario", str(path),
                          "--trace", str(tmp_path / "x.pcap")], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and "[vehicle] max_voltage 100 is below" in run.stderr
    assert not (tmp_path / "x.pcap").exists()
