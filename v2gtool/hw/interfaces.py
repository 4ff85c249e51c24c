"""The small interfaces behind which every hardware backend sits (DESIGN.md rule 5).

A backend (``sim``, ``gpiod``, ``serial``) implements the parts it has; :class:`Hardware` bundles
them, and a part a backend lacks is ``None`` so a command can say which part is missing. Every
method is non-blocking: time passes only through :meth:`Clock.sleep`, which on the ``sim`` backend
steps the physics model in simulated time and on real hardware sleeps.

Sign convention: a positive current flows from the EVSE into the vehicle (charging); a negative one
flows from the vehicle into the grid (discharging, ISO 15118-20 DC_BPT).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from v2gtool.hw.cp import CpReading


class Clock(Protocol):
    """A monotonic clock that can wait: real time on hardware, simulated time on ``sim``."""

    def now(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


@runtime_checkable
class ControlPilot(Protocol):
    """The EVSE side of the Control Pilot (IEC 61851-1 Annex A): PWM generator and level measurement."""

    def set_duty(self, percent: float) -> None:
        """Generate the 1 kHz PWM at *percent* duty; 100 % is a steady +12 V (oscillator off)."""

    def read(self) -> CpReading:
        """The latest positive and negative plateau voltages and the duty being generated."""


class Pole(enum.Enum):
    """The two DC contactors of the EVSE output."""

    K1 = "DC+"
    K2 = "DC-"


@runtime_checkable
class Contactors(Protocol):
    """The DC output contactors K1 (DC+) and K2 (DC-) with their auxiliary (mirror) contacts."""

    def drive(self, closed: bool) -> None:
        """Energise (``True``) or de-energise both coils."""

    def feedback(self) -> dict[Pole, bool]:
        """What each auxiliary contact reports: ``True`` = the main contact is closed."""


@runtime_checkable
class IsolationMonitor(Protocol):
    """The insulation monitoring device (IMD) on the DC output, IEC 61851-23 6.3.1.105 / Annex CC."""

    def start_self_test(self) -> None: ...

    def self_test_result(self) -> bool | None:
        """``None`` while the self-test runs, then whether it passed."""

    def resistance_ohm(self) -> float | None:
        """The insulation resistance the IMD reports now (``None`` while it has no valid value)."""


@dataclass(frozen=True)
class DcMeasurement:
    """The DC output as the EVSE measures it.

    ``link_v`` is the power module's output capacitor (EVSE side of K1/K2), ``cable_v`` the vehicle
    side of K1/K2 (the cable and inlet), ``current_a`` the output current (+ charging, - discharging).
    """

    link_v: float
    cable_v: float
    current_a: float


@runtime_checkable
class PowerModule(Protocol):
    """The bidirectional DC power module: it can source into the vehicle and sink into the grid."""

    def regulate_voltage(self, volts: float, current_limit_a: float) -> None:
        """Voltage control (cable check, precharge): drive the output to *volts* within the limit."""

    def regulate_current(self, amps: float, max_voltage: float = math.inf) -> None:
        """Current control (charge loop): + charges the vehicle, - discharges it into the grid. A
        charging current falls back as the output reaches *max_voltage*, the module's constant-voltage
        limit (CC/CV): the lower of the EVSE's and the vehicle's maximum voltage."""

    def off(self) -> None:
        """Stop converting: ramp the current to zero and actively discharge the output."""

    def measure(self) -> DcMeasurement: ...


@runtime_checkable
class InletTemperature(Protocol):
    """The temperature sensors of the vehicle inlet / connector DC pins."""

    def temperatures_c(self) -> tuple[float, ...]: ...


@runtime_checkable
class EmergencyStop(Protocol):
    """The emergency stop input."""

    def pressed(self) -> bool: ...


def _nothing_to_release() -> None:
    """The ``release`` of a backend that holds no device (``sim``)."""


@dataclass(frozen=True)
class Hardware:
    """The parts one backend provides; a part it does not have is ``None``."""

    backend: str
    clock: Clock
    control_pilot: ControlPilot | None = None
    contactors: Contactors | None = None
    isolation_monitor: IsolationMonitor | None = None
    power_module: PowerModule | None = None
    inlet_temperature: InletTemperature | None = None
    emergency_stop: EmergencyStop | None = None
    #: Gives the backend's devices back (the GPIO line request, the serial port) when the command
    #: ends (:meth:`v2gtool.hw.station.Station.close`); safe to call more than once.
    release: Callable[[], None] = _nothing_to_release
