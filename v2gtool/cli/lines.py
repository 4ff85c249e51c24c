"""Input of the commands that read ``-`` (stdin) or a file of lines: stdin that may be closed,
numbered lines, and JSON values that cannot crash the reader.

A line-mode command reports a bad line in its place and goes on with the next
(``v2g-message-handler``); these helpers turn every way a line can be bad into one error, a
JSON text nested deeper than the parser's recursion limit included.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO, TextIO

from v2gtool.errors import V2GToolError
from v2gtool.exit_codes import ExitCode

BYTE_ORDER_MARK = "\ufeff"
"""U+FEFF, which some editors write at the start of a UTF-8 text file: not part of its first line."""


class StdinClosed(V2GToolError):
    """``-`` names stdin, but the process has none (``<&-``): no input at all, like a missing file."""

    exit_code = ExitCode.USAGE


class NotJson(ValueError):
    """A text that is no JSON value (RFC 8259): what is wrong with it, in one line, and the line of
    the text where it stops being JSON (1 when the parser does not say)."""

    def __init__(self, message: str, line: int = 1) -> None:
        super().__init__(message)
        self.line = line


def stdin_text() -> TextIO:
    """The process's stdin as text; :class:`StdinClosed` when it was closed."""
    if sys.stdin is None:
        raise StdinClosed("'-' reads stdin, but stdin is closed")
    return sys.stdin


def stdin_binary() -> BinaryIO:
    """The process's stdin as bytes; :class:`StdinClosed` when it was closed."""
    return stdin_text().buffer


def numbered_lines(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    """The non-blank lines of *lines*, numbered from 1 (blank ones count), without their line ending,
    nor a byte order mark before the first one: the same text whether read from a file or stdin."""
    for number, line in enumerate(lines, 1):
        if number == 1:
            line = line.removeprefix(BYTE_ORDER_MARK)
        if line.strip():
            yield number, line.rstrip("\r\n")


def json_value(text: str | bytes) -> Any:
    """The JSON value of *text*; :class:`NotJson` saying why when it is none: a syntax error, a
    ``NaN`` or ``Infinity`` (not JSON, and what we write must stay JSON), or nesting deeper than
    Python's recursion limit (which the parser meets as a RecursionError)."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except RecursionError:
        raise NotJson("nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise NotJson(str(exc), exc.lineno) from None
    except ValueError as exc:  # a constant refused, bytes that are no UTF-8
        raise NotJson(str(exc)) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
