"""What the EVSE and EV SLAC machines share: sans-IO plumbing around the one state table.

A machine takes Ethernet frames and clock readings and returns frames to send, events and its
next deadline (DESIGN.md rule 1)::

    m.start(now)
    loop: send m.take_frames(); wait for a frame or m.next_deadline
          m.receive(frame, now)  or  m.handle_timer(now)
    until m.done; then m.result

Frames that do not decode are counted in :attr:`SlacMachine.decode_errors` and reported as
:class:`~v2gtool.slac.events.MmeRejected`; they never raise.
"""

from __future__ import annotations

import abc
import secrets
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from v2gtool.session.events import Event
from v2gtool.slac import mme
from v2gtool.slac.diagnosis import Diagnosis
from v2gtool.slac.events import (
    MmeReceived,
    MmeRejected,
    MmeSent,
    SlacFailedEvent,
    SlacMatched,
    SlacStateChanged,
)
from v2gtool.slac.states import STATE_TIMER, TERMINAL_STATES, Role, SlacState, Trigger, next_state
from v2gtool.slac.timers import SlacTimers

#: Source of random octets (RunID, NMK): the OS CSPRNG by default, seeded in tests.
RandomBytes = Callable[[int], bytes]


@dataclass(frozen=True)
class SlacResult:
    """The outcome of one matching, for the CLI and for a session chain."""

    role: Role
    matched: bool
    peer_mac: str | None = None
    run_id: bytes | None = None
    nid: bytes | None = None
    nmk: bytes | None = None
    diagnosis: Diagnosis | None = None
    detail: str = ""
    #: Average attenuation per EVSE MAC (EV: every EVSE that answered; EVSE: its own).
    attenuation_db: dict[str, float] = field(default_factory=dict)
    #: Monotonic time of the (first) CM_SLAC_PARM.REQ and of link ready.
    t_slac_parm_req: float | None = None
    t_link_ready: float | None = None
    decode_errors: int = 0


STATE_TIMER_KEY = "state"


