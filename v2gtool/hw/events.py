"""Events of the hardware layer and its interlock (DESIGN.md rule 4)."""

from __future__ import annotations

from dataclasses import dataclass

from v2gtool.hw.cp import CpState
from v2gtool.hw.interfaces import Pole
from v2gtool.session.events import Event


@dataclass(frozen=True, kw_only=True)
class CpStateChanged(Event):
    """The Control Pilot moved to another IEC 61851-1 state (``None``: no valid state / diode fault)."""

    state: CpState | None
    previous: CpState | None
    high_v: float
    low_v: float
    duty_percent: float


@dataclass(frozen=True, kw_only=True)
class InterlockRefused(Event):
    """A request was refused; ``condition`` names the interlock rule that blocks it."""

    request: str
    condition: str
    detail: str


@dataclass(frozen=True, kw_only=True)
class InterlockTripped(Event):
    """A rule demands the contactors open: the current is ramped to zero first."""

    condition: str


@dataclass(frozen=True, kw_only=True)
class ContactorsClosing(Event):
    """The coils were energised."""


@dataclass(frozen=True, kw_only=True)
class ContactorsClosed(Event):
    """Both auxiliary contacts report closed; ``duration_s`` since the coils were energised."""

    duration_s: float


@dataclass(frozen=True, kw_only=True)
class ContactorsOpening(Event):
    """The coils were de-energised at ``current_a``; ``forced`` when the zero-current wait ran out."""

    current_a: float
    forced: bool


@dataclass(frozen=True, kw_only=True)
class ContactorsOpened(Event):
    """Both auxiliary contacts report open; ``since_trip_s`` since the rule demanded it."""

    since_trip_s: float


@dataclass(frozen=True, kw_only=True)
class ContactorStuck(Event):
    """ "Contactor Stuck": a weld or a feedback mismatch; latched until a deliberate reset."""

    pole: Pole
    commanded_closed: bool
    feedback_closed: bool


@dataclass(frozen=True, kw_only=True)
class InterlockReset(Event):
    """The "Contactor Stuck" latch was cleared by a deliberate reset."""


@dataclass(frozen=True, kw_only=True)
class EnergyTransferEnabled(Event):
    """Cable check passed and precharge matched: the current may exceed the cable-check limit."""

    link_v: float
    battery_v: float


@dataclass(frozen=True, kw_only=True)
class IsolationFault(Event):
    """The insulation resistance is below the fault threshold of the selected edition."""

    resistance_ohm: float
    threshold_ohm: float


@dataclass(frozen=True, kw_only=True)
class IsolationWarning(Event):
    """IEC 61851-23:2014 only: the resistance is below the warning threshold (charging may go on)."""

    resistance_ohm: float
    threshold_ohm: float


@dataclass(frozen=True, kw_only=True)
class EmergencyStopChanged(Event):
    pressed: bool


@dataclass(frozen=True, kw_only=True)
class StopActionRun(Event):
    """The configured stop action ran after an isolation fault (``command`` empty: session stop only)."""

    command: str
    returncode: int | None
    detail: str


@dataclass(frozen=True, kw_only=True)
class CurrentDerated(Event):
    """The thermal derating changed the current limit noticeably (inlet temperature in degC)."""

    limit_a: float
    inlet_c: float


@dataclass(frozen=True, kw_only=True)
class DischargeRefused(Event):
    """Discharge refused: the state of charge is at or below the floor. ``code`` is the log code."""

    code: str
    soc_percent: float
    floor_percent: float
