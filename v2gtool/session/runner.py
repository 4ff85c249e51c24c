"""``session run --sim``: both roles of an ISO 15118-20 session over real TCP on loopback.

The SECC and the EVCC are the sans-IO engines of :mod:`v2gtool.iso20`; here they get sockets and a
clock. Both sides share one simulated plant (:mod:`v2gtool.hw.sim`): the SECC's station and the
EV's battery are the two ends of the same DC cable. Simulated time advances by the EVCC's cadence
(its pace between requests); ``speed`` says how much faster than real time that runs (None: as
fast as possible). Message timeouts are enforced on the transport's wall clock, as on a charger.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from v2gtool import v2gtp
from v2gtool.hw.backends import sim_station
from v2gtool.hw.isolation import Edition, IsolationProfile
from v2gtool.hw.station import StationConfig
from v2gtool.iso20.evcc import Evcc, EvccConfig
from v2gtool.iso20.secc import Secc, SeccConfig
from v2gtool.iso20.timeouts import Timeouts
from v2gtool.session.events import Event
from v2gtool.session.plant import SimVehiclePort, StationCharger
from v2gtool.session.scenario import SessionScenario

Listener = Callable[[Event], None]


@dataclass
class SessionResult:
    """How a session ended, what moved and what was said."""

    ok: bool
    reason: str
    secc_reason: str
    requests: list[str] = field(default_factory=list)
    energy_wh: float = 0.0
    soc_start: float = 0.0
    soc_end: float = 0.0
    duration: float = 0.0
    events: list[Event] = field(default_factory=list)


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


async def run_sim(
    scenario: SessionScenario,
    speed: float | None = None,
    listener: Listener | None = None,
    timeouts: Timeouts | None = None,
) -> SessionResult:
    """Run one whole session, EVCC against SECC, on the ``sim`` plant; never raises for a failed
    session (the result says why), only for a broken set-up."""
    events: list[Event] = []

    def emit(event: Event) -> None:
        events.append(event)
        if listener is not None:
            listener(event)

    setup = sim_station(
        StationConfig(IsolationProfile(Edition.IEC_61851_23_2023, scenario.charger.max_voltage)),
        scenario.plant,
        listener=emit,
    )
    charger = StationCharger(setup, scenario.charger)
    vehicle = SimVehiclePort(setup, scenario.vehicle)
    setup.station.run(0.01)  # the pilot settles in state C
    grid_request = None
    if scenario.control_mode.name == "DYNAMIC":
        grid = scenario.power if scenario.power is not None else scenario.vehicle.max_charge_power
        grid_request = -grid if scenario.direction.value == "discharge" else grid
    timeouts = timeouts or Timeouts()
    secc = Secc(
        SeccConfig(bpt=scenario.bpt, timeouts=timeouts, grid_power_request=grid_request), charger, charger.now()
    )
    evcc = Evcc(
        EvccConfig(
            service=scenario.service,
            control_mode=scenario.control_mode,
            direction=scenario.direction,
            target_soc=scenario.target_soc,
            min_soc=scenario.min_soc,
            power=scenario.power,
            duration=scenario.duration,
            timeouts=timeouts,
        ),
        vehicle,
    )
    soc_start = vehicle.soc_percent()
    started = charger.now()
    requests: list[str] = []

    def deliver(outputs: list[bytes | Event]) -> list[bytes]:
        frames = []
        for item in outputs:
            if isinstance(item, bytes):
                frames.append(item)
            else:
                emit(item)
        for event in charger.events:
            emit(event)
        charger.events.clear()
        return frames

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stream = FrameStream(reader)
        try:
            while not secc.ended:
                try:
                    frame = await asyncio.wait_for(stream.next(), timeout=timeouts.sequence)
                except TimeoutError:
                    deliver(secc.on_timeout(secc.deadline))
                    break
                if frame is None:
                    break
                for data in deliver(secc.receive(frame, charger.now())):
                    writer.write(data)
                await writer.drain()
        finally:
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    stream = FrameStream(reader)
    try:
        outputs = evcc.start(charger.now())
        while True:
            for data in deliver(outputs):
                if evcc.pace > 0:
                    charger.advance(charger.now() + evcc.pace)
                    if speed:
                        await asyncio.sleep(evcc.pace / speed)
                assert evcc.pending is not None
                requests.append(evcc.pending)
                writer.write(data)
                await writer.drain()
            if evcc.ended:
                break
            wait = timeouts.for_request(evcc.pending or "")
            try:
                frame = await asyncio.wait_for(stream.next(), timeout=wait)
            except TimeoutError:
                deliver(evcc.on_timeout(evcc.deadline or charger.now()))
                break
            if frame is None:
                deliver(evcc.on_timeout(evcc.deadline or charger.now()))
                break
            outputs = evcc.receive(frame, charger.now())
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
        server.close()
        await server.wait_closed()
    charger.stop()
    setup.station.run(0.2)  # contactors open, output bleeds down
    return SessionResult(
        ok=evcc.ok and not (secc.ended and "FAILED" in secc.end_reason),
        reason=evcc.end_reason,
        secc_reason=secc.end_reason,
        requests=requests,
        energy_wh=evcc.energy_wh,
        soc_start=soc_start,
        soc_end=vehicle.soc_percent(),
        duration=charger.now() - started,
        events=events,
    )
