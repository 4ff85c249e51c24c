#!/usr/bin/env python3
"""Regenerate ``completions/`` (bash, zsh, fish) from the ``v2gtool`` command tree.

Run it after adding a subcommand or upgrading click; ``tests/tools`` fails while the committed
scripts differ from what this writes. ``--out DIR`` writes elsewhere (the test's temporary dir).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from v2gtool.cli.completion import FILE_NAMES, SHELLS, completion_script

REPO = Path(__file__).resolve().parent.parent


def generate(out: Path) -> list[Path]:
    """Write one script per shell into *out*; return the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for shell in SHELLS:
        path = out / FILE_NAMES[shell]
        path.write_text(completion_script(shell))
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "completions", help="output directory")
    args = parser.parse_args()
    for path in generate(args.out):
        print(path)


if __name__ == "__main__":
    main()
