"""Progress feedback draws on a terminal's stderr and stays silent under --json or without a terminal."""

from __future__ import annotations

import io

import click
import pytest
from rich.console import Console

from v2gtool.cli.context import AppContext
from v2gtool.cli.progress import progress_bar, spinner
from v2gtool.config import Config


def _context(*, terminal: bool, json_out: bool = False) -> tuple[click.Context, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    app = AppContext(config=Config(), json=json_out, debug=False,
                     console=Console(file=out, force_terminal=terminal),
                     err_console=Console(file=err, force_terminal=terminal, width=80))
    return click.Context(click.Command("x"), obj=app), out, err


@pytest.mark.parametrize(("terminal", "json_out"), [(False, False), (True, True)])
def test_silent_without_terminal_or_under_json(terminal: bool, json_out: bool) -> None:
    ctx, out, err = _context(terminal=terminal, json_out=json_out)
    with spinner(ctx, "waiting for the EVCC"):
        items = list(progress_bar(ctx, range(5), total=5, description="decoding"))
    assert items == [0, 1, 2, 3, 4]
    assert out.getvalue() == err.getvalue() == ""


def test_local_json_flag_silences_too() -> None:
    ctx, _, err = _context(terminal=True)
    assert list(progress_bar(ctx, "ab", description="decoding", json_out=True)) == ["a", "b"]
    assert err.getvalue() == ""


def test_bar_and_spinner_draw_on_stderr_of_a_terminal() -> None:
    ctx, out, err = _context(terminal=True)
    with spinner(ctx, "waiting for the EVCC"):
        pass
    items = list(progress_bar(ctx, iter(range(3)), total=3, description="decoding"))
    assert items == [0, 1, 2]
    assert out.getvalue() == ""
    assert "waiting for the EVCC" in err.getvalue()
    assert "decoding" in err.getvalue() and "3/3" in err.getvalue()


def test_items_are_yielded_lazily() -> None:
    ctx, _, _ = _context(terminal=True)
    pulled: list[int] = []

    def source() -> object:
        for i in range(3):
            pulled.append(i)
            yield i

    bar = progress_bar(ctx, source(), description="decoding")  # type: ignore[arg-type]
    assert next(bar) == 0
    assert pulled == [0]
    bar.close()