class SlacMachine(abc.ABC):
    """Base of :class:`~v2gtool.slac.evse.EvseSlac` and :class:`~v2gtool.slac.ev.EvSlac`."""

    role: ClassVar[Role]

    def __init__(
        self,
        mac: str,
        timers: SlacTimers | None = None,
        *,
        modem_mac: str = mme.QCA_LOCAL_MAC,
        random_bytes: RandomBytes = secrets.token_bytes,
    ) -> None:
        self.mac = mac.lower()
        self.timers = timers or SlacTimers()
        self.modem_mac = modem_mac.lower()
        self.random_bytes = random_bytes
        self.state = SlacState.IDLE
        self.decode_errors: Counter[str] = Counter()
        self.result: SlacResult | None = None
        self._timers: dict[str, float] = {}
        self._frames: list[bytes] = []
        self._events: list[Event] = []
        self._nonce = int.from_bytes(random_bytes(4), "little")

    # -- the sans-IO interface -------------------------------------------------------------
    @property
    def done(self) -> bool:
        return self.state in TERMINAL_STATES

    @property
    def next_deadline(self) -> float | None:
        return min(self._timers.values(), default=None)

    def take_frames(self) -> list[bytes]:
        frames, self._frames = self._frames, []
        return frames

    def take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def start(self, now: float) -> None:
        self._transition(Trigger.START, now)
        self._on_start(now)

    def receive(self, frame: bytes, now: float) -> None:
        """Feed one received Ethernet frame."""
        if self.done:
            return
        try:
            decoded = mme.decode_frame(frame)
        except mme.MmeDecodeError as exc:
            self.decode_errors[exc.reason] += 1
            self._emit(MmeRejected(t=now, role=self.role.value, reason=str(exc)))
            return
        if decoded.src == self.mac or decoded.body is None:
            return
        if decoded.dst not in (self.mac, mme.BROADCAST_MAC):
            return
        self._emit(
            MmeReceived(t=now, role=self.role.value, mme=decoded.name, src=decoded.src, size=len(frame))
        )
        self._on_mme(decoded, now)

    def handle_timer(self, now: float) -> None:
        """Run every timer due at *now*."""
        while not self.done:
            due = [(t, name) for name, t in self._timers.items() if t <= now]
            if not due:
                return
            _, name = min(due)
            del self._timers[name]
            self._on_timer(name, now)

    # -- for the roles ---------------------------------------------------------------------
    @abc.abstractmethod
    def _on_start(self, now: float) -> None:
        """Send the role's first message."""

    @abc.abstractmethod
    def _on_mme(self, frame: mme.MmeFrame, now: float) -> None:
        """Handle one decoded MME addressed to this host (or broadcast)."""

    @abc.abstractmethod
    def _on_timer(self, name: str, now: float) -> None:
        """Handle the expiry of timer *name* (the state timer or ``link_poll``)."""

    def _emit(self, event: Event) -> None:
        self._events.append(event)

    def _send(self, dst: str, body: mme.MmeBody, now: float) -> None:
        frame = mme.encode_frame(dst, self.mac, body)
        self._frames.append(frame)
        self._emit(
            MmeSent(t=now, role=self.role.value, mme=mme.mmtype_name(body.MMTYPE), dst=dst, size=len(frame))
        )

    def _set_timer(self, name: str, due: float) -> None:
        self._timers[name] = due

    def _cancel_timer(self, name: str) -> None:
        self._timers.pop(name, None)

    def _transition(self, trigger: Trigger, now: float) -> None:
        """Move per the state table and arm the new state's Table A.1 timer."""
        old = self.state
        self.state = next_state(self.role, old, trigger)
        self._emit(
            SlacStateChanged(
                t=now, role=self.role.value, old=old.value, new=self.state.value, trigger=trigger.value
            )
        )
        self._cancel_timer(STATE_TIMER_KEY)
        if self.state in STATE_TIMER[self.role]:
            self._rearm_state_timer(now)
        if self.done:
            self._timers.clear()

    def _rearm_state_timer(self, now: float) -> None:
        """(Re)start the current state's timer with its :data:`STATE_TIMER` duration."""
        name = STATE_TIMER[self.role][self.state]
        self._set_timer(STATE_TIMER_KEY, now + float(getattr(self.timers, name)))

    def _next_nonce(self) -> int:
        self._nonce = (self._nonce + 1) & 0xFFFFFFFF
        return self._nonce

    def _set_key_req(self, nid: bytes, nmk: bytes) -> mme.CM_SET_KEY_REQ:
        """CM_SET_KEY.REQ for the own modem (ISO 15118-3 Annex A values)."""
        return mme.CM_SET_KEY_REQ(
            key_type=1,
            my_nonce=self._next_nonce(),
            your_nonce=0,
            pid=4,
            prn=0,
            pmn=0,
            cco_capability=0,
            nid=nid,
            new_eks=1,
            new_key=nmk,
        )

    def _poll_link(self, now: float) -> None:
        self._send(self.modem_mac, mme.VS_PL_LNK_STATUS_REQ(), now)
        self._set_timer("link_poll", now + self.timers.TP_link_status_poll)

    def _finish(self, now: float, trigger: Trigger, result: SlacResult) -> None:
        self._transition(trigger, now)
        self.result = result
        if result.matched:
            assert result.peer_mac and result.run_id and result.nid and result.nmk
            self._emit(
                SlacMatched(
                    t=now,
                    role=self.role.value,
                    peer_mac=result.peer_mac,
                    run_id=result.run_id,
                    nid=result.nid,
                    nmk=result.nmk,
                )
            )
        else:
            assert result.diagnosis is not None
            self._emit(
                SlacFailedEvent(
                    t=now,
                    role=self.role.value,
                    diagnosis=result.diagnosis.name,
                    exit_code=result.diagnosis.exit_code,
                    detail=result.detail,
                )
            )

    def _decode_error_total(self) -> int:
        return sum(self.decode_errors.values())
