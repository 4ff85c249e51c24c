"""pcap/pcapng reading: formats, timestamps, chunked feeding, truncation and --follow."""

from __future__ import annotations

import errno
import io
import logging
import os
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2gtool.pcap import reader
from v2gtool.pcap.reader import CaptureError, CaptureParser, CaptureReadError, read_capture
from v2gtool.pcap.synth import PcapWriter


def _pcap(packets: list[tuple[float, bytes]]) -> bytes:
    out = io.BytesIO()
    writer = PcapWriter(out)
    for t, data in packets:
        writer.write(t, data)
    return out.getvalue()


def _block(block_type: int, body: bytes, endian: str = "<") -> bytes:
    body += bytes(-len(body) % 4)
    length = 12 + len(body)
    return struct.pack(endian + "II", block_type, length) + body + struct.pack(endian + "I", length)


def _pcapng(endian: str = "<", tsresol: int | None = None) -> bytes:
    shb = _block(0x0A0D0D0A, struct.pack(endian + "IHHq", 0x1A2B3C4D, 1, 0, -1), endian)
    options = b""
    if tsresol is not None:
        options = struct.pack(endian + "HH", 9, 1) + bytes([tsresol, 0, 0, 0]) + struct.pack(endian + "HH", 0, 0)
    idb0 = _block(1, struct.pack(endian + "HHI", 1, 0, 65535) + options, endian)
    idb1 = _block(1, struct.pack(endian + "HHI", 113, 0, 65535), endian)
    ticks = 1_700_000_000_123_456 if tsresol is None else 1_700_000_000_123_456_789
    epb0 = _block(6, struct.pack(endian + "IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, 5, 60) + b"hello", endian)
    epb1 = _block(6, struct.pack(endian + "IIIII", 1, 0, 7, 3, 3) + b"abc", endian)
    spb = _block(3, struct.pack(endian + "I", 4) + b"spb!", endian)
    nrb = _block(4, b"\x00\x00\x00\x00", endian)
    return shb + idb0 + idb1 + epb0 + nrb + epb1 + spb


def test_pcap_packets_numbered_and_timed() -> None:
    data = _pcap([(1.5, b"\x01" * 20), (2.25, b"\x02" * 30)])
    packets = list(read_capture(io.BytesIO(data)))
    assert [p.number for p in packets] == [1, 2]
    assert [p.timestamp for p in packets] == [1.5, 2.25]
    assert packets[1].data == b"\x02" * 30 and packets[0].linktype == 1


@pytest.mark.parametrize("endian", ["<", ">"])
def test_pcapng_blocks_interfaces_and_byte_orders(endian: str) -> None:
    packets = list(read_capture(io.BytesIO(_pcapng(endian))))
    assert [(p.number, p.linktype, p.data) for p in packets] == [(1, 1, b"hello"), (2, 113, b"abc"), (3, 1, b"spb!")]
    assert packets[0].timestamp == pytest.approx(1_700_000_000.123456)
    assert packets[0].original_length == 60


def test_pcapng_if_tsresol_nanoseconds() -> None:
    packets = list(read_capture(io.BytesIO(_pcapng(tsresol=9))))
    assert packets[0].timestamp == pytest.approx(1_700_000_000.123456789)


def test_big_endian_nanosecond_pcap() -> None:
    header = struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 1)
    record = struct.pack(">IIII", 10, 500_000_000, 2, 2) + b"xy"
    packets = list(read_capture(io.BytesIO(header + record)))
    assert packets[0].timestamp == 10.5 and packets[0].data == b"xy"


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(1, 64), min_size=1, max_size=40))
def test_any_chunking_yields_the_same_packets(sizes: list[int]) -> None:
    data = _pcapng() + b""
    whole = CaptureParser().feed(data)
    parser = CaptureParser()
    got = []
    pos = 0
    for size in sizes * (len(data) // sum(sizes) + 1):
        got.extend(parser.feed(data[pos:pos + size]))
        pos += size
        if pos >= len(data):
            break
    parser.close()
    assert got == whole


def test_truncated_last_record_is_named() -> None:
    data = _pcap([(1.0, b"a" * 40), (2.0, b"b" * 40)])[:-10]
    with pytest.raises(CaptureError, match=r"truncated .* after packet 1"):
        list(read_capture(io.BytesIO(data)))


def test_not_a_capture() -> None:
    with pytest.raises(CaptureError, match="not a pcap or pcapng capture: file starts with 7b226576"):
        list(read_capture(io.BytesIO(b'{"event": 1}')))
    with pytest.raises(CaptureError, match="empty"):
        list(read_capture(io.BytesIO(b"")))


@pytest.mark.parametrize("block_type", [1, 2, 3, 6])
def test_pcapng_block_too_short_for_its_fields(block_type: int) -> None:
    data = _pcapng()[:28] + _block(1, struct.pack("<HHI", 1, 0, 0)) + _block(block_type, b"")
    with pytest.raises(CaptureError, match=f"block type {block_type:#x} at byte 48: body of 0 bytes"):
        list(read_capture(io.BytesIO(data)))


def test_follow_reads_what_is_appended() -> None:
    """--follow: at the end, wait (virtual sleep) and read what the writer appended meanwhile."""
    first = _pcap([(1.0, b"one")])
    stream = io.BytesIO(first)
    pending = [struct.pack("<IIII", 2, 0, 3, 3) + b"two", struct.pack("<IIII", 3, 0, 5, 5) + b"three"]
    polls: list[float] = []

    def sleep(seconds: float) -> None:
        polls.append(seconds)
        if pending:
            position = stream.tell()
            stream.seek(0, io.SEEK_END)
            stream.write(pending.pop(0))
            stream.seek(position)

    packets = read_capture(stream, follow=True, sleep=sleep, keep_following=lambda: len(polls) < 4)
    assert [p.data for p in packets] == [b"one", b"two", b"three"]
    assert polls == [0.2] * 4


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_only_capture_errors(data: bytes) -> None:
    parser = CaptureParser()
    try:
        parser.feed(data)
        parser.close()
    except CaptureError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_after_valid_header(data: bytes) -> None:
    parser = CaptureParser()
    try:
        parser.feed(_pcapng()[:28] + data)
        parser.close()
    except CaptureError:
        pass


def _shb_idb() -> bytes:
    return _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)) + _block(1, struct.pack("<HHI", 1, 0, 65535))


