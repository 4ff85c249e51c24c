"""Events of an ISO 15118-20 session, shared by the SECC and the EVCC engines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from v2gtool.iso20.ports import PowerLimits
from v2gtool.session.events import Event


@dataclass(frozen=True, kw_only=True)
class MessageSent(Event):
    role: str
    message: str
    size: int
    summary: dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class MessageReceived(Event):
    role: str
    message: str
    size: int
    summary: dict[str, Any]
    response_time: float | None = None


@dataclass(frozen=True, kw_only=True)
class PhaseChanged(Event):
    role: str
    phase: str


@dataclass(frozen=True, kw_only=True)
class PowerFlow(Event):
    """One DC_ChargeLoop step: voltage, signed current (+ charges the EV) and power."""

    role: str
    voltage: float
    current: float
    power: float
    soc: float | None = None


@dataclass(frozen=True, kw_only=True)
class NoEnergyTransferred(Event):
    """A warning: the EV asked to charge or discharge (*direction*), but no current flowed that way in
    the whole charge loop; the session may still end OK on the protocol level. *reason* says whether
    the EV asked for nothing (the schedule or the limits allowed none) or the SECC delivered none."""

    role: str
    direction: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class SessionEnded(Event):
    role: str
    reason: str
    ok: bool
    response_code: str | None = None


@dataclass(frozen=True, kw_only=True)
class EVChargingNeeds(Event):
    """What the EV declared it needs and allows: its DC_ChargeParameterDiscoveryReq limits and its
    ScheduleExchangeReq departure, SoC and energy requests (ISO 15118-20 8.3.5.3.28-30; energies in
    Wh, a negative ``min_v2x_energy`` is what it may give before its minimum SoC). The input of
    OCPP's NotifyEVChargingNeeds."""

    role: str
    service: str
    control_mode: str
    limits: PowerLimits
    departure_time: int | None = None
    target_soc: int | None = None
    min_soc: int | None = None
    target_energy: float | None = None
    max_energy: float | None = None
    min_energy: float | None = None
    max_v2x_energy: float | None = None
    min_v2x_energy: float | None = None


@dataclass(frozen=True, kw_only=True)
class MeteringConfirmed(Event):
    """The EV confirmed the SECC's meter reading (MeteringConfirmationReq of the CommonMessages schema): Wh both ways,
    signed with the contract key in a Plug & Charge session."""

    role: str
    charged_wh: int
    discharged_wh: int | None
    signed: bool


@dataclass(frozen=True, kw_only=True)
class SessionPaused(Event):
    """The EVCC ended with SessionStop Pause (ISO 15118-20 8.3.4.3.1): the SECC keeps the session,
    and a SessionSetupReq with *session_id* (hex) resumes it."""

    role: str
    session_id: str


@dataclass(frozen=True, kw_only=True)
class SessionResumed(Event):
    """The answer to a SessionSetupReq with a paused SessionID (8.3.5.3.2): *joined* when the SECC
    answered OK_OldSessionJoined, False when it started a new session (OK_NewSessionEstablished);
    *session_id* (hex) is the session's SessionID either way."""

    role: str
    session_id: str
    joined: bool
