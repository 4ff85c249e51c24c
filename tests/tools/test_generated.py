"""The committed completions and man pages are what the generators make from today's command tree."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.tools.conftest import REPO, run_tool
from v2gtool.cli.main import SUBCOMMANDS


def _tree(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.mark.parametrize(("script", "directory"), [("gen_completions.py", "completions"), ("gen_man.py", "man")])
def test_committed_output_is_current(tmp_path: Path, script: str, directory: str) -> None:
    run_tool(script, tmp_path)
    fresh, committed = _tree(tmp_path), _tree(REPO / directory)
    stale = sorted(name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name))
    assert not stale, f"{directory}/ is stale ({', '.join(stale)}): run python tools/{script}"


def test_every_subcommand_has_a_man_page(tmp_path: Path) -> None:
    run_tool("gen_man.py", tmp_path)
    pages = {p.name for p in tmp_path.iterdir()}
    assert pages == {"v2gtool.1", *(f"v2gtool-{name}.1" for name in SUBCOMMANDS)}
