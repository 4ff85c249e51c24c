"""Human output read through a pipe: a line of text stays one line (``grep``, log files), while
rich would wrap it at 80 columns where there is no terminal to size it."""

from __future__ import annotations

import subprocess
import sys


def test_a_long_summary_line_is_one_line_in_a_pipe() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "v2gtool", "session", "run", "--sim", "--duration", "5", "--no-trace"],
        capture_output=True, text=True, timeout=120, check=True,
    )
    (line,) = [line for line in done.stdout.splitlines() if line.startswith("completed:")]
    assert len(line) > 80  # long enough that rich would have wrapped it
    assert line.endswith("simulated")

