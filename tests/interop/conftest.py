"""Fixtures for interop tests against the iso15118 (EXIficient) EXI oracle."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from .iso15118_oracle_client import (
    FALLBACK_PEER_PYTHON,
    Iso15118Oracle,
    find_peer_python,
    java_available,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def iso15118_oracle() -> Iterator[Iso15118Oracle]:
    """One oracle process (one JVM) for the whole session; always terminated."""
    python = find_peer_python(REPO_ROOT)
    if python is None:
        looked_at = os.environ.get("V2GTOOL_PEER_PYTHON") or (
            f"{REPO_ROOT / '.venv-peers/bin/python'} and {FALLBACK_PEER_PYTHON}"
        )
        pytest.skip(
            "no peer python with iso15118 (set V2GTOOL_PEER_PYTHON or run tools/install.sh --peers); "
            f"looked at {looked_at}"
        )
    if not java_available():
        pytest.skip("java is not on PATH (the iso15118 EXIficient codec needs a JRE: default-jre-headless)")
    oracle = Iso15118Oracle.start(python)
    try:
        yield oracle
    finally:
        oracle.close()
