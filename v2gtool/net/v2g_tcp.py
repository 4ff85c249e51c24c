"""V2GTP over TCP (plain or TLS 1.3) for the ISO 15118-20 engines: the SECC server and the EVCC client.

The engines are sans-IO (:mod:`v2gtool.iso20`); this module gives them sockets, a clock and the
per-message timeouts. On a charging cable the SECC listens on its PLC interface's IPv6 link-local
address at the TCP port it announces by SDP (ISO 15118-20 clause 7.6 / 7.8), and serves one session
after another until it is stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import ssl
from asyncio import sslproto
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


async def _receive_by(
    stream: FrameStream, deadline: float, clock: Callable[[], float], rate: float
) -> v2gtp.V2GTPFrame | None:
    """The next frame of *stream* (None: the peer closed the connection), or :class:`TimeoutError` once
    *clock* has reached *deadline*: the SECC's V2G_SECC_Sequence_Timeout, which bounds the EV's pause
    between two requests, on the clock that pause is spent on.

    That clock need not run at the wall clock's pace: ``serve --speed N`` runs it N times as fast
    (*rate*: clock seconds per wall second), and a simulation's moves in steps (``session run --sim
    --speed``: the EV's pace advances the plant, then sleeps in wall time). So the wait is the clock's
    remaining seconds in wall seconds, and a wait that ends before the clock reached *deadline* goes
    on: the timeout is never declared early on the clock."""
    read = asyncio.ensure_future(stream.next())
    try:
        while not read.done():
            remaining = deadline - clock()
            if remaining <= 0:
                raise TimeoutError
            await asyncio.wait({read}, timeout=remaining / rate)
        return read.result()
    finally:
        read.cancel()


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


@dataclass(frozen=True, kw_only=True)
class TlsHandshakeFailed(TransportFailed):
    """A peer's TLS handshake failed before any session: *error* names the peer and OpenSSL's reason."""

    peer: str


_OPENSSL_REASON = re.compile(r"^\[\w+: \w+\] (.+?) \(_ssl\.c:\d+\)$")


def handshake_error(exc: BaseException | type[BaseException]) -> str:
    """Why a TLS handshake failed, in OpenSSL's words ("unsupported protocol", "peer did not return a
    certificate") or the connection's."""
    if isinstance(exc, type):  # asyncio passes the class when the peer closes mid-handshake
        exc = exc()
    if isinstance(exc, ConnectionResetError | EOFError) and not str(exc):
        return "the peer closed the connection during the handshake"
    text = str(exc)
    match = _OPENSSL_REASON.match(text)
    return match.group(1) if match else text or type(exc).__name__


class _ServerTLS(sslproto.SSLProtocol):
    """asyncio's server side of TLS, reporting a failed handshake and sending its alert.

    asyncio drops a failed handshake silently (a debug log at most) and closes the connection without
    writing the alert OpenSSL left in its outgoing buffer (python/cpython#98078), so the peer saw a bare
    FIN where RFC 8446 clause 6.2 requires a fatal alert (protocol_version, certificate_required, ...).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, app: asyncio.BaseProtocol, context: ssl.SSLContext,
                 timeout: float, failed: Callable[[str, str], None]) -> None:
        waiter = loop.create_future()
        super().__init__(loop, app, context, waiter, server_side=True, ssl_handshake_timeout=math.ceil(timeout))
        self._peer = "?"
        waiter.add_done_callback(
            lambda done: None if done.cancelled() or done.exception() is None
            else failed(self._peer, handshake_error(done.exception() or ConnectionError())))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        peer = transport.get_extra_info("peername")
        if peer:
            self._peer = f"[{peer[0]}]:{peer[1]}" if ":" in str(peer[0]) else f"{peer[0]}:{peer[1]}"
        super().connection_made(transport)

    def _on_handshake_complete(self, handshake_exc: BaseException | None) -> None:
        if handshake_exc is not None and self._transport is not None:
            self._process_outgoing()  # type: ignore[attr-defined]  # (typeshed lacks it) the alert, before the close
        super()._on_handshake_complete(handshake_exc)


async def start_server(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
    host: str,
    port: int,
    context: ssl.SSLContext | None,
    *,
    handshake_timeout: float,
    handshake_failed: Callable[[str, str], None],
) -> asyncio.Server:
    """``asyncio.start_server(handle, host, port, ssl=context)``, except that a TLS handshake that fails
    (or takes longer than *handshake_timeout* seconds) sends its alert and is told to
    *handshake_failed* (peer, reason) instead of vanishing."""
    loop = asyncio.get_running_loop()

    def connection() -> asyncio.BaseProtocol:
        streams = asyncio.StreamReaderProtocol(asyncio.StreamReader(), handle)
        return streams if context is None else _ServerTLS(loop, streams, context, handshake_timeout, handshake_failed)

    return await loop.create_server(connection, host=host, port=port)


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
    rate: float = 1.0,
) -> Outcome:
    """Run one SECC session on an accepted connection until it ends or the peer goes away. Without a
    request before :attr:`Secc.deadline` (communication setup, then V2G_SECC_Sequence_Timeout) on
    *clock*, which runs *rate* times as fast as the wall clock (:func:`_receive_by`), the SECC ends the
    session; when the connection ends first, the charger is stopped."""
    stream = FrameStream(reader)
    watch = _Watch(listener)
    try:
        while not secc.ended:
            try:
                frame = await _receive_by(stream, secc.deadline, clock, rate)
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
    """Drive one EVCC session over a connected stream. Before a request (and its events) the EV waits
    its pace (the seconds :attr:`Evcc.pace` asks for); *pace* replaces that wait, e.g. to advance a
    simulated plant.
    A response that does not arrive within the request's message timeout ends the session
    (:meth:`Evcc.on_timeout`); so does a failed or closed connection, as no response can come then."""
    stream = FrameStream(reader)
    watch = _Watch(listener)
    try:
        outputs = evcc.start(clock())
        while True:
            if evcc.pace > 0 and any(isinstance(item, bytes) for item in outputs):
                # What happened until now is reported, then the EV waits, then its request goes with
                # its events (its MessageSent carries the time it is sent): what the plant reports
                # while the EV waits comes in between, so the events stay in time order.
                now = clock()
                due = next((i for i, item in enumerate(outputs) if isinstance(item, bytes) or item.t > now),
                           len(outputs))
                _deliver(outputs[:due], watch)
                outputs = outputs[due:]
                await (pace or asyncio.sleep)(evcc.pace)
            for data in _deliver(outputs, watch):
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


