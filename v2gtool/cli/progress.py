"""Feedback for work that takes more than a moment: a spinner and a progress bar.

Both draw on stderr through rich, so stdout stays clean for pipelines, and both fall back to
nothing at all under ``--json`` or when stderr is not a terminal (CI logs, ``2> file``, cron).
Commands use them like this::

    with spinner(ctx, "waiting for CM_SLAC_PARM.REQ on eth1"):
        result = run_slac(...)

    for packet in progress_bar(ctx, reader, total=reader.count, description="decoding"):
        ...
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeRemainingColumn

from v2gtool.cli.context import app_context

T = TypeVar("T")


def feedback_console(ctx: click.Context, json_out: bool = False) -> Console | None:
    """The stderr console to draw progress on, or None when progress must stay silent.

    Silent under ``--json`` (given on the group or as the subcommand's own *json_out*) and when
    stderr is not a terminal.
    """
    app = app_context(ctx)
    if json_out or app.json or not app.err_console.is_terminal:
        return None
    return app.err_console


@contextmanager
def spinner(ctx: click.Context, message: str, json_out: bool = False) -> Iterator[None]:
    """Show a spinner with *message* while the block runs (waiting on a peer, a handshake)."""
    console = feedback_console(ctx, json_out)
    if console is None:
        yield
        return
    with console.status(message):
        yield


def progress_bar(
    ctx: click.Context,
    items: Iterable[T],
    *,
    total: int | None = None,
    description: str = "",
    json_out: bool = False,
) -> Iterator[T]:
    """Yield *items* while a bar (count, rate, time left when *total* is known) advances on stderr."""
    console = feedback_console(ctx, json_out)
    if console is None:
        yield from items
        return
    columns = [SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn()]
    if total is not None:
        columns.append(TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)
