"""The front door: version, help, config errors and the one-line error contract."""

from __future__ import annotations

import subprocess
import sys

from v2gtool import __version__


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "v2gtool", *args], input=stdin, capture_output=True, text=True, timeout=60
    )


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_help_lists_working_subcommands() -> None:
    result = run("--help")
    assert result.returncode == 0
    assert "v2g-message-handler" in result.stdout


def test_missing_config_file_is_one_line_and_exit_2(tmp_path: object) -> None:
    result = run("--config", "/nonexistent/v2gtool.toml", "v2g-message-handler", "--help")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "cannot read config file /nonexistent/v2gtool.toml" in result.stderr
    assert "Traceback" not in result.stderr
