"""``[hw] active_low`` of the gpiod backend: read as the line keys are read, and every entry a configured
line, so that no inverted coil is requested active-high (and energised by its "released" level)."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from v2gtool.config import Config, load_config
from v2gtool.errors import ConfigError
from v2gtool.hw.gpiod import GpioLines, gpiod_hardware
from v2gtool.hw.realtime import MonotonicClock

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = {"k1_coil": "17", "k2_coil": 18, "k1_feedback": 3, "k2_feedback": 4}


def requested_settings(monkeypatch: pytest.MonkeyPatch, hw: dict[str, Any]) -> dict[Any, dict[str, Any]]:
    """The settings of each line in the request the backend makes, through a fake libgpiod v2 API."""
    requested: dict[Any, dict[str, Any]] = {}

    class Request:
        def get_value(self, _line: Any) -> str:
            return "INACTIVE"

        def release(self) -> None:
            pass

    def request_lines(_chip: str, *, config: dict[Any, dict[str, Any]], consumer: str) -> Request:
        requested.update(config)
        return Request()

    line = types.SimpleNamespace(
        Value=types.SimpleNamespace(ACTIVE="ACTIVE", INACTIVE="INACTIVE"),
        Direction=types.SimpleNamespace(INPUT="in", OUTPUT="out"),
    )
    gpiod = types.SimpleNamespace(LineSettings=lambda **settings: settings, request_lines=request_lines)
    monkeypatch.setitem(sys.modules, "gpiod", gpiod)
    monkeypatch.setitem(sys.modules, "gpiod.line", line)
    gpiod_hardware(Config({"hw": hw}), MonotonicClock()).release()
    return requested


def test_active_low_offsets_as_digit_strings_are_the_configured_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    requested = requested_settings(monkeypatch, {**LAYOUT, "active_low": ["17", 18, "3"]})
    assert {line: settings["active_low"] for line, settings in requested.items()} == {
        17: True,
        18: True,
        3: True,
        4: False,
    }
    # The coils are requested released (INACTIVE), which is "not energised" on both inverted coils.
    assert requested[17]["output_value"] == requested[18]["output_value"] == "INACTIVE"


@pytest.mark.parametrize("entry", ["ESTP", 19, "K1_COIL"])
def test_an_entry_that_is_no_configured_line_is_an_error(entry: Any) -> None:
    with pytest.raises(ConfigError, match=f"^\\[hw\\] active_low names {entry!r}, not a configured line"):
        GpioLines.from_config(Config({"hw": {**LAYOUT, "active_low": ["17", entry]}}))


def test_the_error_names_the_file_and_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "v2gtool.toml"
    path.write_text('[hw]\nk1_coil = "17"\nk2_coil = 18\nk1_feedback = 3\nk2_feedback = 4\nactive_low = ["ESTP"]\n')
    with pytest.raises(ConfigError, match=f"^config file {path}: \\[hw\\] active_low names 'ESTP'"):
        GpioLines.from_config(load_config(path, environ={}))
    result = subprocess.run(
        [sys.executable, "-m", "v2gtool", "--config", str(path), "contactor", "status", "--backend", "gpiod"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"v2gtool: error: config file {path}: [hw] active_low names 'ESTP'")
    assert result.stderr.count("\n") == 1
