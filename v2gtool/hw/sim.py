"""The ``sim`` backend: a time-stepped physics model of a bidirectional DC EVSE and its vehicle.

Time is virtual: :class:`SimClock` advances in fixed steps and, on every step, the attached
:class:`SimPlant` integrates its model, so a 30 s cable check runs in milliseconds and tests assert
on simulated time. The model, per part:

* **Control Pilot** (IEC 61851-1 Annex A): +/-12 V at 1 kHz with the set duty; the vehicle's state
  sets the positive plateau (A 12 V, B 9 V, C 6 V, D 3 V, E 0 V); the EV diode keeps the negative
  plateau at -12 V (fault ``diode_missing`` removes it); state F is the EVSE driving -12 V.
* **Contactors** K1/K2: closing and opening times, auxiliary (mirror) contacts, and the faults
  ``weld`` (the contact stays closed once closed), ``stuck_open`` (never closes) and
  ``feedback_mismatch`` (the auxiliary contact reports the opposite of the main contact).
* **IMD**: measures the insulation resistance seen from the output with a first-order settling
  (in log-resistance) and ramp transients: the Y-capacitance current ``C_Y dV/dt`` looks like extra
  leakage, so the reading dips while the voltage ramps. A self-test takes ``imd_self_test_s``
  (fault ``imd_self_test`` makes it fail).
* **Power module**: bidirectional, voltage control (slew-limited, current-limited) or current
  control (slew-limited); when off it actively discharges its output capacitor.
* **DC link / cable**: the module's output capacitance (EVSE side of K1/K2), charged at
  ``dV/dt = I_limit / C`` for precharge and the cable check, and the cable side, which
  follows the link while K1 and K2 are closed, the battery while the EV contactor is closed, and
  otherwise bleeds down.
* **Battery**: SoC, open-circuit voltage linear in SoC, internal resistance.
* **Inlet**: a thermal mass heated by ``I^2 R`` and cooled to ambient through a thermal resistance,
  read by a sensor with its own lag, so the temperature trails the current (thermal inertia).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields

from v2gtool.hw.cp import PWM_OFF_DUTY, CpReading, CpState, pilot_levels
from v2gtool.hw.interfaces import DcMeasurement, Hardware, Pole

#: The longest step of a plant at rest (:attr:`SimPlant.rest_step_s`).
REST_STEP_S = 1.0


class SimClock:
    """A virtual monotonic clock. :meth:`sleep` advances it in steps of at most ``resolution``
    seconds and calls every attached stepper with each step's length."""

    def __init__(self, start: float = 0.0, resolution: float = 0.001) -> None:
        self._t = start
        self.resolution = resolution
        self._steppers: list[Callable[[float], None]] = []

    def attach(self, stepper: Callable[[float], None]) -> None:
        self._steppers.append(stepper)

    def now(self) -> float:
        return self._t

    def sleep(self, seconds: float) -> None:
        """Advance simulated time by *seconds* (the ``Clock`` protocol's wait)."""
        remaining = seconds
        while remaining > 1e-12:
            dt = min(self.resolution, remaining)
            self.leap(dt)
            remaining -= dt

    advance = sleep

    def leap(self, seconds: float) -> None:
        """Advance simulated time by *seconds* in one integration step: for a plant at rest
        (:attr:`SimPlant.at_rest`), whose decays the model integrates in closed form."""
        for step in self._steppers:
            step(seconds)
        self._t += seconds


class Fault(enum.Enum):
    """Injectable faults of the model (scenario key ``fault``)."""

    WELD = "weld"
    STUCK_OPEN = "stuck_open"
    FEEDBACK_MISMATCH = "feedback_mismatch"
    DIODE_MISSING = "diode_missing"
    IMD_SELF_TEST = "imd_self_test"


@dataclass
class SimParameters:
    """Every constant of the model; a scenario's ``[plant]`` table overrides any of them."""

    # Contactors (datasheet-like operating times)
    contactor_close_time_s: float = 0.030
    contactor_open_time_s: float = 0.015
    # IMD
    insulation_ohm: float = 5.0e6
    imd_settling_tau_s: float = 0.8
    imd_self_test_s: float = 1.5
    y_capacitance_f: float = 1.0e-6
    # Power module and DC link
    evse_max_voltage_v: float = 920.0
    evse_max_current_a: float = 300.0
    voltage_slew_v_per_s: float = 500.0
    current_slew_a_per_s: float = 5000.0
    link_capacitance_f: float = 0.005
    link_bleed_tau_s: float = 2.0
    active_discharge_v_per_s: float = 500.0
    cable_bleed_tau_s: float = 0.3
    # Battery (vehicle)
    battery_capacity_ah: float = 150.0
    soc: float = 0.5
    ocv_empty_v: float = 330.0
    ocv_full_v: float = 420.0
    internal_resistance_ohm: float = 0.05
    ev_max_voltage_v: float = 450.0
    # Inlet thermal model
    ambient_c: float = 25.0
    inlet_resistance_ohm: float = 0.0008
    inlet_heat_capacity_j_per_k: float = 300.0
    inlet_thermal_resistance_k_per_w: float = 0.5
    sensor_tau_s: float = 3.0

    @classmethod
    def field_names(cls) -> frozenset[str]:
        return frozenset(f.name for f in fields(cls))


