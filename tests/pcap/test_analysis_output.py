"""pcap-decode's output fast paths: JSON lines from a once-made encoder written in blocks, a silent progress bar.

Every line must be the one :func:`emit_json` writes for the record, byte for byte, and blocks must
only change how many writes carry them.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import click
import click.testing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from tests.pcap.session import analyse, dc_session, dissect, write_session
from v2gtool.cli import pcap_decode
from v2gtool.cli.context import AppContext
from v2gtool.cli.main import cli
from v2gtool.cli.output import emit_json
from v2gtool.cli.progress import ADVANCE_EVERY, progress_bar
from v2gtool.config import Config

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),  # NaN, ±inf and non-ASCII text included
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20)


def _emitted(value: Any) -> str:
    out = io.StringIO()
    emit_json(value, out)
    return out.getvalue()


@settings(max_examples=300, deadline=None)
@given(JSON_VALUES)
def test_chunks_are_the_text_of_emit_json(value: Any) -> None:
    assert "".join(pcap_decode._json_chunks()(value)) + "\n" == _emitted(value)


def test_without_the_c_encoder_the_text_is_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    value = {"event": "V2GMessage", "t": 1.5, "x": [None, True, math.inf, "Ω"], "n": -3}
    monkeypatch.setattr(json.encoder, "c_make_encoder", None)
    assert "".join(pcap_decode._json_chunks()(value)) + "\n" == _emitted(value)


class _Stdout(io.StringIO):
    """stdout that counts its writes."""

    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.mark.parametrize(("live", "writes"), [(False, 3), (True, 2 * pcap_decode._JSON_BLOCK + 7)])
def test_lines_are_those_of_emit_json_in_blocks_unless_live(live: bool, writes: int,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    count = 2 * pcap_decode._JSON_BLOCK + 7
    session = dissect(write_session(dc_session([0.1])))
    records = (session * (count // len(session) + 1))[:count]
    stdout = _Stdout()
    monkeypatch.setattr("sys.stdout", stdout)
    renderer = pcap_decode._Renderer(Console(file=io.StringIO()), True, False, [], live)
    for record in records:
        renderer.show(record)
    renderer.flush()
    assert stdout.getvalue() == "".join(_emitted(record.to_json()) for record in records)
    assert stdout.writes == writes


def test_json_output_is_emit_json_of_each_record_and_the_summary(tmp_path: Path) -> None:
    capture = tmp_path / "loop.pcap"
    capture.write_bytes(write_session(dc_session([0.1, 0.45, 0.6], currents=[20, -15, -25])))
    result = click.testing.CliRunner().invoke(cli, ["--json", "pcap-decode", str(capture)])
    records = dissect(capture.read_bytes())
    expected = "".join(_emitted(record.to_json()) for record in records) + _emitted(analyse(records).summary())
    assert result.output == expected
    assert result.exit_code == 1  # the 0.6 s response is over its 0.5 s timeout


def _context(terminal: bool) -> tuple[click.Context, io.StringIO]:
    err = io.StringIO()
    app = AppContext(config=Config(), json=False, debug=False, console=Console(file=io.StringIO()),
                     err_console=Console(file=err, force_terminal=terminal, force_interactive=terminal, width=80))
    return click.Context(click.Command("x"), obj=app), err


def test_silent_progress_bar_is_the_items_own_iterator() -> None:
    ctx, err = _context(terminal=False)
    items = iter(range(3))
    assert progress_bar(ctx, items, description="decoding") is items
    assert err.getvalue() == ""


@pytest.mark.parametrize("count", [ADVANCE_EVERY - 1, 2 * ADVANCE_EVERY + 3])
def test_bar_counts_every_item_though_it_advances_in_steps(count: int) -> None:
    ctx, err = _context(terminal=True)
    assert list(progress_bar(ctx, range(count), total=count, description="decoding")) == list(range(count))
    assert f"{count}/{count}" in err.getvalue()
