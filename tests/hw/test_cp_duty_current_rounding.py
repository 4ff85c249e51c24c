"""``cp-duty current``: the current the vehicle reads back (IEC 61851-1 Table A.7, standards.md 6.2) is
reported rounded the same way whether the duty is applied or only computed (--no-apply)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def record(*args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "v2gtool", "--json", "cp-duty", "current", *args],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    found: dict[str, Any] = json.loads(result.stdout)
    return found


# Each of these computed back from its duty cycle is above itself by float rounding (50 A -> 83.33 %
# -> 50.00000000000001 A).
@pytest.mark.parametrize("amps", ["7", "25", "50", "63", "12.5"])
def test_no_apply_reports_what_the_applied_duty_reports(amps: str) -> None:
    dry = record(amps, "--no-apply")
    applied = record(amps)
    assert dry["current_a"] == float(amps)
    assert dry == {key: applied[key] for key in dry}
