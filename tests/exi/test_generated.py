"""The committed generated modules are what the schema compiler makes from ../shared/schemas."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_generated_code_is_current(shared_dir: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "tools" / "exi_compiler.py"), "--check"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr

