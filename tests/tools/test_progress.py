"""Progress feedback draws on a terminal's stderr and stays silent under --json or without a terminal."""

from __future__ import annotations

import io
import sys
import threading
import time

import click
import pytest
from rich.console import Console

from v2gtool.cli.context import AppContext, app_context
from v2gtool.cli.progress import FRAME_INTERVAL, progress_bar, spinner
from v2gtool.config import Config


def _context(*, terminal: bool, json_out: bool = False) -> tuple[click.Context, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    app = AppContext(config=Config(), json=json_out, debug=False,
                     console=Console(file=out, force_terminal=terminal),
                     err_console=Console(file=err, force_terminal=terminal, force_interactive=terminal, width=80))
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


# --- the spinner on a terminal that stdout shares ---------------------------------------------


class Screen:
    """A terminal that stdout and stderr both write to: text, CR, LF and erase-line (CSI 2K)."""

    def __init__(self) -> None:
        self.lines = [""]
        self.col = 0
        self.raw: list[str] = []

    def feed(self, text: str) -> None:
        self.raw.append(text)
        i = 0
        while i < len(text):
            if text.startswith("\x1b[2K", i):
                self.lines[-1] = ""
                i += 4
                continue
            char = text[i]
            if char == "\r":
                self.col = 0
            elif char == "\n":
                self.lines.append("")
                self.col = 0
            else:
                line = self.lines[-1].ljust(self.col)
                self.lines[-1] = line[: self.col] + char + line[self.col + 1:]
                self.col += 1
            i += 1


class TerminalStream(io.StringIO):
    """One of the screen's two streams (a tty to whoever asks)."""

    def __init__(self, screen: Screen) -> None:
        super().__init__()
        self.screen = screen

    def write(self, text: str) -> int:
        self.screen.feed(text)
        return len(text)

    def isatty(self) -> bool:
        return True


def _terminal(monkeypatch: pytest.MonkeyPatch) -> tuple[Screen, click.Context]:
    """sys.stdout and sys.stderr on one screen (set in the test itself: pytest's capture resets them
    between setup and call)."""
    shared = Screen()
    monkeypatch.setattr(sys, "stdout", TerminalStream(shared))
    monkeypatch.setattr(sys, "stderr", TerminalStream(shared))
    app = AppContext(config=Config(), json=False, debug=False, console=Console(force_terminal=True),
                     err_console=Console(stderr=True, force_terminal=True, force_interactive=True, width=60))
    return shared, click.Context(click.Command("x"), obj=app)


def test_output_scrolls_past_the_spinner_and_it_is_gone_at_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    shared, ctx = _terminal(monkeypatch)
    with spinner(ctx, "waiting for CM_SLAC_PARM.REQ on eth1") as waiting:
        assert "waiting for CM_SLAC_PARM.REQ on eth1 (0 s)" in shared.lines[-1]
        print("0.000 EVSE <- CM_SLAC_PARM.REQ")  # sys.stdout
        assert shared.lines[-1].endswith("waiting for CM_SLAC_PARM.REQ on eth1 (0 s)")  # redrawn below it
        waiting.update("waiting for the EV's CM_SLAC_MATCH.REQ on eth1")
        app_context(ctx).console.print("0.210 EVSE -> CM_SLAC_PARM.CNF", highlight=False)  # rich, on stdout
        print("partial", end="")
        time.sleep(3 * FRAME_INTERVAL)  # the spinner keeps turning, but not onto a half-written line
        assert shared.lines[-1] == "partial"
        print(" line", file=sys.stderr)  # a warning on stderr goes the same way
    assert shared.lines == ["0.000 EVSE <- CM_SLAC_PARM.REQ", "0.210 EVSE -> CM_SLAC_PARM.CNF", "partial line", ""]
    assert any("CM_SLAC_MATCH.REQ on eth1" in chunk for chunk in shared.raw)
    assert isinstance(sys.stdout, TerminalStream)  # the streams are given back
    assert isinstance(sys.stderr, TerminalStream)


def test_the_spinner_is_erased_when_the_block_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    shared, ctx = _terminal(monkeypatch)
    for failure in (TimeoutError("no answer"), KeyboardInterrupt()):
        with pytest.raises(type(failure)), spinner(ctx, "connecting to [fe80::1%eth1]:64109"):
            raise failure
        assert shared.lines[-1] == ""
        assert isinstance(sys.stdout, TerminalStream) and isinstance(sys.stderr, TerminalStream)
    assert not [t for t in threading.enumerate() if t.name == "v2gtool-spinner"]


def test_under_json_the_terminal_is_not_touched(monkeypatch: pytest.MonkeyPatch) -> None:
    shared, ctx = _terminal(monkeypatch)
    before = sys.stdout
    with spinner(ctx, "waiting for an EV on eth1", json_out=True) as waiting:
        assert sys.stdout is before
        waiting.update("in session")
        print('{"event":"SessionEnded"}')
    assert shared.raw == ['{"event":"SessionEnded"}', "\n"]


def test_a_long_text_is_shortened_to_one_line_and_keeps_the_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    shared, ctx = _terminal(monkeypatch)  # 60 columns
    with spinner(ctx, "waiting for an EV on eth1: SDP on UDP 15118, TCP [fe80::2c3:4ff:fe05:607]:64109"):
        line = shared.lines[-1]
    assert len(line) == 59 and line.endswith("… (0 s)") and line.startswith("⠋ waiting for an EV on eth1")


def test_the_bar_leaves_stdout_where_it_was() -> None:
    """rich would route sys.stdout into the stderr console while a bar runs: output must stay on stdout."""
    ctx, _, _ = _context(terminal=True)
    before = sys.stdout
    seen = [sys.stdout is before for _ in progress_bar(ctx, range(2), total=2, description="decoding")]
    assert seen == [True, True]
