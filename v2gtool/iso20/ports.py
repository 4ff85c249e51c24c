"""What the ISO 15118-20 engines need from the power path: small Protocols, no I/O in the engines.

The SECC drives a :class:`ChargerPort` (in v2gtool a :class:`v2gtool.hw.station.Station` behind the
interlock); the EVCC drives a :class:`VehiclePort` (the battery and the EV's own contactors). Current
is signed: positive charges the vehicle, negative discharges it (DC_BPT); see
:class:`v2gtool.iso20.values.SignConvention` for the wire convention.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from v2gtool.iso20.values import to_float

# RationalNumberType keeps at least four significant digits (a short holds 3277..32767 once the
# exponent has to grow, values.rational), so a current times a voltage from the wire is exact to
# about 0.03 %: the tolerance for "at the minimum".
WIRE_PRECISION = 1e-3


@dataclass(frozen=True)
class PowerLimits:
    """One side's declared DC limits (ISO 15118-20 DC_ChargeParameterDiscovery), W, A and V."""

    max_charge_power: float
    min_charge_power: float
    max_charge_current: float
    min_charge_current: float
    max_voltage: float
    min_voltage: float
    max_discharge_power: float = 0.0
    min_discharge_power: float = 0.0
    max_discharge_current: float = 0.0
    min_discharge_current: float = 0.0

    @classmethod
    def from_message(cls, mode: Any, prefix: str) -> PowerLimits:
        """The limits a DC_ChargeParameterDiscoveryReq (*prefix* ``EV``) or Res (``EVSE``) declares in
        its DC or BPT_DC energy transfer mode element; discharge limits 0 without BPT."""

        def value(name: str) -> float:
            return to_float(getattr(mode, prefix + name, None))

        return cls(
            max_charge_power=value("MaximumChargePower"),
            min_charge_power=value("MinimumChargePower"),
            max_charge_current=value("MaximumChargeCurrent"),
            min_charge_current=value("MinimumChargeCurrent"),
            max_voltage=value("MaximumVoltage"),
            min_voltage=value("MinimumVoltage"),
            max_discharge_power=value("MaximumDischargePower"),
            min_discharge_power=value("MinimumDischargePower"),
            max_discharge_current=value("MaximumDischargeCurrent"),
            min_discharge_current=value("MinimumDischargeCurrent"),
        )

    def within_current(self, amps: float) -> PowerLimits:
        """A copy whose maximum charge and discharge current are at most *amps* (a magnitude, inf
        for no cap): these limits while something holds the current lower than declared, e.g. the
        station's thermal derating (:attr:`v2gtool.hw.station.Station.derating_limit_a`)."""
        return replace(
            self,
            max_charge_current=min(self.max_charge_current, amps),
            max_discharge_current=min(self.max_discharge_current, amps),
        )

    def clamp_current(self, amps: float, voltage: float) -> float:
        """*amps* within this side's maximum current and power at the output *voltage* (signed). The
        power keeps the wire's precision as headroom, so EVSEPresentVoltage x EVSEPresentCurrent as
        the EV reads them stays within the maximum too."""
        v = max(voltage, 1.0) / (1.0 - WIRE_PRECISION)
        if amps >= 0:
            return min(amps, self.max_charge_current, self.max_charge_power / v)
        return -min(-amps, self.max_discharge_current, self.max_discharge_power / v)

    def below_minimum(self, amps: float, voltage: float) -> bool:
        """A flow of *amps* (signed) at *voltage* that this side cannot transfer: not none, but below
        its minimum current or power in that direction (DC_ChargeParameterDiscovery
        EV/EVSEMinimumCharge/DischargeCurrent and Power, ISO 15118-20 8.3.5.5). A request exactly at
        the minimum passes although it crossed the wire as two rounded RationalNumbers."""
        if amps == 0:
            return False
        if amps > 0:
            min_current, min_power = self.min_charge_current, self.min_charge_power
        else:
            min_current, min_power = self.min_discharge_current, self.min_discharge_power
        slack = 1.0 - WIRE_PRECISION
        return abs(amps) < min_current * slack or abs(amps) * voltage < min_power * slack

    def at_maximum(self, amps: float, voltage: float) -> tuple[bool, bool]:
        """Whether a flow of *amps* (signed) at *voltage* is at this side's maximum current, and at its
        maximum power, in that direction: where :meth:`clamp_current` leaves a request above them
        (DC_ChargeLoopRes EVSECurrentLimitAchieved and EVSEPowerLimitAchieved, each of its own limit)."""
        if amps == 0:
            return False, False
        if amps > 0:
            max_current, max_power = self.max_charge_current, self.max_charge_power
        else:
            max_current, max_power = self.max_discharge_current, self.max_discharge_power
        slack = 1.0 - WIRE_PRECISION
        return abs(amps) >= max_current * (1.0 - 1e-9), abs(amps) * max(voltage, 1.0) >= max_power * slack * slack

    def power_range(self, discharge: bool) -> tuple[float, float]:
        """(minimum, maximum) |power| in W in one direction."""
        if discharge:
            return self.min_discharge_power, self.max_discharge_power
        return self.min_charge_power, self.max_charge_power

    def current_range(self, discharge: bool) -> tuple[float, float]:
        """(minimum, maximum) |current| in A in one direction."""
        if discharge:
            return self.min_discharge_current, self.max_discharge_current
        return self.min_charge_current, self.max_charge_current


