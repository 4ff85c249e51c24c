"""Feedback for work that takes more than a moment: a spinner while waiting on a peer, a progress bar.

Both draw on stderr, so stdout stays clean for pipelines, and both draw nothing at all under
``--json`` or when stderr is not an interactive terminal (CI logs, ``2> file``, cron,
``TERM=dumb``, ``TTY_INTERACTIVE=0``). Commands use them like this::

    with spinner(ctx, "waiting for CM_SLAC_PARM.REQ on eth1") as waiting:
        ...
        waiting.update("waiting for CM_SLAC_MATCH.REQ from 02:00:00:00:00:01 on eth1")

    for packet in progress_bar(ctx, reader, total=reader.count, description="decoding"):
        ...

The spinner is one line at the bottom of the terminal that the command's own output scrolls past:
while it shows, writes to ``sys.stdout`` and ``sys.stderr`` on the same terminal first erase it and
it is redrawn after each complete line, so event lines never land on the spinner's line. (rich's own
``Status`` is not used: it routes ``sys.stdout`` into the stderr console while it runs.) It ends,
erased, when the block ends: on success, on an error, on a timeout and on Ctrl-C.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import IO, Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeRemainingColumn

from v2gtool.cli.context import app_context

T = TypeVar("T")

FRAMES = "⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏"
FRAME_INTERVAL = 0.1  # seconds
ERASE_LINE = "\r\x1b[2K"


def feedback_console(ctx: click.Context, json_out: bool = False) -> Console | None:
    """The stderr console to draw progress on, or None when progress must stay silent.

    Silent under ``--json`` (given on the group or as the subcommand's own *json_out*) and when
    stderr is not an interactive terminal.
    """
    app = app_context(ctx)
    if json_out or app.json or not app.err_console.is_interactive:
        return None
    return app.err_console


class Spinner:
    """What a command is waiting for, as ``⠹ waiting for … (3 s)`` on stderr; silent without a console.

    :meth:`update` changes the text (and restarts the seconds count); it may be called from any
    thread, and costs nothing when the spinner is silent.
    """

    def __init__(self, console: Console | None, text: str) -> None:
        self._console = console
        self._text = text
        self._since = time.monotonic()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._frame = 0
        self._drawn = False
        self._mid_line = False  # a guarded stream wrote part of a line: do not draw after it
        self._file: IO[str] | None = None
        self._thread: threading.Thread | None = None
        self._replaced: dict[str, Any] = {}

    def update(self, text: str) -> None:
        """Show *text* from now on (the seconds count from the first update to a new text)."""
        with self._lock:
            if text == self._text:
                return
            self._text, self._since = text, time.monotonic()
            self._draw()

    def start(self) -> None:
        """Draw, keep turning, and guard the terminal's stdout/stderr (no-op when silent)."""
        if self._console is None:
            return
        self._file = self._console.file
        for name in ("stdout", "stderr"):
            stream = getattr(sys, name)
            if _is_tty(stream):
                self._replaced[name] = stream
                setattr(sys, name, _GuardedStream(stream, self))
        with self._lock:
            self._draw()
        self._thread = threading.Thread(target=self._turn, name="v2gtool-spinner", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop turning, erase the line and give the streams back."""
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(timeout=1.0)
        with self._lock:
            self._erase()
            for name, stream in self._replaced.items():
                setattr(sys, name, stream)
            self._replaced.clear()

    def _turn(self) -> None:
        while not self._stop.wait(FRAME_INTERVAL):
            with self._lock:
                self._frame += 1
                self._draw()

    def _draw(self) -> None:
        if self._file is None or self._mid_line or self._stop.is_set():
            return
        assert self._console is not None
        seconds = f" ({time.monotonic() - self._since:.0f} s)"
        room = max(self._console.width - 3 - len(seconds), 1)  # one line: never wrap, or erasing fails
        text = self._text if len(self._text) <= room else self._text[: room - 1] + "…"
        self._file.write(f"{ERASE_LINE}{FRAMES[self._frame % len(FRAMES)]} {text}{seconds}")
        self._file.flush()
        self._drawn = True

    def _erase(self) -> None:
        if self._drawn and self._file is not None:
            self._file.write(ERASE_LINE)
            self._file.flush()
            self._drawn = False

    def write_above(self, stream: IO[str], text: str) -> int:
        """Write *text* of a guarded stream: erase the spinner, write, redraw after a complete line."""
        with self._lock:
            self._erase()
            written = stream.write(text)
            stream.flush()
            if text:
                self._mid_line = not text.endswith("\n")
            self._draw()
            return written


class _GuardedStream:
    """``sys.stdout``/``sys.stderr`` on the spinner's terminal while it shows (see the module docstring)."""

    def __init__(self, stream: IO[str], spinner: Spinner) -> None:
        self._stream = stream
        self._spinner = spinner

    def write(self, text: str) -> int:
        return self._spinner.write_above(self._stream, text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _is_tty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


@contextmanager
def spinner(ctx: click.Context, text: str, json_out: bool = False) -> Iterator[Spinner]:
    """Show a spinner with *text* while the block runs (waiting on a peer, a handshake)."""
    waiting = Spinner(feedback_console(ctx, json_out), text)
    waiting.start()
    try:
        yield waiting
    finally:
        waiting.stop()


def progress_bar(
    ctx: click.Context,
    items: Iterable[T],
    *,
    total: int | None = None,
    description: str = "",
    json_out: bool = False,
) -> Iterator[T]:
    """Yield *items* while a bar (count, rate, time left when *total* is known) advances on stderr.

    For loops that print their result after the last item (``pcap-decode --summary``): the bar does
    not reroute ``sys.stdout`` (rich would send it into the stderr console), so output stays on stdout.
    When silent it is the items' own iterator: nothing is added per item.
    """
    console = feedback_console(ctx, json_out)
    if console is None:
        return iter(items)
    return _advancing(console, items, total, description)


ADVANCE_EVERY = 64  # items counted between two updates of the bar (it is redrawn 10 times a second anyway)


def _advancing(console: Console, items: Iterable[T], total: int | None, description: str) -> Iterator[T]:
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    if total is not None:
        columns.append(TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True, redirect_stdout=False, redirect_stderr=False) as progress:
        task = progress.add_task(description, total=total)
        uncounted = 0
        for item in items:
            yield item
            uncounted += 1
            if uncounted == ADVANCE_EVERY:
                progress.advance(task, uncounted)
                uncounted = 0
        progress.advance(task, uncounted)
