"""The transports' timeouts run on the engines' clock, not the wall clock: a clock at half speed
(``--speed 0.5``) or one that moves in steps (a simulation, whose EV advances the plant and then
sleeps its pace in wall time) gives the EV all the clock seconds V2G_SECC_Sequence_Timeout allows.

The assertions are about what happened (served or timed out) and, for a timeout, lower bounds on
the clock, which load can only make longer, never about how quickly anything ran.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from tests.iso20.harness import Plant
from tests.iso20.test_power_limits import CHARGER, VEHICLE
from v2gtool.iso20 import messages
from v2gtool.iso20.evcc import Evcc, EvccConfig
from v2gtool.iso20.events import MessageReceived
from v2gtool.iso20.secc import Secc, SeccConfig
from v2gtool.iso20.timeouts import Timeouts
from v2gtool.net.v2g_tcp import Ending, FrameStream, Outcome, serve_connection
from v2gtool.session.events import Event

SEQUENCE_S = 1.0  # V2G_SECC_Sequence_Timeout here, in clock seconds
Clock = Callable[[], float]


async def session(clock: Clock, rate: float, wait: Callable[[], Awaitable[None]] | None) -> tuple[
    Outcome, list[Event], str | None
]:
    """Our SECC (serve_connection on *clock*, *rate*) against an EV that sets up its session, then
    runs *wait* and sends AuthorizationSetupReq (with *wait* None it goes silent); how the SECC's
    session ended, its events and the name of the response to AuthorizationSetupReq (None: none)."""
    plant = Plant(CHARGER, VEHICLE)
    events: list[Event] = []
    outcomes: list[Outcome] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        secc = Secc(SeccConfig(timeouts=Timeouts(sequence=SEQUENCE_S)), plant, clock())
        outcomes.append(await serve_connection(secc, reader, writer, clock, events.append, rate=rate))

    server = await asyncio.start_server(handle, host="::1", port=0)
    try:
        reader, writer = await asyncio.open_connection("::1", server.sockets[0].getsockname()[1])
        stream = FrameStream(reader)
        evcc = Evcc(EvccConfig(), plant.vehicle)
        outputs = evcc.start(0.0)
        for _ in range(2):  # supportedAppProtocolReq, then SessionSetupReq: now the sequence timeout runs
            writer.write(next(o for o in outputs if isinstance(o, bytes)))
            frame = await stream.next()
            assert frame is not None
            outputs = evcc.receive(frame, 0.0)
        answer = None
        if wait is not None:
            await wait()
            writer.write(next(o for o in outputs if isinstance(o, bytes)))  # AuthorizationSetupReq
            frame = await stream.next()
            answer = messages.decode(frame).name if frame is not None else None
        else:
            assert await stream.next() is None  # silent until the SECC closes the connection
        writer.close()
        while not outcomes:  # the SECC ends on the close (or its timeout) and returns
            await asyncio.sleep(0.01)
    finally:
        server.close()
    return outcomes[0], events, answer


def half_speed() -> Clock:
    """A clock at half the wall clock's pace (``--speed 0.5``)."""
    start = time.monotonic()
    return lambda: (time.monotonic() - start) * 0.5


def test_a_request_within_the_sequence_timeout_on_a_half_speed_clock_is_served() -> None:
    # 1.5 wall seconds are 0.75 s on the clock, within its 1 s: waiting 1 s of wall time would have
    # ended the session.
    outcome, _events, answer = asyncio.run(session(half_speed(), 0.5, lambda: asyncio.sleep(1.5)))
    assert answer == "AuthorizationSetupRes"
    assert outcome.ending is Ending.CLOSED  # the EV closed; the SECC never timed out


def test_a_request_after_a_step_of_the_clock_is_served() -> None:
    # A simulation at --speed 0.5: the EV's pace moves the clock 0.8 s ahead at once, then sleeps
    # 1.6 s of wall time; on the clock the request comes 0.8 s after the last, within 1 s.
    now = 0.0

    def clock() -> float:
        return now

    async def pace() -> None:
        nonlocal now
        now += 0.8
        await asyncio.sleep(1.6)

    outcome, _events, answer = asyncio.run(session(clock, 1.0, pace))
    assert answer == "AuthorizationSetupRes"
    assert outcome.ending is Ending.CLOSED


def test_the_sequence_timeout_still_ends_a_silent_session_on_the_clock() -> None:
    clock = half_speed()
    outcome, events, answer = asyncio.run(session(clock, 0.5, None))
    assert answer is None
    assert outcome.ending is Ending.TIMEOUT and outcome.ended is not None
    assert outcome.ended.reason == "V2G_SECC_Sequence_Timeout: no request in state AuthorizationSetup"
    last_request = [e for e in events if isinstance(e, MessageReceived)][-1]
    assert outcome.ended.t - last_request.t >= SEQUENCE_S  # on the clock, never early
