"""A minimal classic-pcap writer that flushes every packet to the operating system, so a capture
survives a crash of the tool or ``Ctrl-C`` and can be opened in Wireshark while the tool still runs
(a reader sees what the kernel holds; nothing is fsync'ed, so a power loss may still cut the tail).

Format: the libpcap file format (microsecond timestamps, magic 0xA1B2C3D4, version 2.4), written
in native byte order as libpcap itself does; ``linktype`` is a LINKTYPE_* value from the tcpdump
registry (1 = Ethernet).
"""

from __future__ import annotations

import contextlib
import struct
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

from v2gtool.errors import V2GToolError
from v2gtool.exit_codes import ExitCode

LINKTYPE_ETHERNET = 1
_MAGIC = 0xA1B2C3D4
_SNAPLEN = 262144


class PcapWriteError(V2GToolError):
    """The capture file cannot be created or written: a path that cannot be a file is a usage error."""

    exit_code = ExitCode.USAGE


class PcapWriteFailed(PcapWriteError):
    """A write the file system refused (a full disk, an I/O error): the machine is not ready (README
    "Exit status" 4), the file up to the last whole write is kept."""

    exit_code = ExitCode.ENVIRONMENT


class PcapWriter:
    """Write frames to a pcap file: ``with PcapWriter(path, LINKTYPE_ETHERNET) as w: w.write(t, frame)``.

    ``ts`` is wall-clock seconds since the epoch (float), as Wireshark displays them.
    """

    def __init__(self, target: str | Path | BinaryIO, linktype: int = LINKTYPE_ETHERNET) -> None:
        """*target*: a file path (created) or an open binary stream (e.g. stdout, BytesIO)."""
        if isinstance(target, str | Path):
            self.path = str(target)
            try:
                self._fh: BinaryIO = Path(target).open("wb")  # noqa: SIM115 (closed by close())
            except OSError as exc:
                raise PcapWriteError(f"cannot create pcap file {target}: {exc.strerror}") from exc
        else:
            self.path = getattr(target, "name", "<stream>")
            self._fh = target
        self.count = 0
        try:
            self._write(struct.pack("=IHHiIII", _MAGIC, 2, 4, 0, 0, _SNAPLEN, linktype))
        except PcapWriteError:
            if isinstance(target, str | Path):  # the file this writer opened: nobody else can close it
                with contextlib.suppress(OSError):  # the header still buffered fails again
                    self._fh.close()
            raise

    def _write(self, data: bytes) -> None:
        """Write *data* and flush it to the operating system; a failure (e.g. ENOSPC) is a one-line
        :class:`PcapWriteError`."""
        try:
            self._fh.write(data)
            self._fh.flush()
        except OSError as exc:
            raise PcapWriteFailed(f"cannot write pcap file {self.path}: {exc.strerror}") from exc

    def write(self, ts: float, frame: bytes, original_length: int | None = None) -> None:
        """Append one packet with timestamp *ts* and flush it to the operating system; *original_length*
        records a packet that was cut short (a truncated capture)."""
        seconds = int(ts)
        micros = min(round((ts - seconds) * 1_000_000), 999_999)
        data = frame[:_SNAPLEN]
        length = len(frame) if original_length is None else original_length
        self._write(struct.pack("=IIII", seconds, micros, len(data), length) + data)
        self.count += 1

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> PcapWriter:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