class _PowerMode(enum.Enum):
    OFF = "off"
    VOLTAGE = "voltage"
    CURRENT = "current"


@dataclass
class _Relay:
    coil: bool = False
    closed: bool = False
    timer: float = 0.0


@dataclass
class SimPlant:
    """The whole modelled station and vehicle; :meth:`step` integrates it over *dt* seconds."""

    params: SimParameters = field(default_factory=SimParameters)
    ev_state: CpState = CpState.A
    evse_state_f: bool = False
    duty_percent: float = PWM_OFF_DUTY
    estop: bool = False
    ev_contactor_closed: bool = False
    faults: dict[Fault, set[Pole]] = field(default_factory=dict)
    relays: dict[Pole, _Relay] = field(default_factory=lambda: {p: _Relay() for p in Pole})
    link_v: float = 0.0
    cable_v: float = 0.0
    current_a: float = 0.0
    inlet_c: float = math.nan
    sensor_c: float = math.nan
    imd_reading_ohm: float = math.nan
    imd_self_test_remaining: float | None = None
    imd_self_test_passed: bool | None = None
    _mode: _PowerMode = _PowerMode.OFF
    _target: float = 0.0
    _current_limit: float = 0.0
    _voltage_ceiling: float = math.inf
    _last_cable_v: float = 0.0

    def __post_init__(self) -> None:
        if math.isnan(self.inlet_c):
            self.inlet_c = self.params.ambient_c
            self.sensor_c = self.params.ambient_c
        if math.isnan(self.imd_reading_ohm):
            self.imd_reading_ohm = self.params.insulation_ohm

    # -- derived quantities ----------------------------------------------------------------------

    @property
    def contactors_closed(self) -> bool:
        return all(r.closed for r in self.relays.values())

    @property
    def battery_capacity_wh(self) -> float:
        """Usable energy of the battery at its mean open-circuit voltage."""
        p = self.params
        return p.battery_capacity_ah * (p.ocv_empty_v + p.ocv_full_v) / 2

    @property
    def ocv_v(self) -> float:
        p = self.params
        return p.ocv_empty_v + (p.ocv_full_v - p.ocv_empty_v) * min(max(p.soc, 0.0), 1.0)

    @property
    def battery_terminal_v(self) -> float:
        return self.ocv_v + self.current_a * self.params.internal_resistance_ohm

    @property
    def at_rest(self) -> bool:
        """Nothing in the plant is driven: no contact switching, no current and none commanded on a
        closed path, no voltage regulated, no IMD self-test. What still changes then decays by
        itself (the output bleeding down and the IMD settling, integrated in closed form; the inlet
        cooling, slow against :data:`REST_STEP_S`), so the plant may be stepped coarsely."""
        idle_module = self._mode is _PowerMode.OFF or (self._mode is _PowerMode.CURRENT and not self.power_path_closed)
        return (
            self.current_a == 0.0
            and idle_module
            and self.imd_self_test_remaining is None
            and not any(self._switching(pole, relay) for pole, relay in self.relays.items())
        )

    @property
    def rest_step_s(self) -> float:
        """The longest step the plant at rest is integrated in: :data:`REST_STEP_S`, and short against
        the inlet's thermal time constant R_th C, the one decay integrated step by step (Euler)."""
        p = self.params
        return min(REST_STEP_S, 0.01 * p.inlet_thermal_resistance_k_per_w * p.inlet_heat_capacity_j_per_k)

    @property
    def power_path_closed(self) -> bool:
        """Energy can flow: K1, K2 and the vehicle's contactor are all closed."""
        return self.contactors_closed and self.ev_contactor_closed

    def has_fault(self, fault: Fault, pole: Pole | None = None) -> bool:
        poles = self.faults.get(fault)
        if poles is None:
            return False
        return pole is None or pole in poles

    def inject(self, fault: Fault, poles: set[Pole] | None = None) -> None:
        self.faults[fault] = set(Pole) if poles is None else set(poles)

    def clear(self, fault: Fault | None = None) -> None:
        """Remove one fault, or all (a repair). A welded contact opens if its coil is released."""
        if fault is None:
            self.faults.clear()
        else:
            self.faults.pop(fault, None)

    # -- the parts' views --------------------------------------------------------------------------

    def cp_reading(self) -> CpReading:
        state = CpState.F if self.evse_state_f else self.ev_state
        high, low = pilot_levels(state, self.duty_percent, diode=not self.has_fault(Fault.DIODE_MISSING))
        return CpReading(high, low, self.duty_percent)

    def feedback(self) -> dict[Pole, bool]:
        return {
            pole: (not relay.closed) if self.has_fault(Fault.FEEDBACK_MISMATCH, pole) else relay.closed
            for pole, relay in self.relays.items()
        }

    def measure(self) -> DcMeasurement:
        return DcMeasurement(self.link_v, self.cable_v, self.current_a)

    # -- commands ------------------------------------------------------------------------------------

    def regulate_voltage(self, volts: float, current_limit_a: float) -> None:
        self._mode, self._target = _PowerMode.VOLTAGE, min(volts, self.params.evse_max_voltage_v)
        self._current_limit = min(abs(current_limit_a), self.params.evse_max_current_a)

    def regulate_current(self, amps: float, max_voltage: float = math.inf) -> None:
        limit = self.params.evse_max_current_a
        self._mode, self._target = _PowerMode.CURRENT, max(-limit, min(limit, amps))
        self._voltage_ceiling = min(max_voltage, self.params.evse_max_voltage_v)

    def power_off(self) -> None:
        self._mode, self._target = _PowerMode.OFF, 0.0

    def count_charge(self, amps: float, dt: float) -> None:
        """Coulomb counting: *amps* (signed, + charges) for *dt* seconds move the battery's SoC."""
        self.params.soc += amps * dt / 3600.0 / self.params.battery_capacity_ah

    # -- integration -----------------------------------------------------------------------------------

    def step(self, dt: float) -> None:
        self._step_relays(dt)
        self._step_power(dt)
        self._step_imd(dt)
        self._step_thermal(dt)

    def _switching(self, pole: Pole, relay: _Relay) -> bool:
        """The contact is on its way to the coil's state (a weld or a stuck-open contact never is)."""
        if relay.coil == relay.closed:
            return False
        return not self.has_fault(Fault.STUCK_OPEN if relay.coil else Fault.WELD, pole)

    def _step_relays(self, dt: float) -> None:
        p = self.params
        for pole, relay in self.relays.items():
            if self._switching(pole, relay):
                relay.timer += dt
                if relay.timer >= (p.contactor_close_time_s if relay.coil else p.contactor_open_time_s):
                    relay.closed, relay.timer = relay.coil, 0.0
            elif relay.coil == relay.closed:
                relay.timer = 0.0

    def _slew(self, value: float, target: float, rate: float, dt: float) -> float:
        step = rate * dt
        return target if abs(target - value) <= step else value + math.copysign(step, target - value)

    def _step_power(self, dt: float) -> None:
        p = self.params
        if not self.ev_state.energy_transfer_allowed and abs(self.current_a) < 1.0:
            self.ev_contactor_closed = False  # out of C/D the vehicle opens its contactor at ~0 A
        if self.power_path_closed:
            # Link, cable and battery terminals are one node: the module controls the current.
            if self._mode is _PowerMode.VOLTAGE:
                wanted = (self._target - self.ocv_v) / p.internal_resistance_ohm
                wanted = max(-self._current_limit, min(self._current_limit, wanted))
            elif self._mode is _PowerMode.CURRENT:
                wanted = self._target
                if wanted > 0:  # constant-voltage limit: no more than brings the terminals to the ceiling
                    ceiling_a = (self._voltage_ceiling - self.ocv_v) / p.internal_resistance_ohm
                    wanted = min(wanted, max(0.0, ceiling_a))
            else:
                wanted = 0.0
            self.current_a = self._slew(self.current_a, wanted, p.current_slew_a_per_s, dt)
            self.count_charge(self.current_a, dt)
            self.link_v = self.cable_v = self.battery_terminal_v
        else:
            # An open path carries no current: the module can only (dis)charge its output capacitor.
            self.current_a = 0.0
            if self._mode is _PowerMode.VOLTAGE:
                # Precharging the output capacitance: dV/dt = I / C, within the module's slew rate.
                rate = min(p.voltage_slew_v_per_s, self._current_limit / p.link_capacitance_f)
                self.link_v = self._slew(self.link_v, self._target, rate, dt)
            elif self._mode is _PowerMode.OFF:
                self.link_v = self._slew(self.link_v, 0.0, p.active_discharge_v_per_s, dt)
            else:
                self.link_v *= math.exp(-dt / p.link_bleed_tau_s)
            if self.contactors_closed:
                self.cable_v = self.link_v
            elif self.ev_contactor_closed:
                self.cable_v = self.ocv_v
            else:
                self.cable_v *= math.exp(-dt / p.cable_bleed_tau_s)

    def _step_imd(self, dt: float) -> None:
        p = self.params
        dv_dt = (self.cable_v - self._last_cable_v) / dt
        self._last_cable_v = self.cable_v
        # The Y-capacitance charging current C_Y dV/dt adds to the leakage the IMD sees.
        apparent_conductance = 1.0 / p.insulation_ohm + p.y_capacitance_f * abs(dv_dt) / max(
            self.cable_v, 10.0
        )
        apparent = 1.0 / apparent_conductance
        alpha = 1.0 - math.exp(-dt / p.imd_settling_tau_s)
        self.imd_reading_ohm = math.exp(
            math.log(self.imd_reading_ohm) + alpha * (math.log(apparent) - math.log(self.imd_reading_ohm))
        )
        if self.imd_self_test_remaining is not None:
            self.imd_self_test_remaining -= dt
            if self.imd_self_test_remaining <= 0.0:
                self.imd_self_test_remaining = None
                self.imd_self_test_passed = not self.has_fault(Fault.IMD_SELF_TEST)

    def _step_thermal(self, dt: float) -> None:
        p = self.params
        heating_w = self.current_a**2 * p.inlet_resistance_ohm
        cooling_w = (self.inlet_c - p.ambient_c) / p.inlet_thermal_resistance_k_per_w
        self.inlet_c += dt * (heating_w - cooling_w) / p.inlet_heat_capacity_j_per_k
        self.sensor_c += (self.inlet_c - self.sensor_c) * (1.0 - math.exp(-dt / p.sensor_tau_s))


