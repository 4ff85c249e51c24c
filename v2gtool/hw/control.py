"""Charge management: thermal derating by a PID controller, and the state-of-charge discharge floor.

The derating limits the current *magnitude*, so it acts alike on charging and on discharging
(DC_BPT): the inlet heats with ``I^2 R`` whatever the direction. The controller works on the
temperature error to a setpoint below the inlet's limit and outputs the allowed current; its
integrator is clamped (anti-windup) and the derivative acts on the measurement, so a step in the
setpoint or a sudden limit does not kick the output.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from v2gtool.errors import ConfigError

#: Log code of a refused discharge (the code the field logs of the seed use).
EVSE_SHUTDOWN_REJECTED = "EVSE_Shutdown_Rejected"


@dataclass
class Pid:
    """A discrete PID controller with output clamping and conditional-integration anti-windup."""

    kp: float
    ki: float
    kd: float
    out_min: float
    out_max: float
    #: Starting value of the integral term (the output before any error has acted).
    initial_output: float = 0.0

    def __post_init__(self) -> None:
        self._integral = self.initial_output
        self._last_measurement: float | None = None

    def update(self, setpoint: float, measurement: float, dt: float) -> float:
        """The clamped output for this sample."""
        error = setpoint - measurement
        derivative = (
            0.0 if self._last_measurement is None or dt <= 0 else -(measurement - self._last_measurement) / dt
        )
        self._last_measurement = measurement
        candidate = self._integral + self.ki * error * dt
        unclamped = self.kp * error + candidate + self.kd * derivative
        output = min(self.out_max, max(self.out_min, unclamped))
        # Integrate only while the output is not pushed further into the clamp (anti-windup).
        if (
            output == unclamped
            or (unclamped > self.out_max and error < 0)
            or (unclamped < self.out_min and error > 0)
        ):
            self._integral = candidate
        return output


@dataclass
class ThermalDerating:
    """The inlet-temperature derating: the current magnitude allowed for the hottest inlet sensor.

    ``limit_c`` is the inlet's maximum, which the inlet must never pass; the controller regulates to
    ``limit_c - margin_c`` once the temperature comes near it and allows the full ``rated_current_a``
    while it is cool.

    The proportional band is the margin: every kelvin above the setpoint takes back
    ``rated_current_a / margin_c`` at once, so the proportional term alone has cut the current to
    ``min_current_a`` before the sensor reaches the limit, however fast the inlet heats. The integral
    (reset time ``integral_time_s``, of the order of the inlet's thermal time constant R_th C) then
    removes the steady offset without overshoot.
    """

    rated_current_a: float
    limit_c: float = 90.0
    margin_c: float = 5.0
    min_current_a: float = 0.0
    integral_time_s: float = 200.0
    kd: float = 0.0

    def __post_init__(self) -> None:
        if not (
            self.rated_current_a > self.min_current_a >= 0
            and self.limit_c > self.margin_c > 0
            and self.integral_time_s > 0
        ):
            raise ConfigError(
                f"thermal derating needs rated current > minimum >= 0, limit > margin > 0 and a positive "
                f"integral time, got {self.rated_current_a} A (min {self.min_current_a} A), limit "
                f"{self.limit_c} degC, margin {self.margin_c} K, integral time {self.integral_time_s} s"
            )
        kp = (self.rated_current_a - self.min_current_a) / self.margin_c
        # The integrator starts at the rated current, so a cool inlet means no derating.
        self._pid = Pid(
            kp,
            kp / self.integral_time_s,
            self.kd,
            self.min_current_a,
            self.rated_current_a,
            self.rated_current_a,
        )

    @property
    def setpoint_c(self) -> float:
        return self.limit_c - self.margin_c

    def update(self, inlet_c: float, dt: float) -> float:
        """The allowed current magnitude after this sample of the hottest inlet temperature."""
        if math.isnan(inlet_c):
            return self.min_current_a  # a broken sensor must not allow full current
        return self._pid.update(self.setpoint_c, inlet_c, dt)


def apply_limit(requested_a: float, limit_a: float) -> float:
    """Clamp *requested_a* (+ charge, - discharge) to the magnitude *limit_a*, keeping its sign."""
    return max(-limit_a, min(limit_a, requested_a))


@dataclass(frozen=True)
class SocFloor:
    """Refuse discharging at or below ``floor_percent`` state of charge (default 20 %)."""

    floor_percent: float = 20.0

    def __post_init__(self) -> None:
        if not (0.0 <= self.floor_percent <= 100.0):
            raise ConfigError(f"discharge floor {self.floor_percent} % is outside 0..100 %")

    def allows_discharge(self, soc_percent: float) -> bool:
        return soc_percent > self.floor_percent
