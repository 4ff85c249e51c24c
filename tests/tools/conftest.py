"""Shared helpers of the toolkit tests: the repository, the venv's bin directory, generator runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's bin: holds the v2gtool console script


def run_tool(script: str, out: Path) -> None:
    """Run ``tools/<script> --out OUT`` with this interpreter."""
    subprocess.run([sys.executable, str(REPO / "tools" / script), "--out", str(out)], check=True,
                   capture_output=True, text=True, timeout=60)


@pytest.fixture
def path_env() -> dict[str, str]:
    """An environment whose PATH finds this checkout's ``v2gtool`` first (completion callbacks need it)."""
    if not (BIN / "v2gtool").is_file():
        pytest.skip(f"no v2gtool console script in {BIN}: install the project into its venv (tools/install.sh)")
    return {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
