"""Shared output helpers of the commands: JSON lines for pipes, rich for people."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from typing import Any, TextIO, TypeVar

import click
from rich.markup import escape
from rich.tree import Tree

from v2gtool.cli.context import app_context

TIME_DIGITS = 6
"""A record's time stamp ``t`` (seconds) is written to the microsecond: a simulated clock's sums of
steps (0.1 + 0.11 = 0.21000000000000002) carry float noise below that, which is no information."""


def emit_json(record: Any, stream: TextIO | None = None) -> None:
    """Write *record* as one compact JSON line and flush, so a pipeline sees it at once. The line is
    one write: unbuffered (PYTHONUNBUFFERED), two processes sharing a pipe (``session run --netns``)
    would otherwise interleave between a record and its newline. Its time stamp ``t`` is rounded to
    :data:`TIME_DIGITS` decimals."""
    if isinstance(record, dict) and isinstance(record.get("t"), float):
        record = {**record, "t": round(record["t"], TIME_DIGITS)}
    out = sys.stdout if stream is None else stream
    line = json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n"
    try:
        out.write(line)
    except UnicodeEncodeError:  # a lone surrogate (or a non-UTF-8 stream): JSON's \u escapes say it
        out.write(json.dumps(record, separators=(",", ":")) + "\n")
    out.flush()


F = TypeVar("F", bound=Callable[..., Any])


def json_option(func: F) -> F:
    """Add ``--json`` to a subcommand; it means the same as the group's ``v2gtool --json``."""
    return click.option(
        "--json", "json_out", is_flag=True, help="Emit one JSON object per line (same as v2gtool --json)."
    )(func)


def use_json(ctx: click.Context, local_flag: bool) -> bool:
    """True when JSON lines were asked for, on the group or on the subcommand."""
    return local_flag or app_context(ctx).json


# C0 and C1 control characters, DEL, the Unicode line and paragraph separators, and the bidirectional
# formatting characters (Unicode UAX #9: ALM, LRM, RLM, the embeddings and overrides U+202A-U+202E,
# the isolates U+2066-U+2069), which reorder what a terminal shows after them ("Trojan Source").
_INVISIBLE = re.compile(r"[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")


def wire_text(value: object) -> str:
    """Text from the wire (EXI strings, OCPP ids, error texts quoting them) made safe for people's
    output: rich markup escaped, and every control character shown as its escape (``\\x1b``), so a
    crafted string can neither style the output nor drive the terminal nor break its line."""
    text = _INVISIBLE.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), str(value))
    return escape(text)


def message_tree(label: str, body: Any) -> Tree:
    """A rich tree of a message in the JSON message form (elements as branches, values as leaves);
    a root of simple content (a ``DigestValue`` document or fragment) is its value alone."""
    tree = Tree(label)
    if isinstance(body, dict):
        _fill(tree, body)
    else:
        tree.add(f"[green]{wire_text(body)}[/green]")
    return tree


def _fill(node: Tree, body: dict[str, Any]) -> None:
    for key, value in body.items():
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            name = f"{key}[{i}]" if isinstance(value, list) else key
            if isinstance(item, dict):
                _fill(node.add(f"[cyan]{name}[/cyan]"), item)
            else:  # values come from the wire: "[fe80::1]" or "[/x]" is not markup, ESC not a command
                node.add(f"[cyan]{wire_text(name)}[/cyan] = [green]{wire_text(item)}[/green]")
