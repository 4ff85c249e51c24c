"""A trace that cannot be written in the middle of a session (a full disk): the session ends cleanly
(EVSENotification Terminate, the station down), the trace ends at its last whole record, and the
command exits 4 (environment) with one line naming the file and the OS error."""

from __future__ import annotations

import asyncio
import errno
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from v2gtool.exit_codes import ExitCode
from v2gtool.hw.events import ContactorsOpened, InterlockTripped
from v2gtool.iso20.events import SessionEnded
from v2gtool.net.pcapwriter import PcapWriteError, PcapWriter
from v2gtool.pcap.reader import read_capture
from v2gtool.session import scenario as scenarios
from v2gtool.session.runner import TraceWriteFailed, run_sim
from v2gtool.session.trace import _WholeRecords

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer


class _Quota(io.FileIO):
    """A file system with room for *room* more bytes: a write past it stores what fits, then ENOSPC."""

    room = 0

    def write(self, data: ReadableBuffer, /) -> int:
        view = memoryview(data).cast("B")
        if not self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        taken = min(self.room, view.nbytes)
        self.room -= taken
        return super().write(view[:taken])


class _FullAfter(_WholeRecords, _Quota):
    """The trace file on that file system (its writes go to :class:`_Quota`)."""


def test_a_record_the_disk_refuses_part_way_is_cut_off_again(tmp_path: Path) -> None:
    path = tmp_path / "t.pcap"
    file = _FullAfter(path, "wb")
    file.room = 24 + 3 * (16 + 60) + 10  # the header, three records of 60 bytes, 10 bytes of a fourth
    writer = PcapWriter(file)
    for _ in range(3):
        writer.write(1.0, bytes(60))
    with pytest.raises(PcapWriteError, match=r"^cannot write pcap file .*t\.pcap: No space left on device$"):
        writer.write(2.0, bytes(60))
    writer.close()
    assert path.stat().st_size == 24 + 3 * (16 + 60)
    with path.open("rb") as stream:
        assert len(list(read_capture(stream))) == 3  # a partial last record would raise CaptureError


class _FailingTrace:
    """A trace sink that refuses the first V2GTP frame *from_evcc* (or the SECC) at or after *at*
    seconds, and every write after it."""

    epoch = 0.0

    def __init__(self, from_evcc: bool, at: float) -> None:
        self.from_evcc, self.at = from_evcc, at
        self.failed = self.closed = False

    def ethernet_frame(self, t: float, frame: bytes) -> None:
        pass

    def sdp(self, t: float, from_evcc: bool, datagram: bytes) -> None:
        pass

    def v2gtp(self, t: float, from_evcc: bool, data: bytes) -> None:
        self.failed = self.failed or (from_evcc == self.from_evcc and t >= self.at)
        if self.failed:
            raise PcapWriteError("cannot write pcap file t.pcap: No space left on device")

    def close(self, t: float) -> None:
        self.closed = True


# A DC_CableCheckRes of the SECC (what broke its connection handler), a DC_ChargeLoopReq of the EVCC
@pytest.mark.parametrize(("from_evcc", "at"), [(False, 5.0), (True, 25.0)])
def test_a_trace_that_fails_mid_session_ends_it_cleanly(from_evcc: bool, at: float) -> None:
    trace = _FailingTrace(from_evcc, at)
    with pytest.raises(TraceWriteFailed, match=r"^cannot write pcap file t\.pcap: No space left on device$") as caught:
        asyncio.run(run_sim(scenarios.load(None, duration=30.0), trace=trace))
    assert caught.value.exit_code == ExitCode.ENVIRONMENT
    result = caught.value.result
    assert result.ok and trace.closed
    ended = {e.role: e for e in result.events if isinstance(e, SessionEnded)}
    assert ended["SECC"].reason == ended["EVCC"].reason == "SessionStop Terminate"
    last_trip = max(i for i, e in enumerate(result.events) if isinstance(e, InterlockTripped))
    assert any(isinstance(e, ContactorsOpened) for e in result.events[last_trip:])


def _in_a_private_tmpfs(size: str, command: str) -> subprocess.CompletedProcess[str]:
    """*command* (sh) with a tmpfs of *size* mounted on /mnt in a private mount namespace."""
    return subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs -o size={size} tmpfs /mnt && {command}"],
                          capture_output=True, text=True, timeout=300)


def test_cli_session_run_on_a_disk_that_fills_up(tmp_path: Path) -> None:
    """The tester's case: a 40k tmpfs fills up in the charge loop."""
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("a private tmpfs needs root and unshare(1)")
    if _in_a_private_tmpfs("12k", "true").returncode != 0:
        pytest.skip("mount namespaces are not permitted here")
    kept = tmp_path / "t.pcap"
    v2gtool = f"{sys.executable} -m v2gtool --json session run --sim --duration 30 --trace /mnt/t.pcap"
    proc = _in_a_private_tmpfs("40k", f"{v2gtool}; rc=$?; cp /mnt/t.pcap {kept}; exit $rc")
    assert proc.returncode == ExitCode.ENVIRONMENT
    assert proc.stderr == "v2gtool: error: cannot write pcap file /mnt/t.pcap: No space left on device\n"
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    ended = {r["role"]: r for r in records if r["event"] == "SessionEnded"}
    assert ended["SECC"]["ok"] and ended["EVCC"]["reason"] == "SessionStop Terminate"
    contactors = [r["event"] for r in records if r["event"] in ("InterlockTripped", "ContactorsOpened")]
    assert contactors[-1] == "ContactorsOpened"
    assert records[-1]["event"] == "SessionSummary" and records[-1]["energy_wh"] > 0  # the session's account
    with kept.open("rb") as stream:
        assert sum(1 for _ in read_capture(stream)) > 100  # what fitted, each record whole


def test_cli_a_trace_reader_that_leaves_early_ends_the_run_quietly() -> None:
    """``--trace - | head -c``: the pcap's reader is gone, which is no error of the machine's (exit 0)."""
    run = subprocess.Popen([sys.executable, "-m", "v2gtool", "session", "run", "--sim", "--duration", "5",
                            "--trace", "-"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert run.stdout is not None and run.stderr is not None
    assert len(run.stdout.read(3000)) == 3000
    run.stdout.close()
    err = run.stderr.read().decode()
    assert run.wait(timeout=120) == 0, err
    assert "error" not in err and "Traceback" not in err  # people's lines go to stderr: only those
