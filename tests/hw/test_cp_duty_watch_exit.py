"""``cp-duty watch`` on a real-time backend (the serial board simulator on a pty) runs until a signal:
SIGINT and SIGTERM end it at a control tick with exit 130, as its --help says."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from v2gtool.exit_codes import ExitCode
from v2gtool.hw.board_sim import BoardSimulator
from v2gtool.hw.cp import CpState

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def board() -> Iterator[BoardSimulator]:
    sim = BoardSimulator(CpState.C).start()
    yield sim
    sim.stop()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_watch_ends_on_a_signal_with_exit_130(board: BoardSimulator, signum: signal.Signals) -> None:
    watch = subprocess.Popen(
        [sys.executable, "-m", "v2gtool", "--json", "cp-duty", "watch", "--backend", "serial"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "V2GTOOL_HW__SERIAL_PORT": board.port},
    )
    try:
        assert watch.stdout is not None
        # The first CP state is reported from inside the watch: the signal arrives while it watches.
        assert select.select([watch.stdout], [], [], 60)[0], "cp-duty watch printed nothing"
        assert '"event":"CpStateChanged"' in watch.stdout.readline()
        watch.send_signal(signum)
        _out, err = watch.communicate(timeout=60)
    finally:
        watch.kill()
        watch.wait()
    assert watch.returncode == ExitCode.INTERRUPTED, err
    assert err == "v2gtool: aborted\n"
