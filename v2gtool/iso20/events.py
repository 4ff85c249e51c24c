"""Events of an ISO 15118-20 session, shared by the SECC and the EVCC engines."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
class SessionEnded(Event):
    role: str
    reason: str
    ok: bool
    response_code: str | None = None
