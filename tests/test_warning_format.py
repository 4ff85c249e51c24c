"""Python logging's warnings on stderr look like the CLI's own one-line messages
(``v2gtool: warning: ...``); ``--debug`` adds where they come from, and their tracebacks."""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from v2gtool.cli.main import _LogLine, main
from v2gtool.hw.control import EVSE_SHUTDOWN_REJECTED

FLOOR = rf"v2gtool: warning: {EVSE_SHUTDOWN_REJECTED}: discharge refused at SoC \d+\.\d % \(floor 20\.0 %\)"


def discharge_to_the_floor(tmp_path: Path, *options: str) -> list[str]:
    """``session run --sim`` discharging a battery just above the station's SoC floor (20 %): its stderr."""
    scenario = tmp_path / "floor.toml"
    scenario.write_text("[plant]\nsoc = 0.205\nbattery_capacity_ah = 5\n")
    proc = subprocess.run([sys.executable, "-m", "v2gtool", *options, "--json", "session", "run", "--sim",
                           "--no-trace", "--direction", "discharge", "--scenario", str(scenario)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stderr.splitlines()


def test_the_soc_floor_warning_is_one_line_like_the_clis_errors(tmp_path: Path) -> None:
    (line,) = discharge_to_the_floor(tmp_path)
    assert re.fullmatch(FLOOR, line)


def test_debug_adds_the_logger_and_the_source_line(tmp_path: Path) -> None:
    (line,) = discharge_to_the_floor(tmp_path, "--debug")
    assert re.fullmatch(rf"{FLOOR} \[v2gtool\.hw\.station, station\.py:\d+\]", line)


def test_a_traceback_only_with_debug() -> None:
    try:
        raise OSError("disk gone")
    except OSError:
        record = logging.LogRecord("v2gtool.x", logging.ERROR, __file__, 7, "lost %s", ("it",), sys.exc_info())
    assert _LogLine(debug=False).format(record) == "v2gtool: error: lost it"
    first, *trace = _LogLine(debug=True).format(record).splitlines()
    assert first == "v2gtool: error: lost it [v2gtool.x, test_warning_format.py:7]"
    assert trace[0] == "Traceback (most recent call last):" and trace[-1] == "OSError: disk gone"


def test_main_in_process_leaves_logging_as_it_found_it(capsys: pytest.CaptureFixture[str]) -> None:
    before = logging.getLogger().handlers[:], logging.getLogger("v2gtool").level
    main(["--debug", "--version"])
    assert (logging.getLogger().handlers, logging.getLogger("v2gtool").level) == before
    assert "v2gtool" in capsys.readouterr().out
