"""A standard output that refuses writes (a full disk, EIO) is one line and exit 4, in every command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FULL = Path("/dev/full")
pytestmark = pytest.mark.skipif(not FULL.exists(), reason="needs /dev/full")

ONE_LINE = "v2gtool: error: cannot write to standard output: No space left on device\n"


def run_to_full(*argv: str) -> subprocess.CompletedProcess[str]:
    with FULL.open("w") as full:
        return subprocess.run(argv, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)


@pytest.mark.parametrize("json_out", [(), ("--json",)])
def test_a_full_stdout_is_one_line_and_exit_4(json_out: tuple[str, ...]) -> None:
    result = run_to_full(sys.executable, "-m", "v2gtool", *json_out,
                         "v2g-message-handler", "schema", "--namespace", "iso20-dc")
    assert result.returncode == 4
    assert result.stderr == ONE_LINE


def test_debug_shows_where_it_failed() -> None:
    result = run_to_full(sys.executable, "-m", "v2gtool", "--debug",
                         "v2g-message-handler", "schema", "--namespace", "iso20-dc")
    assert result.returncode == 4
    assert "Traceback" in result.stderr and result.stderr.endswith(ONE_LINE)


SWALLOWING = """
import click, sys
from v2gtool.cli.main import cli, main

@cli.command("swallow")
def swallow() -> None:
    for _ in range(2):  # a listener whose error its caller drops, then writes again
        try:
            click.echo("x" * 10000)
        except Exception:
            pass
    raise click.ClickException("the SECC closed the connection")

main(["swallow"])
"""


def test_the_write_error_is_reported_even_when_the_command_turned_it_into_another() -> None:
    result = run_to_full(sys.executable, "-c", SWALLOWING)
    assert result.returncode == 4
    assert result.stderr == ONE_LINE


def test_a_stdout_closed_before_start_is_left_as_click_leaves_it() -> None:
    """fd 1 closed: Python has no sys.stdout, click writes nothing, and that is no write error."""
    result = subprocess.run([sys.executable, "-m", "v2gtool", "--version"], stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: os.close(1), timeout=60)
    assert result.returncode == 0 and result.stderr == ""
