"""Shared output helpers of the commands: JSON lines for pipes, rich for people."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO


def emit_json(record: Any, stream: TextIO | None = None) -> None:
    """Write *record* as one compact JSON line and flush, so a pipeline sees it at once."""
    out = sys.stdout if stream is None else stream
    out.write(json.dumps(record, separators=(",", ":"), ensure_ascii=False))
    out.write("\n")
    out.flush()
