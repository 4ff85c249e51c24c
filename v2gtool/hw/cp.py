"""The IEC 61851-1 Control Pilot: states A to F from the measured levels, and the duty <-> current map.

The EVSE drives a +/-12 V, 1 kHz square wave through 1 kOhm; the vehicle loads the positive half
through its resistors and a diode, so the EVSE reads the vehicle's state from the positive plateau
and checks the diode on the negative one (IEC 61851-1 Annex A, Table A.4 for the levels and the
diode check; the bands below are the commonly reproduced ones and are *unverified* against the
normative text, see shared/spec/standards.md 6.1).

The duty cycle tells the vehicle the current it may draw (IEC 61851-1 Table A.7 as reproduced in
standards.md 6.2); 5 % says "digital communication required", which DC charging always uses.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from v2gtool.errors import V2GToolError

#: Duty cycle that requests digital communication (ISO 15118 / DIN 70121 high-level communication).
DIGITAL_COMMUNICATION_DUTY = 5.0
#: "Duty" that switches the oscillator off: a steady +12 V (state X1 of ISO 15118-3).
PWM_OFF_DUTY = 100.0


class CpError(V2GToolError):
    """A duty cycle or current outside what IEC 61851-1 defines."""

    exit_code = 2


class CpState(enum.Enum):
    """Control Pilot states of IEC 61851-1 Table A.3, with the nominal positive plateau in volts."""

    A = 12.0  # no vehicle connected
    B = 9.0  # vehicle connected, not ready
    C = 6.0  # vehicle ready, charging
    D = 3.0  # vehicle ready, charging with ventilation
    E = 0.0  # CP shorted to PE, or EVSE without supply
    F = -12.0  # EVSE not available (EVSE drives -12 V)

    @property
    def nominal_volts(self) -> float:
        return self.value

    @property
    def energy_transfer_allowed(self) -> bool:
        """True in the two states in which power may flow (IEC 61851-1 Table A.3: C and D)."""
        return self in (CpState.C, CpState.D)


#: Tolerance band of the positive plateau per state (Table A.4, unverified; E/F bands ours: +/-1 V).
STATE_BANDS_V: dict[CpState, tuple[float, float]] = {
    CpState.A: (11.0, 13.0),
    CpState.B: (8.0, 10.0),
    CpState.C: (5.0, 7.0),
    CpState.D: (2.0, 4.0),
    CpState.E: (-1.0, 1.0),
    CpState.F: (-13.0, -11.0),
}
#: The negative plateau must sit at -12 V +/- 1 V while the vehicle's diode is present (Table A.4 note).
DIODE_BAND_V = (-13.0, -11.0)
#: The states with a vehicle's resistors and diode on the line (Table A.3): the ones with a diode to check.
VEHICLE_STATES = (CpState.B, CpState.C, CpState.D)


@dataclass(frozen=True)
class CpReading:
    """One measurement of the pilot: both plateaus and the PWM duty the EVSE is generating."""

    high_v: float
    low_v: float
    duty_percent: float

    @property
    def pwm_on(self) -> bool:
        return self.duty_percent < PWM_OFF_DUTY

    @property
    def diode_ok(self) -> bool:
        """The diode check: with PWM on, the negative plateau stays at -12 V only if the diode is there."""
        if not self.pwm_on:
            return True  # no negative half to check
        return DIODE_BAND_V[0] <= self.low_v <= DIODE_BAND_V[1]

    @property
    def diode_check(self) -> bool | None:
        """This reading as the diode check the EVSE makes before closing its supply switch (Table A.4
        note, standards.md 6.3): whether it passed, or ``None`` when it checks no diode, because the
        PWM is off (X1: no negative half) or no vehicle's resistors are on the positive plateau."""
        if not self.pwm_on or classify_plateau(self.high_v) not in VEHICLE_STATES:
            return None
        return self.diode_ok

    @property
    def state(self) -> CpState | None:
        """The state the levels show, or ``None`` when they fit no band or the diode check fails.

        ``None`` is treated like a fault: it is never C or D, so the interlock opens on it.
        """
        if self.high_v <= STATE_BANDS_V[CpState.F][1] and self.low_v <= STATE_BANDS_V[CpState.F][1]:
            return CpState.F
        if self.diode_check is False:
            return None
        return classify_plateau(self.high_v)


