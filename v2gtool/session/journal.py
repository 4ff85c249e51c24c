"""Structured logging to the systemd journal: a listener that sends each event as one record over the
journal's native protocol, used instead of the human lines when the process runs under systemd with
its output connected to the journal.

Detection follows systemd.exec(5), ``$JOURNAL_STREAM``: systemd sets it to ``DEVICE:INODE`` of the
stream it connected to the journal, and a process is to compare that with its own stderr (or stdout)
before upgrading to the native protocol, because a child may have inherited the variable with other
streams. ``$INVOCATION_ID`` alone only says that systemd started the process, not where its output
goes (``StandardOutput=file:...``), so it does not switch the journal on.

The native protocol (systemd's "Native Journal Protocol" documentation, sd_journal_sendv(3)) is one
datagram per record on ``/run/systemd/journal/socket``: ``FIELD=value\\n`` per field, or, for a value
that holds a newline, ``FIELD\\n`` + the value's length as 64-bit little-endian + the value + ``\\n``.
Field names are upper-case letters, digits and underscores, not starting with a digit or an
underscore (those are journald's trusted fields), at most 64 characters.

Each record has MESSAGE (the human line), PRIORITY (syslog level), SYSLOG_IDENTIFIER=v2gtool and
the event's data as ``V2G_*`` fields: ``V2G_EVENT`` its type and one field per JSON key
(``V2G_ROLE``, ``V2G_REASON``, ...), so ``journalctl -t v2gtool V2G_EVENT=SessionEnded`` finds them.
"""

from __future__ import annotations

import json
import os
import re
import socket
import struct
import sys
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from v2gtool.iso20.events import MessageReceived, MessageSent, PowerFlow, SessionEnded
from v2gtool.net.v2g_tcp import TransportFailed
from v2gtool.session.events import Event
from v2gtool.session.render import describe

JOURNAL_SOCKET = Path("/run/systemd/journal/socket")
IDENTIFIER = "v2gtool"
SEND_TIMEOUT = 0.01  # s; a fraction of the shortest -20 message timeout (0.5 s, DC_ChargeLoopReq)
FIELD_PREFIX = "V2G_"
_FIELD_NAME = re.compile(r"[A-Z][A-Z0-9_]{0,63}")

# syslog(3) levels
LOG_ERR, LOG_NOTICE, LOG_INFO, LOG_DEBUG = 3, 5, 6, 7


def output_goes_to_journal(environ: Mapping[str, str] = os.environ, streams: Iterable[int] = (2, 1)) -> bool:
    """True when ``$JOURNAL_STREAM`` names the device and inode of one of *streams* (stderr, stdout)."""
    device, _, inode = environ.get("JOURNAL_STREAM", "").partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return False
    for fd in streams:
        try:
            status = os.fstat(fd)
        except OSError:
            continue
        if (status.st_dev, status.st_ino) == (int(device), int(inode)):
            return True
    return False


def encode_record(fields: Iterable[tuple[str, str]]) -> bytes:
    """One native-protocol datagram; a field name that is not valid raises ValueError."""
    out = bytearray()
    for name, value in fields:
        if not _FIELD_NAME.fullmatch(name):
            raise ValueError(f"not a journal field name: {name!r}")
        data = value.encode("utf-8", "surrogateescape")
        if b"\n" in data:
            out += name.encode() + b"\n" + struct.pack("<Q", len(data)) + data + b"\n"
        else:
            out += name.encode() + b"=" + data + b"\n"
    return bytes(out)


def field_name(key: str) -> str:
    """``V2G_`` + *key* in upper case, other characters as ``_``, cut to the journal's 64."""
    return (FIELD_PREFIX + re.sub(r"[^A-Z0-9_]", "_", key.upper()))[:64]


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def priority(event: Event) -> int:
    """A failed session or connection is an error, a completed session a notice; per-message and
    per-loop events are debug (four a second in DC_ChargeLoop); the rest informational."""
    if isinstance(event, SessionEnded):
        return LOG_NOTICE if event.ok else LOG_ERR
    if isinstance(event, TransportFailed):
        return LOG_ERR
    if isinstance(event, MessageSent | MessageReceived | PowerFlow):
        return LOG_DEBUG
    return LOG_INFO


def message(event: Event) -> str:
    """The human line: the one people see live, or the event's type and its scalar fields."""
    line = describe(event)
    if line is not None:
        return line
    record = event.to_json()
    details = " ".join(
        f"{key}={_text(value)}"
        for key, value in record.items()
        if key not in ("event", "t") and value is not None and not isinstance(value, dict | list)
    )
    return f"{event.name} {details}".rstrip()


def record(event: Event) -> list[tuple[str, str]]:
    """The journal fields of *event*."""
    fields = [
        ("MESSAGE", message(event)),
        ("PRIORITY", str(priority(event))),
        ("SYSLOG_IDENTIFIER", IDENTIFIER),
        (field_name("event"), event.name),
    ]
    fields += [
        (field_name(key), _text(value))
        for key, value in event.to_json().items()
        if key != "event" and value is not None
    ]
    return fields


class JournalLog:
    """A listener that sends every event to the journal. A send waits at most :data:`SEND_TIMEOUT` for
    room in journald's queue (a session's timing must not wait for a stuck journald); a record the
    journal does not take (queue still full, journald restarted, the datagram too large) goes to
    *fallback* as a human line instead of being lost. ``with journal_log() as log:`` (or
    :meth:`close`) closes its socket; a record sent after that goes to *fallback*."""

    def __init__(self, sock: socket.socket, fallback: Callable[[str], None]) -> None:
        self._sock = sock
        self._fallback = fallback

    def __call__(self, event: Event) -> None:
        try:
            self._sock.send(encode_record(record(event)))
        except OSError:
            self._fallback(message(event))

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> JournalLog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _to_stderr(line: str) -> None:
    print(f"{IDENTIFIER}: {line}", file=sys.stderr, flush=True)


def journal_log(
    environ: Mapping[str, str] = os.environ,
    socket_path: Path | None = None,
    streams: Iterable[int] = (2, 1),
    fallback: Callable[[str], None] = _to_stderr,
) -> JournalLog | None:
    """The journal listener when this process's output is connected to the journal and the journal's
    socket (default :data:`JOURNAL_SOCKET`) accepts it; None otherwise, and the caller keeps its
    human output. The caller closes it (a context manager)."""
    if not output_goes_to_journal(environ, streams):
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.connect(str(socket_path or JOURNAL_SOCKET))
    except OSError:
        sock.close()
        return None
    sock.settimeout(SEND_TIMEOUT)
    return JournalLog(sock, fallback)
