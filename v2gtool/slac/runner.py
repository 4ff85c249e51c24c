"""Run one SLAC role on a link in real time: the edge around the sans-IO machines.

``run_slac(role, link, timers, clock)`` is the entry point a session chain uses; ``link`` is
anything with ``mac``, ``send(frame)`` and ``recv(timeout)`` -- a
:class:`~v2gtool.net.rawsock.RawSocketLink` to a real modem, or a :class:`ModemLink` that puts
the simulated QCA7000 of :mod:`v2gtool.slac.modem_sim` in front of a veth end. For both roles in
one process on a virtual clock use :class:`~v2gtool.slac.cable.SimCable`.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Protocol

from v2gtool.session.events import Event
from v2gtool.slac import mme
from v2gtool.slac.ev import EvSlac
from v2gtool.slac.evse import EvseSlac
from v2gtool.slac.machine import SlacMachine, SlacResult
from v2gtool.slac.modem_sim import SimModem
from v2gtool.slac.states import Role
from v2gtool.slac.timers import SlacTimers

Clock = Callable[[], float]
#: ``(t, frame, sent)`` for every frame the host sent (True) or received (False).
FrameObserver = Callable[[float, bytes, bool], None]


class SlacLink(Protocol):
    """What a SLAC role needs from the network: its MAC and raw HomePlug frames."""

    mac: str

    def send(self, frame: bytes) -> None: ...

    def recv(self, timeout: float) -> bytes | None: ...


class ModemLink:
    """A link with a simulated modem between the host and the wire (a veth end)."""

    def __init__(self, wire: SlacLink, modem: SimModem, clock: Clock = time.monotonic) -> None:
        self.wire = wire
        self.modem = modem
        self.mac = wire.mac
        self.clock = clock
        self._to_host: deque[bytes] = deque()

    def send(self, frame: bytes) -> None:
        replies, bridge = self.modem.from_host(frame, self.clock())
        self._to_host.extend(replies)
        if bridge:
            self.wire.send(frame)

    def recv(self, timeout: float) -> bytes | None:
        if self._to_host:
            return self._to_host.popleft()
        frame = self.wire.recv(timeout)
        if frame is not None:
            self._to_host.extend(self.modem.from_wire(frame, self.clock()))
        return frame


def make_machine(
    role: Role, mac: str, timers: SlacTimers, *, validate: bool = False, modem_mac: str = mme.QCA_LOCAL_MAC
) -> SlacMachine:
    """The machine of *role* for a host with address *mac*."""
    if role is Role.EV:
        return EvSlac(mac, timers, validate=validate, modem_mac=modem_mac)
    return EvseSlac(mac, timers, modem_mac=modem_mac)


def drive(
    machine: SlacMachine,
    link: SlacLink,
    clock: Clock = time.monotonic,
    *,
    on_event: Callable[[Event], None] | None = None,
    on_frame: FrameObserver | None = None,
) -> SlacResult:
    """Run *machine* on *link* until it is done. It always ends: every state before MATCHED or
    FAILED is guarded by a timer of the state table."""
    machine.start(clock())
    while True:
        for outbound in machine.take_frames():
            link.send(outbound)
            if on_frame is not None:
                on_frame(clock(), outbound, True)
        for event in machine.take_events():
            if on_event is not None:
                on_event(event)
        if machine.done:
            break
        now = clock()
        deadline = machine.next_deadline
        frame = link.recv(0.5 if deadline is None else max(0.0, deadline - now))
        now = clock()
        if frame is not None:
            if on_frame is not None:
                on_frame(now, frame, False)
            machine.receive(frame, now)
        machine.handle_timer(now)
    assert machine.result is not None
    return machine.result


def run_slac(
    role: Role,
    link: SlacLink,
    timers: SlacTimers | None = None,
    clock: Clock = time.monotonic,
    *,
    validate: bool = False,
    modem_mac: str = mme.QCA_LOCAL_MAC,
    on_event: Callable[[Event], None] | None = None,
    on_frame: FrameObserver | None = None,
) -> SlacResult:
    """Run one matching as *role* on *link*; returns the :class:`SlacResult` (matched or the
    diagnosis of the failure)."""
    machine = make_machine(role, link.mac, timers or SlacTimers(), validate=validate, modem_mac=modem_mac)
    return drive(machine, link, clock, on_event=on_event, on_frame=on_frame)