# -- the Protocol views of the plant ----------------------------------------------------------------


class SimControlPilot:
    def __init__(self, plant: SimPlant) -> None:
        self._plant = plant

    def set_duty(self, percent: float) -> None:
        self._plant.duty_percent = percent

    def read(self) -> CpReading:
        return self._plant.cp_reading()


class SimContactors:
    def __init__(self, plant: SimPlant) -> None:
        self._plant = plant

    def drive(self, closed: bool) -> None:
        for relay in self._plant.relays.values():
            relay.coil = closed

    def feedback(self) -> dict[Pole, bool]:
        return self._plant.feedback()


class SimIsolationMonitor:
    def __init__(self, plant: SimPlant) -> None:
        self._plant = plant

    def start_self_test(self) -> None:
        self._plant.imd_self_test_remaining = self._plant.params.imd_self_test_s
        self._plant.imd_self_test_passed = None

    def self_test_result(self) -> bool | None:
        return self._plant.imd_self_test_passed

    def resistance_ohm(self) -> float | None:
        return None if self._plant.imd_self_test_remaining is not None else self._plant.imd_reading_ohm


class SimPowerModule:
    def __init__(self, plant: SimPlant) -> None:
        self._plant = plant

    def regulate_voltage(self, volts: float, current_limit_a: float) -> None:
        self._plant.regulate_voltage(volts, current_limit_a)

    def regulate_current(self, amps: float, max_voltage: float = math.inf) -> None:
        self._plant.regulate_current(amps, max_voltage)

    def off(self) -> None:
        self._plant.power_off()

    def measure(self) -> DcMeasurement:
        return self._plant.measure()


