"""An in-process simulated charging cable: SLAC hosts, each behind a :class:`SimModem`, on one
powerline segment, run on a virtual clock (no root, no sockets, deterministic).

This is what ``--link sim`` runs, and what tests and a chained session use to exercise both roles
end to end. A third host on the same segment is an adjacent charger whose cable couples (cross-
talk): it hears the EV's broadcasts and answers like the EV's own EVSE, only with the attenuation
of its own :class:`~v2gtool.slac.modem_sim.AttenuationModel`.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum

from v2gtool.session.events import Event
from v2gtool.slac import mme
from v2gtool.slac.events import BcToggleRequest
from v2gtool.slac.evse import EvseSlac
from v2gtool.slac.machine import SlacMachine, SlacResult
from v2gtool.slac.modem_sim import SimModem


class Hop(Enum):
    HOST_TO_MODEM = "host->modem"
    LINE = "line"
    MODEM_TO_HOST = "modem->host"
    #: A B-C-B toggle of the EV's S2, seen by the EVSE on the same plug (control pilot wire).
    CONTROL_PILOT = "control pilot"


@dataclass
class Station:
    """One host (a SLAC machine) and its modem on the cable. Stations with the same ``plug``
    share a control pilot: an EV and the EVSE it is plugged into."""

    machine: SlacMachine
    modem: SimModem
    plug: int | None = None


#: Observer of every frame a host sends (``sent=True``) or receives: ``(station, t, frame, sent)``.
FrameObserver = Callable[[int, float, bytes, bool], None]
EventObserver = Callable[[int, Event], None]


class SimCable:
    """Stations on one segment. ``host_latency``: host <-> modem (SPI) per frame;
    ``line_latency``: modem <-> modem over the powerline."""

    def __init__(self, host_latency: float = 0.0005, line_latency: float = 0.002) -> None:
        self.host_latency = host_latency
        self.line_latency = line_latency
        self.stations: list[Station] = []
        self._modems: list[SimModem] = []
        self.now = 0.0
        self._queue: list[tuple[float, int, Hop, int, bytes]] = []
        self._seq = itertools.count()

    def add(self, machine: SlacMachine, modem: SimModem, plug: int | None = None) -> int:
        """Put a host and its modem on the cable; the modems see each other's keys."""
        self.stations.append(Station(machine, modem, plug))
        modem.peers = self._modems
        self._modems.append(modem)
        return len(self.stations) - 1

    def run(
        self,
        until: float = 600.0,
        on_event: EventObserver | None = None,
        on_frame: FrameObserver | None = None,
        wait_for: Sequence[int] | None = None,
    ) -> list[SlacResult]:
        """Start every machine at t = 0 and run until the stations *wait_for* (default: all) are
        done, or *until* virtual seconds. Returns the results of the *wait_for* stations."""
        self._on_event, self._on_frame = on_event, on_frame
        watched = [self.stations[i] for i in (range(len(self.stations)) if wait_for is None else wait_for)]
        for index, station in enumerate(self.stations):
            station.machine.start(self.now)
            self._flush(index)
        while not all(s.machine.done for s in watched):
            deadlines = [s.machine.next_deadline for s in self.stations if not s.machine.done]
            timer_due = min((d for d in deadlines if d is not None), default=None)
            frame_due = self._queue[0][0] if self._queue else None
            if frame_due is None and timer_due is None:
                break  # nothing can happen any more
            if frame_due is not None and (timer_due is None or frame_due <= timer_due):
                t, _, hop, index, frame = heapq.heappop(self._queue)
                if t > until:
                    break
                self.now = t
                self._deliver(hop, index, frame)
            else:
                assert timer_due is not None
                if timer_due > until:
                    break
                self.now = timer_due
                for index, station in enumerate(self.stations):
                    station.machine.handle_timer(self.now)
                    self._flush(index)
        return [self._result(s) for s in watched]

    def _result(self, station: Station) -> SlacResult:
        if station.machine.result is None:
            raise RuntimeError(
                f"simulation ended with {station.machine.role.value} in {station.machine.state.value}"
            )
        return station.machine.result

    def _schedule(self, delay: float, hop: Hop, index: int, frame: bytes) -> None:
        heapq.heappush(self._queue, (self.now + delay, next(self._seq), hop, index, frame))

    def _flush(self, index: int) -> None:
        station = self.stations[index]
        machine = station.machine
        for event in machine.take_events():
            if self._on_event is not None:
                self._on_event(index, event)
            if isinstance(event, BcToggleRequest) and station.plug is not None:
                self._toggle(index, station.plug, event)
        for frame in machine.take_frames():
            if self._on_frame is not None:
                self._on_frame(index, self.now, frame, True)
            self._schedule(self.host_latency, Hop.HOST_TO_MODEM, index, frame)

    def _toggle(self, index: int, plug: int, request: BcToggleRequest) -> None:
        """The EV's S2 toggles reach every EVSE on its plug, one per B-C-B (at each C -> B)."""
        for other, station in enumerate(self.stations):
            if other != index and station.plug == plug:
                for k in range(request.count):
                    self._schedule((2 * k + 2) * request.state_duration, Hop.CONTROL_PILOT, other, b"")

    def _deliver(self, hop: Hop, index: int, frame: bytes) -> None:
        station = self.stations[index]
        if hop is Hop.CONTROL_PILOT:
            if isinstance(station.machine, EvseSlac):
                station.machine.observe_bc_toggle(self.now)
        elif hop is Hop.HOST_TO_MODEM:
            replies, bridge = station.modem.from_host(frame, self.now)
            for reply in replies:
                self._schedule(self.host_latency, Hop.MODEM_TO_HOST, index, reply)
            if bridge:
                for other in range(len(self.stations)):
                    if other != index:
                        self._schedule(self.line_latency, Hop.LINE, other, frame)
        elif hop is Hop.LINE:
            for generated in station.modem.from_wire(frame, self.now):
                self._schedule(self.host_latency, Hop.MODEM_TO_HOST, index, generated)
            dst = frame[0:6].hex(":")
            if dst in (station.machine.mac, mme.BROADCAST_MAC) or frame[0] & 1:
                self._schedule(self.host_latency, Hop.MODEM_TO_HOST, index, frame)
        else:
            if self._on_frame is not None:
                self._on_frame(index, self.now, frame, False)
            station.machine.receive(frame, self.now)
            station.machine.handle_timer(self.now)
            self._flush(index)
