"""Shared fixtures: where ../shared is (tests that need it skip cleanly without it)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"


def public_vectors() -> list[dict[str, Any]]:
    """The public EXI vectors of ../shared/testdata, or [] when ../shared is absent."""
    path = SHARED / "testdata" / "vectors" / "public_vectors.json"
    if not path.is_file():
        return []
    vectors: list[dict[str, Any]] = json.loads(path.read_text())
    return vectors


@pytest.fixture
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: the shared test data and schemas live beside the clone")
    return SHARED
