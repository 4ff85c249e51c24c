"""V2GTP over TCP (plain or TLS 1.3) for the ISO 15118-20 engines: the SECC server and the EVCC client.

The engines are sans-IO (:mod:`v2gtool.iso20`); this module gives them sockets, a clock and the
per-message timeouts. On a charging cable the SECC listens on its PLC interface's IPv6 link-local
address at the TCP port it announces by SDP (ISO 15118-20 clause 7.6 / 7.8), and serves one session
after another until it is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

from v2gtool import v2gtp
from v2gtool.iso20.evcc import Evcc
from v2gtool.iso20.events import SessionEnded
from v2gtool.iso20.secc import Secc
from v2gtool.session.events import Event

Listener = Callable[[Event], None]


class FrameStream:
    """V2GTP frames from a stream reader, reassembled across TCP segments."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader
        self._frames = v2gtp.FrameReader()
        self._queue: deque[v2gtp.V2GTPFrame] = deque()

    async def next(self) -> v2gtp.V2GTPFrame | None:
        """The next frame, or None when the peer closed the connection."""
        while not self._queue:
            data = await self._reader.read(65536)
            if not data:
                return None
            self._queue.extend(self._frames.feed(data))
        return self._queue.popleft()


def _deliver(outputs: list[bytes | Event], listener: Listener | None) -> list[bytes]:
    frames = []
    for item in outputs:
        if isinstance(item, bytes):
            frames.append(item)
        elif listener is not None:
            listener(item)
    return frames


#: Sees every frame a side sends (for a trace).
Tap = Callable[[bytes], None]


class Ending(Enum):
    """What ended a connection's session, as the transport saw it."""

    ENGINE = "engine"  # the engine ended it: SessionStop, a FAILED response code, a phase timeout
    TIMEOUT = "timeout"  # the engine's deadline passed with nothing received from the peer
    CLOSED = "closed"  # the peer closed the connection
    FAILED = "failed"  # the connection failed: reset, TLS alert, a bad V2GTP header


@dataclass(frozen=True)
class Outcome:
    """How one connection's session ended: the transport's view and the engine's SessionEnded."""

    ending: Ending
    ended: SessionEnded | None
    error: str = ""  # Ending.FAILED: the exception, "Type: message"
    tls_error: bool = False  # Ending.FAILED by a TLS alert or TLS protocol error

    @property
    def ok(self) -> bool:
        return self.ended is not None and self.ended.ok


@dataclass(frozen=True, kw_only=True)
class TransportFailed(Event):
    """The connection failed under a session (reset, TLS alert, a bad V2GTP header)."""

    role: str
    error: str


class _Watch:
    """Passes events on to the listener and keeps the session's SessionEnded."""

    def __init__(self, listener: Listener | None) -> None:
        self.listener = listener
        self.ended: SessionEnded | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, SessionEnded):
            self.ended = event
        if self.listener is not None:
            self.listener(event)

    def outcome(self, ending: Ending) -> Outcome:
        return Outcome(ending, self.ended)

    def failed(self, role: str, engine: Secc | Evcc, now: float, exc: BaseException) -> Outcome:
        """The connection failed under *engine*: report it, end the session (no message can come) and
        say how it ended."""
        event = TransportFailed(t=now, role=role, error=f"{type(exc).__name__}: {exc}")
        self(event)
        _deliver(engine.abort(now, f"connection failed: {event.error}"), self)
        return Outcome(Ending.FAILED, self.ended, event.error, isinstance(exc, ssl.SSLError))


async def serve_connection(
    secc: Secc,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    clock: Callable[[], float],
    listener: Listener | None = None,
    tap: Tap | None = None,
) -> Outcome:
    """Run one SECC session on an accepted connection until it ends or the peer goes away. Without a
    request before :attr:`Secc.deadline` (communication setup, then V2G_SECC_Sequence_Timeout) the SECC
    ends the session; when the connection ends first, the charger is stopped."""
    stream = FrameStream(reader)
    watch = _Watch(listener)
    try:
        while not secc.ended:
            try:
                frame = await asyncio.wait_for(stream.next(), timeout=max(0.0, secc.deadline - clock()))
            except TimeoutError:
                _deliver(secc.on_timeout(max(clock(), secc.deadline)), watch)
                return watch.outcome(Ending.TIMEOUT)
            except (v2gtp.V2GTPError, ConnectionError, ssl.SSLError) as exc:
                return watch.failed("SECC", secc, clock(), exc)
            if frame is None:
                _deliver(secc.abort(clock(), "the EVCC closed the connection"), watch)
                return watch.outcome(Ending.CLOSED)
            try:
                for data in _deliver(secc.receive(frame, clock()), watch):
                    if tap is not None:
                        tap(data)
                    writer.write(data)
                await writer.drain()
            except (ConnectionError, ssl.SSLError) as exc:
                return watch.failed("SECC", secc, clock(), reader.exception() or exc)
        return watch.outcome(Ending.ENGINE)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


async def run_evcc(
    evcc: Evcc,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    clock: Callable[[], float],
    listener: Listener | None = None,
    pace: Callable[[float], Awaitable[None]] | None = None,
    tap: Tap | None = None,
) -> Outcome:
    """Drive one EVCC session over a connected stream. Before a request the EV waits its pace (the
    seconds :attr:`Evcc.pace` asks for); *pace* replaces that wait, e.g. to advance a simulated plant.
    A response that does not arrive within the request's message timeout ends the session
    (:meth:`Evcc.on_timeout`); so does a failed or closed connection, as no response can come then."""
    stream = FrameStream(reader)
    watch = _Watch(listener)
    try:
        outputs = evcc.start(clock())
        while True:
            for data in _deliver(outputs, watch):
                if evcc.pace > 0:
                    await (pace or asyncio.sleep)(evcc.pace)
                if tap is not None:
                    tap(data)
                try:
                    writer.write(data)
                    await writer.drain()
                except (ConnectionError, ssl.SSLError) as exc:
                    # The request went into a dead connection. Under TLS 1.3 this is how a refused client
                    # certificate shows (the SECC checks it after the EVCC's side of the handshake is
                    # complete); the reader holds the peer's alert, if it sent one.
                    return watch.failed("EVCC", evcc, clock(), reader.exception() or exc)
                evcc.sent(clock())
            if evcc.ended:
                return watch.outcome(Ending.ENGINE)
            deadline = evcc.deadline if evcc.deadline is not None else clock()
            try:
                frame = await asyncio.wait_for(stream.next(), timeout=max(0.0, deadline - clock()))
            except TimeoutError:
                _deliver(evcc.on_timeout(deadline), watch)
                return watch.outcome(Ending.TIMEOUT)
            except (v2gtp.V2GTPError, ConnectionError, ssl.SSLError) as exc:
                return watch.failed("EVCC", evcc, clock(), exc)
            if frame is None:
                _deliver(evcc.abort(clock(), "the SECC closed the connection"), watch)
                return watch.outcome(Ending.CLOSED)
            outputs = evcc.receive(frame, clock())
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