class SimInletTemperature:
    def __init__(self, plant: SimPlant) -> None:
        self._plant = plant

    def temperatures_c(self) -> tuple[float, ...]:
        return (self._plant.sensor_c,)


class SimEmergencyStop:
    def __init__(self, plant: SimPlant) -> None:
        self._plant = plant

    def pressed(self) -> bool:
        return self._plant.estop


def sim_hardware(
    plant: SimPlant | None = None, clock: SimClock | None = None
) -> tuple[Hardware, SimPlant, SimClock]:
    """A complete simulated station: the :class:`Hardware` bundle, its plant and its clock."""
    plant = plant or SimPlant()
    clock = clock or SimClock()
    clock.attach(plant.step)
    hw = Hardware(
        backend="sim",
        clock=clock,
        control_pilot=SimControlPilot(plant),
        contactors=SimContactors(plant),
        isolation_monitor=SimIsolationMonitor(plant),
        power_module=SimPowerModule(plant),
        inlet_temperature=SimInletTemperature(plant),
        emergency_stop=SimEmergencyStop(plant),
    )
    return hw, plant, clock


class SimVehicle:
    """The simulated vehicle's side of the session (what it would report over ISO 15118-20)."""

    def __init__(self, plant: SimPlant) -> None:
        self._plant = plant

    def battery_voltage(self) -> float:
        return self._plant.battery_terminal_v

    def max_voltage(self) -> float:
        return self._plant.params.ev_max_voltage_v

    def soc_percent(self) -> float:
        return 100.0 * self._plant.params.soc

    def precharge_done(self) -> None:
        self._plant.ev_contactor_closed = True

    def session_stopped(self) -> None:
        self._plant.ev_contactor_closed = False
