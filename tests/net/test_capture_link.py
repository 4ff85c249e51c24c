"""``capture_link``: what crosses a veth end goes into a pcap, and the capture ends cleanly even on a
link that never goes quiet (its socket and writer are closed only after its thread ended)."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.netns import veth_pair
from v2gtool.net.netns import _packet_socket, capture_link
from v2gtool.net.pcapwriter import PcapWriter
from v2gtool.pcap.reader import read_capture

pytestmark = pytest.mark.netns
# Broadcast from a locally administered address, EtherType 0x88B5 (IEEE 802 local experimental).
FRAME = b"\xff" * 6 + bytes.fromhex("020000000001") + b"\x88\xb5" + b"v2gtool capture test".ljust(46, b".")


def test_a_busy_link_is_captured_and_the_capture_ends_cleanly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    errors: list[BaseException | None] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: errors.append(args.exc_value))
    path = tmp_path / "link.pcap"
    with veth_pair("cap") as link:
        sender = _packet_socket(link.secc_if, link.secc_ns)
        sending = threading.Event()
        sending.set()

        def flood() -> None:  # a frame every 20 ms: never the 200 ms of quiet the capture waits for
            while sending.is_set():
                sender.send(FRAME)
                time.sleep(0.02)

        flooder = threading.Thread(target=flood)
        flooder.start()
        try:
            started = time.monotonic()
            with capture_link(link.ev_if, PcapWriter(path), netns=link.ev_ns):
                time.sleep(0.5)
            took = time.monotonic() - started
            capturing = [t for t in threading.enumerate() if t.name == "v2gtool-capture"]
        finally:
            sending.clear()
            flooder.join()
            sender.close()
    assert not capturing  # its socket and writer were closed after it ended, not under it
    assert not errors, errors
    assert took < 30  # bounded: the drain after the block ends by itself on a busy link
    with path.open("rb") as stream:
        frames = [packet.data for packet in read_capture(stream)]
    ours = [frame for frame in frames if frame[12:14] == b"\x88\xb5"]  # the link's own IPv6 traffic aside
    assert len(ours) >= 10 and all(frame == FRAME for frame in ours)
    if shutil.which("tshark") is not None:  # a second opinion on the file
        tshark = subprocess.run(["tshark", "-r", str(path)], capture_output=True, text=True, timeout=60)
        assert tshark.returncode == 0 and len(tshark.stdout.splitlines()) == len(frames)