def _epb(tick: int, data: bytes) -> bytes:
    return _block(6, struct.pack("<IIIII", 0, 0, tick, len(data), len(data)) + data)


def test_custom_and_journal_blocks_take_frame_numbers_as_in_tshark() -> None:
    """tshark numbers a Custom Block (0x00000BAD, 0x40000BAD) and a systemd Journal Export Block as frames
    (checked with tshark 4 on a capture built like this one); the packets after them keep tshark's numbers."""
    custom = struct.pack("<I", 32473) + b"vendor data"
    data = (_shb_idb() + _epb(1, b"one") + _block(0x00000BAD, custom) + _epb(2, b"two")
            + _block(0x40000BAD, custom) + _block(9, b"MESSAGE=x\n") + _block(4, bytes(4)) + _epb(3, b"three"))
    parser = CaptureParser()
    assert [(p.number, p.data) for p in parser.feed(data)] == [(1, b"one"), (3, b"two"), (6, b"three")]


def test_decryption_secrets_block_gives_its_tls_key_log_before_the_next_packet() -> None:
    """pcapng Decryption Secrets Block (type 0x0A) of secrets type TLSK: NSS key-log lines; others are ignored."""
    lines = "CLIENT_RANDOM " + "00" * 32 + " " + "11" * 48 + "\n"
    seen: list[tuple[str, int]] = []
    parser = CaptureParser(tls_keylog=lambda text: seen.append((text, parser.packets_read)))
    tlsk = _block(0x0A, struct.pack("<II", 0x544C534B, len(lines)) + lines.encode())
    ssh = _block(0x0A, struct.pack("<II", 0x5353484B, 4) + b"ssh!")
    packets = parser.feed(_shb_idb() + _epb(1, b"a") + ssh + tlsk + _epb(2, b"b"))
    assert seen == [(lines, 1)] and [p.number for p in packets] == [1, 2]


