"""The exit-code table agrees with the error classes and with what the CLI actually returns."""

from __future__ import annotations

import subprocess
import sys

import click

from v2gtool.errors import ConfigError, V2GToolError
from v2gtool.exit_codes import ExitCode


def test_error_classes_use_the_table() -> None:
    assert V2GToolError.exit_code == ExitCode.FAILURE == 1
    assert ConfigError.exit_code == ExitCode.USAGE == 2
    assert click.UsageError("x").exit_code == ExitCode.USAGE


def test_every_code_is_documented_once() -> None:
    assert len({int(c) for c in ExitCode}) == len(ExitCode)
    assert all(code.meaning.endswith(".") for code in ExitCode)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "v2gtool", *args], capture_output=True, text=True, timeout=60)


def test_cli_usage_and_config_errors_exit_2() -> None:
    assert _run("no-such-command").returncode == ExitCode.USAGE
    assert _run("--config", "/nonexistent.toml", "doctor", "--help").returncode == ExitCode.USAGE


def test_cli_failure_exits_1() -> None:
    result = _run("v2g-message-handler", "decode", "zz")
    assert result.returncode == ExitCode.FAILURE
    assert result.stderr.startswith("v2gtool: error:")