class GridRequest(Protocol):
    """What the grid asks of this charge point: signed W, positive charges the vehicle, negative
    discharges it into the grid; None when there is no request (the charger's and the EV's own
    limits apply). A constant from a scenario, or OCPP charging profiles (:mod:`v2gtool.ocpp`).

    The Dynamic control mode asks :meth:`power` at every DC_ChargeLoop (ISO 15118-20 8.3.5.5.7: the
    SECC sets the targets); the Scheduled mode sends :meth:`schedule` in ScheduleExchangeRes, and
    when :attr:`revision` changes the SECC asks the EV to renegotiate (EVSENotification
    ScheduleRenegotiation, standards digest section 4.2)."""

    @property
    def revision(self) -> int: ...

    def power(self, now: float) -> float | None: ...

    def schedule(self, now: float, horizon: float) -> list[tuple[float, float | None]]:
        """(seconds, signed W or None) entries covering *horizon* seconds from *now*."""


@dataclass(frozen=True)
class ConstantGridRequest:
    """A fixed grid request (a scenario's ``power`` in Dynamic mode; None: no request) whose schedule
    the grid renews at each of *renewed_at*, seconds on *clock* (a scenario's ``[[at]]``
    ``evse_notification = "ScheduleRenegotiation"``): :attr:`revision` counts the renewals passed,
    so a Scheduled session renegotiates at each."""

    watts: float | None
    renewed_at: tuple[float, ...] = ()
    clock: Callable[[], float] | None = None

    @property
    def revision(self) -> int:
        if self.clock is None:
            return 0
        now = self.clock()
        return sum(1 for t in self.renewed_at if t <= now)

    def power(self, now: float) -> float | None:
        return self.watts

    def schedule(self, now: float, horizon: float) -> list[tuple[float, float | None]]:
        return [(horizon, self.watts)]


class CableCheckStatus(enum.Enum):
    ONGOING = "ongoing"
    PASSED = "passed"
    FAULT = "fault"


class ChargerPort(Protocol):
    """The SECC's power electronics, contactors and insulation monitor, behind the interlock."""

    def limits(self) -> PowerLimits:
        """The rated limits, as DC_ChargeParameterDiscoveryRes declares them."""

    def present_limits(self) -> PowerLimits:
        """The limits that hold now: :meth:`limits`, lowered by what holds the output below them at
        the moment (thermal derating). DC_ChargeLoop judges and reports against these
        (EVSECurrentLimitAchieved; the Dynamic mode's EVSEMaximumChargeCurrent and the like)."""

    def advance(self, now: float) -> None:
        """Let the power path run until *now* (simulated or real seconds)."""

    def cable_check(self, ev_max_voltage: float) -> CableCheckStatus:
        """Start (first call) or poll the IEC 61851-23 cable check."""

    def precharge(self, target_voltage: float) -> float:
        """Regulate the output to *target_voltage* (current limited); return the present voltage."""

    def start_energy_transfer(self, battery_voltage: float) -> str | None:
        """Close for energy transfer; None when allowed, else the interlock's reason."""

    def regulate(self, current: float, voltage_limit: float) -> tuple[float, float]:
        """Apply the signed current setpoint; return the present (voltage, signed current)."""

    def stop(self) -> None:
        """Ramp the current to zero and open the contactors (PowerDelivery Stop, SessionStop)."""

    def present_voltage(self) -> float: ...

    def fault(self) -> str | None:
        """A latched fault (isolation, contactor stuck, emergency stop, CP), or None."""


class VehiclePort(Protocol):
    """The vehicle's battery, BMS limits and its own DC contactors."""

    def limits(self) -> PowerLimits: ...

    def soc_percent(self) -> float: ...

    def battery_voltage(self) -> float: ...

    def close_contactors(self) -> None: ...

    def open_contactors(self) -> None: ...
