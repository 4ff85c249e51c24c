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

from v2gtool import v2gtp
from v2gtool.iso20.evcc import Evcc
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


async def serve_connection(
    secc: Secc,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    clock: Callable[[], float],
    listener: Listener | None = None,
    tap: Tap | None = None,
) -> None:
    """Run one SECC session on an accepted connection until it ends or the peer goes away."""
    stream = FrameStream(reader)
    try:
        while not secc.ended:
            try:
                frame = await asyncio.wait_for(stream.next(), timeout=max(0.0, secc.deadline - clock()))
            except TimeoutError:
                _deliver(secc.on_timeout(clock()), listener)
                break
            except (v2gtp.V2GTPError, ConnectionError, ssl.SSLError) as exc:
                secc.charger.stop()
                if listener is not None:
                    listener(_transport_failed(clock(), "SECC", exc))
                break
            if frame is None:
                secc.charger.stop()
                break
            try:
                for data in _deliver(secc.receive(frame, clock()), listener):
                    if tap is not None:
                        tap(data)
                    writer.write(data)
                await writer.drain()
            except (ConnectionError, ssl.SSLError) as exc:
                secc.charger.stop()
                if listener is not None:
                    listener(_transport_failed(clock(), "SECC", reader.exception() or exc))
                break
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
) -> None:
    """Drive one EVCC session over a connected stream. Before a request the EV waits its pace (the
    seconds :attr:`Evcc.pace` asks for); *pace* replaces that wait, e.g. to advance a simulated plant."""
    stream = FrameStream(reader)
    try:
        outputs = evcc.start(clock())
        while True:
            for data in _deliver(outputs, listener):
                if evcc.pace > 0:
                    await (pace or asyncio.sleep)(evcc.pace)
                if tap is not None:
                    tap(data)
                try:
                    writer.write(data)
                    await writer.drain()
                except (ConnectionError, ssl.SSLError) as exc:
                    # The request went into a dead connection: no response can come. Under TLS 1.3 this is
                    # how a refused client certificate shows (the SECC verifies it after the EVCC's side of
                    # the handshake is complete); the reader holds the peer's alert.
                    evcc.sent(clock())
                    _lost(evcc, reader.exception() or exc, listener, clock())
                    return
                evcc.sent(clock())
            if evcc.ended:
                return
            deadline = evcc.deadline if evcc.deadline is not None else clock()
            try:
                frame = await asyncio.wait_for(stream.next(), timeout=max(0.0, deadline - clock()))
            except TimeoutError:
                _deliver(evcc.on_timeout(deadline), listener)
                return
            except (v2gtp.V2GTPError, ConnectionError, ssl.SSLError) as exc:
                _lost(evcc, exc, listener, clock())
                return
            if frame is None:
                _deliver(evcc.on_timeout(deadline), listener)
                return
            outputs = evcc.receive(frame, clock())
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


@dataclass(frozen=True, kw_only=True)
class TransportFailed(Event):
    role: str
    error: str


def _transport_failed(now: float, role: str, exc: BaseException) -> TransportFailed:
    return TransportFailed(t=now, role=role, error=f"{type(exc).__name__}: {exc}")


def _lost(evcc: Evcc, exc: BaseException, listener: Listener | None, now: float) -> None:
    """The connection failed while a request was pending: report why, then end the EVCC session as its
    message timeout would (no response can arrive on a dead connection)."""
    if listener is not None:
        listener(_transport_failed(now, "EVCC", exc))
    if evcc.deadline is not None:
        _deliver(evcc.on_timeout(evcc.deadline), listener)
