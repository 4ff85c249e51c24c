"""The pcap writer of live captures: its errors are one line, and it never leaks the file it opened."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from v2gtool.net.pcapwriter import LINKTYPE_ETHERNET, PcapWriteError, PcapWriter


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full to fail a write with ENOSPC")
def test_a_header_that_cannot_be_written_closes_the_file_it_opened(monkeypatch: pytest.MonkeyPatch) -> None:
    opened: list[Any] = []
    real_open = Path.open

    def tracked_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        handle = real_open(self, *args, **kwargs)
        opened.append(handle)
        return handle

    monkeypatch.setattr(Path, "open", tracked_open)
    with pytest.raises(PcapWriteError, match=r"^cannot write pcap file /dev/full: No space left on device$"):
        PcapWriter("/dev/full", LINKTYPE_ETHERNET)
    assert len(opened) == 1 and opened[0].closed


def test_a_stream_given_is_left_to_its_owner_when_the_header_fails() -> None:
    class Full(io.BytesIO):
        def write(self, data: Any) -> int:
            raise OSError(28, "No space left on device")

    stream = Full()
    with pytest.raises(PcapWriteError, match="No space left on device"):
        PcapWriter(stream)
    assert not stream.closed


def test_every_packet_is_readable_before_the_writer_closes(tmp_path: Path) -> None:
    path = tmp_path / "live.pcap"
    writer = PcapWriter(path)
    writer.write(1.5, b"\xff" * 60)
    assert path.stat().st_size == 24 + 16 + 60  # flushed to the OS: another reader sees it now
    writer.close()
