"""Insulation limits of IEC 61851-23 and the cable-check test voltage (Annex CC, Formula CC.1).

The limit is on the insulation *resistance* between the DC output and PE, not on a leakage current.
Two editions are selectable (shared/spec/standards.md 7.1):

* **2023**: a fixed fault threshold of 100 kOhm and no warning level (as cited by EVerest's
  EvseManager for IEC 61851-23:2023, 6.3.1.105 / CC.4.1).
* **2014**: fault below 100 Ohm/V and warning below 500 Ohm/V of the rated output voltage
  (the 2014 numbers are *unverified* against the normative text).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from v2gtool.errors import V2GToolError

#: 2023 edition: fixed fault threshold.
FAULT_2023_OHM = 100_000.0
#: 2014 edition: fault and warning thresholds per volt of rated voltage (unverified).
FAULT_2014_OHM_PER_V = 100.0
WARNING_2014_OHM_PER_V = 500.0
#: Longest time from an insulation fault to its detection by the IMD. 10 s is the figure EVerest's
#: IMD grace period and Bender IMDs work to (standards.md 7.1); *unverified* against the normative
#: response time of IEC 61851-23 6.3.1.105 / IEC 61557-8.
IMD_RESPONSE_TIME_S = 10.0
#: Output voltage below which the output counts as safe to touch / to switch (IEC 61851-23 CC.4.1).
SAFE_OUTPUT_V = 60.0


class Edition(enum.Enum):
    """The edition of IEC 61851-23 whose insulation limits apply."""

    IEC_61851_23_2014 = "2014"
    IEC_61851_23_2023 = "2023"


class IsolationVerdict(enum.Enum):
    PASS = "pass"
    WARNING = "warning"
    FAULT = "fault"


@dataclass(frozen=True)
class IsolationResult:
    """One evaluated insulation resistance."""

    verdict: IsolationVerdict
    resistance_ohm: float
    fault_threshold_ohm: float
    warning_threshold_ohm: float | None


@dataclass(frozen=True)
class IsolationProfile:
    """The thresholds of one edition for an EVSE of *rated_voltage_v*."""

    edition: Edition
    rated_voltage_v: float

    def __post_init__(self) -> None:
        if not (self.rated_voltage_v > 0.0 and math.isfinite(self.rated_voltage_v)):
            raise V2GToolError(f"rated voltage {self.rated_voltage_v} V must be a positive number")

    @property
    def fault_threshold_ohm(self) -> float:
        if self.edition is Edition.IEC_61851_23_2023:
            return FAULT_2023_OHM
        return FAULT_2014_OHM_PER_V * self.rated_voltage_v

    @property
    def warning_threshold_ohm(self) -> float | None:
        if self.edition is Edition.IEC_61851_23_2023:
            return None  # the 2023 edition removed the warning level
        return WARNING_2014_OHM_PER_V * self.rated_voltage_v

    def evaluate(self, resistance_ohm: float) -> IsolationResult:
        """Classify *resistance_ohm*: strictly below a threshold is a fault / a warning."""
        warning = self.warning_threshold_ohm
        if resistance_ohm < self.fault_threshold_ohm:
            verdict = IsolationVerdict.FAULT
        elif warning is not None and resistance_ohm < warning:
            verdict = IsolationVerdict.WARNING
        else:
            verdict = IsolationVerdict.PASS
        return IsolationResult(verdict, resistance_ohm, self.fault_threshold_ohm, warning)


def cable_check_voltage(ev_max_v: float, evse_max_v: float) -> float:
    """The cable-check test voltage of IEC 61851-23 Formula CC.1.

    EV maximum voltage <= 500 V: min(EV max + 50 V, 500 V, EVSE max);
    EV maximum voltage > 500 V: min(1.1 x EV max, EVSE max).
    """
    if not (ev_max_v > 0.0 and evse_max_v > 0.0 and math.isfinite(ev_max_v) and math.isfinite(evse_max_v)):
        raise V2GToolError(f"cable check needs positive voltages, got EV {ev_max_v} V, EVSE {evse_max_v} V")
    if ev_max_v <= 500.0:
        return min(ev_max_v + 50.0, 500.0, evse_max_v)
    return min(1.1 * ev_max_v, evse_max_v)
