"""What the ISO 15118-20 engines need from the power path: small Protocols, no I/O in the engines.

The SECC drives a :class:`ChargerPort` (in v2gtool a :class:`v2gtool.hw.station.Station` behind the
interlock); the EVCC drives a :class:`VehiclePort` (the battery and the EV's own contactors). Current
is signed: positive charges the vehicle, negative discharges it (DC_BPT); see
:class:`v2gtool.iso20.values.SignConvention` for the wire convention.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Protocol


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

    def clamp_current(self, amps: float, voltage: float) -> float:
        """*amps* within this side's current and power limits at *voltage* (signed)."""
        v = max(voltage, 1.0)
        if amps >= 0:
            return min(amps, self.max_charge_current, self.max_charge_power / v)
        return -min(-amps, self.max_discharge_current, self.max_discharge_power / v)


class GridRequest(Protocol):
    """What the grid asks of this charge point: signed W, positive charges the vehicle, negative
    discharges it into the grid; None when there is no request (the charger's and the EV's own
    limits apply). A constant from a scenario, or OCPP charging profiles (:mod:`v2gtool.ocpp`).

    The Dynamic control mode asks :meth:`power` at every DC_ChargeLoop (ISO 15118-20 8.3.5.5.7: the
    SECC sets the targets); the Scheduled mode sends :meth:`schedule` in ScheduleExchangeRes, and
    when :attr:`revision` changes the SECC asks the EV to renegotiate (EVSENotification
    ScheduleRenegotiation, 8.3.5.3.x)."""

    @property
    def revision(self) -> int: ...

    def power(self, now: float) -> float | None: ...

    def schedule(self, now: float, horizon: float) -> list[tuple[float, float | None]]:
        """(seconds, signed W or None) entries covering *horizon* seconds from *now*."""


@dataclass(frozen=True)
class ConstantGridRequest:
    """A fixed grid request (a scenario's ``power`` in Dynamic mode)."""

    watts: float | None
    revision: int = 0

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

    def limits(self) -> PowerLimits: ...

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
