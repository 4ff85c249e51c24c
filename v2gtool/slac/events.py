"""Typed events of the SLAC machines (DESIGN.md rule 4): renderers turn them into the timeline,
JSON lines and diagnostics; nothing in the protocol core prints."""

from __future__ import annotations

from dataclasses import dataclass

from v2gtool.session.events import Event


@dataclass(frozen=True, kw_only=True)
class SlacStateChanged(Event):
    role: str
    old: str
    new: str
    trigger: str


@dataclass(frozen=True, kw_only=True)
class MmeSent(Event):
    role: str
    mme: str
    dst: str
    size: int


@dataclass(frozen=True, kw_only=True)
class MmeReceived(Event):
    role: str
    mme: str
    src: str
    size: int


@dataclass(frozen=True, kw_only=True)
class MmeRejected(Event):
    """A frame on the HomePlug EtherType that did not decode, or came from where it must not; dropped."""

    role: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class AttenuationMeasured(Event):
    """One EVSE's averaged attenuation profile (AAG per group, dB) for this EV's sounds."""

    role: str
    evse_mac: str
    num_sounds: int
    aag: tuple[int, ...]
    average_db: float


@dataclass(frozen=True, kw_only=True)
class EvseChosen(Event):
    """The EV's choice: the EVSE with the lowest average attenuation."""

    evse_mac: str
    average_db: float
    candidates: dict[str, float]


@dataclass(frozen=True, kw_only=True)
class ControlPilotRequest(Event):
    """The EVSE machine asks the control-pilot hardware for a state: ``"E/F"`` to end a failed
    matching, ``"5%"`` to invite a new one, ``"X1"`` (PWM off) when no retry is left
    ([V2G3-M06-07], IEC 61851-1 Annex A)."""

    cp: str


@dataclass(frozen=True, kw_only=True)
class BcToggleRequest(Event):
    """CM_VALIDATE step 2: the EV machine asks its control-pilot hardware for ``count`` B-C-B
    toggles of S2, each state lasting ``state_duration`` s (ISO 15118-3 Annex A, TP_EV_vald_*)."""

    count: int
    state_duration: float


@dataclass(frozen=True, kw_only=True)
class SlacMatched(Event):
    role: str
    peer_mac: str
    run_id: bytes
    nid: bytes
    nmk: bytes


@dataclass(frozen=True, kw_only=True)
class SlacFailedEvent(Event):
    role: str
    diagnosis: str
    exit_code: int
    detail: str