def pilot_levels(ev_state: CpState, duty_percent: float, *, diode: bool = True) -> tuple[float, float]:
    """The nominal (positive, negative) plateaus the EVSE measures with the vehicle in *ev_state*.

    State F is the EVSE itself driving -12 V. With the oscillator off (100 %) there is only a steady
    level; without the vehicle's diode its resistors load the negative half too.
    """
    if ev_state is CpState.F:
        return CpState.F.nominal_volts, CpState.F.nominal_volts
    high = ev_state.nominal_volts
    if duty_percent >= PWM_OFF_DUTY:
        return high, high
    if ev_state is CpState.E:
        return 0.0, 0.0
    if not diode and ev_state is not CpState.A:
        return high, -high
    return high, -12.0


def classify_plateau(volts: float) -> CpState | None:
    """The state whose band (Table A.4) contains the positive plateau *volts*, or ``None``."""
    for state, (low, high) in STATE_BANDS_V.items():
        if state is not CpState.F and low <= volts <= high:
            return state
    return None


class DutyMeaning(enum.Enum):
    """What a duty cycle tells the vehicle (IEC 61851-1 Table A.7)."""

    CHARGING_NOT_ALLOWED = "charging not allowed"  # < 3 %
    DIGITAL_COMMUNICATION = "digital communication required"  # 3-7 %, nominal 5 %
    NOT_ALLOWED = "not allowed"  # 7-8 % and > 97 % (not 100 %)
    CURRENT = "maximum current"  # 8-97 %
    PWM_OFF = "oscillator off (X1)"  # 100 %


@dataclass(frozen=True)
class DutyInterpretation:
    """A duty cycle's meaning and, for :attr:`DutyMeaning.CURRENT`, the current in amperes."""

    meaning: DutyMeaning
    current_a: float | None = None


def current_from_duty(duty_percent: float) -> DutyInterpretation:
    """The vehicle's reading of *duty_percent* (Table A.7): the maximum current or another meaning."""
    d = duty_percent
    if not (0.0 <= d <= 100.0) or math.isnan(d):
        raise CpError(f"duty cycle {duty_percent} % is outside 0..100 %")
    if d == PWM_OFF_DUTY:
        return DutyInterpretation(DutyMeaning.PWM_OFF)
    if d < 3.0:
        return DutyInterpretation(DutyMeaning.CHARGING_NOT_ALLOWED)
    if d <= 7.0:
        return DutyInterpretation(DutyMeaning.DIGITAL_COMMUNICATION)
    if d < 8.0 or d > 97.0:
        return DutyInterpretation(DutyMeaning.NOT_ALLOWED)
    if d < 10.0:
        return DutyInterpretation(DutyMeaning.CURRENT, 6.0)
    if d <= 85.0:
        return DutyInterpretation(DutyMeaning.CURRENT, d * 0.6)
    if d <= 96.0:
        return DutyInterpretation(DutyMeaning.CURRENT, (d - 64.0) * 2.5)
    return DutyInterpretation(DutyMeaning.CURRENT, 80.0)


#: Largest current the 10-85 % segment can say (85 % x 0.6 A); 51 < I <= 52.5 A has no duty cycle.
_LOW_SEGMENT_MAX_A = 51.0
_HIGH_SEGMENT_MIN_A = 52.5


def duty_from_current(current_a: float) -> float:
    """The duty cycle that advertises at most *current_a* amperes (inverse of Table A.7).

    6 A -> 10 %; up to 51 A: A / 0.6; above 52.5 A up to 80 A: A / 2.5 + 64. Currents above 51 A
    up to 52.5 A have no duty cycle of their own (85 % belongs to the 0.6 A segment) and are
    rounded *down* to 51 A (85 %), so the EVSE never advertises more than it can supply.
    """
    if math.isnan(current_a) or not (6.0 <= current_a <= 80.0):
        raise CpError(f"current {current_a} A has no duty cycle: IEC 61851-1 defines 6..80 A")
    if current_a <= _LOW_SEGMENT_MAX_A:
        return max(current_a / 0.6, 10.0)
    if current_a <= _HIGH_SEGMENT_MIN_A:
        return 85.0
    return current_a / 2.5 + 64.0