def _follow_file(path: Path, rewrite: Callable[[], None], polls: int = 3) -> list[bytes]:
    """Follow *path*; at the first poll at its end, *rewrite* it (a second `session run --trace`)."""
    done: list[float] = []

    def sleep(seconds: float) -> None:
        if not done:
            rewrite()
        done.append(seconds)

    with path.open("rb") as stream:
        packets = read_capture(stream, follow=True, sleep=sleep, keep_following=lambda: len(done) < polls)
        return [p.data for p in packets]


OLD = [(1.0, b"one"), (2.0, b"two"), (3.0, b"three")]


@pytest.mark.parametrize(
    ("new", "how"),
    [
        ([(9.0, b"new")], "was truncated"),  # shorter than what was read
        ([(9.0, bytes(40)), (10.0, b"more"), (11.0, b"and more")], "was rewritten"),  # past the read position
    ],
)
def test_follow_reads_a_capture_written_over_the_file_from_its_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, new: list[tuple[float, bytes]], how: str
) -> None:
    path = tmp_path / "trace.pcap"
    path.write_bytes(_pcap(OLD))
    inode = path.stat().st_ino

    def rewrite() -> None:
        with path.open("r+b") as f:  # in place, as PcapWriter's "wb" does: the same inode
            f.truncate(0)
            f.write(_pcap(new))
        assert path.stat().st_ino == inode

    with caplog.at_level(logging.WARNING, "v2gtool.pcap.reader"):
        data = _follow_file(path, rewrite)
    assert data == [d for _, d in OLD] + [d for _, d in new]
    assert caplog.messages == [f"{path} {how}: decoding it again from its start"]


def test_follow_reads_the_new_file_that_replaced_the_path(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path, new = tmp_path / "trace.pcap", tmp_path / "next.pcap"
    path.write_bytes(_pcap(OLD))
    new.write_bytes(_pcap([(9.0, b"new")]))
    with caplog.at_level(logging.WARNING, "v2gtool.pcap.reader"):
        data = _follow_file(path, lambda: os.replace(new, path))
    assert data == [b"one", b"two", b"three", b"new"]
    assert caplog.messages == [f"{path} was replaced: decoding it again from its start"]


def test_follow_a_file_rewritten_while_it_is_being_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    """The rewrite lands between two reads: the bytes after the old position are the middle of the new
    capture's first packet (all 0xff: an implausible length), which is a new file, not damage."""
    monkeypatch.setattr(reader, "CHUNK_SIZE", 24 + 19)  # the file header and the first record
    path = tmp_path / "trace.pcap"
    path.write_bytes(_pcap(OLD))
    new = [(9.0, b"\xff" * 200)]
    seen: list[bytes] = []
    with caplog.at_level(logging.WARNING, "v2gtool.pcap.reader"), path.open("rb") as stream:
        for packet in read_capture(stream, follow=True, sleep=lambda _: None, keep_following=lambda: len(seen) < 2):
            seen.append(packet.data)
            if len(seen) == 1:
                path.write_bytes(_pcap(new))
    assert seen == [b"one", b"\xff" * 200]
    assert caplog.messages == [f"{path} was rewritten: decoding it again from its start"]


def test_follow_on_a_capture_that_is_damaged_in_place_still_reports_it(tmp_path: Path) -> None:
    path = tmp_path / "trace.pcap"
    path.write_bytes(_pcap(OLD) + struct.pack("<IIII", 4, 0, 0xFFFFFFFF, 3))
    with pytest.raises(CaptureError, match="captured length 4294967295 is implausible"):
        _follow_file(path, lambda: None)


class _FailingStream(io.RawIOBase):
    name = "/dev/broken"

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        raise OSError(errno.EIO, os.strerror(errno.EIO))


@pytest.mark.parametrize("follow", [False, True])
def test_a_read_error_is_one_line_naming_the_file(follow: bool) -> None:
    with pytest.raises(CaptureReadError) as info:
        list(read_capture(_FailingStream(), follow=follow))  # type: ignore[arg-type]
    assert str(info.value) == "cannot read /dev/broken: Input/output error" and info.value.exit_code == 2
