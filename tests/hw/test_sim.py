"""The sim backend's physics, in simulated time: relays, CP levels, IMD settling and transients,
power module and precharge, battery, and the inlet's thermal lag."""

from __future__ import annotations

import math

import pytest

from v2gtool.hw.cp import CpState
from v2gtool.hw.interfaces import Pole
from v2gtool.hw.sim import Fault, SimClock, SimParameters, SimPlant, sim_hardware


def plant_and_clock(**params: float) -> tuple[SimPlant, SimClock]:
    _, plant, clock = sim_hardware(SimPlant(SimParameters(**params)))
    return plant, clock


def test_clock_steps_at_its_resolution() -> None:
    clock = SimClock(resolution=0.001)
    steps: list[float] = []
    clock.attach(steps.append)
    clock.sleep(0.0105)
    assert clock.now() == pytest.approx(0.0105)
    assert len(steps) == 11 and steps[-1] == pytest.approx(0.0005)


def test_relays_close_and_open_after_their_operating_times() -> None:
    plant, clock = plant_and_clock(contactor_close_time_s=0.03, contactor_open_time_s=0.015)
    for relay in plant.relays.values():
        relay.coil = True
    clock.sleep(0.029)
    assert not any(plant.feedback().values())
    clock.sleep(0.002)
    assert all(plant.feedback().values())
    for relay in plant.relays.values():
        relay.coil = False
    clock.sleep(0.014)
    assert all(plant.feedback().values())
    clock.sleep(0.002)
    assert not any(plant.feedback().values())


def test_relay_faults() -> None:
    plant, clock = plant_and_clock()
    plant.inject(Fault.WELD, {Pole.K1})
    plant.inject(Fault.FEEDBACK_MISMATCH, {Pole.K2})
    assert plant.feedback() == {Pole.K1: False, Pole.K2: True}
    for relay in plant.relays.values():
        relay.coil = True
    clock.sleep(0.1)
    for relay in plant.relays.values():
        relay.coil = False
    clock.sleep(0.1)
    assert plant.relays[Pole.K1].closed and not plant.relays[Pole.K2].closed
    assert plant.feedback() == {Pole.K1: True, Pole.K2: True}
    plant.clear(Fault.WELD)
    clock.sleep(0.1)
    assert not plant.relays[Pole.K1].closed


@pytest.mark.parametrize(
    ("state", "high"),
    [(CpState.A, 12.0), (CpState.B, 9.0), (CpState.C, 6.0), (CpState.D, 3.0), (CpState.E, 0.0)],
)
def test_cp_levels(state: CpState, high: float) -> None:
    plant, _ = plant_and_clock()
    plant.ev_state = state
    plant.duty_percent = 5.0
    reading = plant.cp_reading()
    assert reading.high_v == high and reading.state is state


def test_imd_settles_and_dips_during_a_ramp() -> None:
    plant, clock = plant_and_clock(insulation_ohm=1.0e6, imd_settling_tau_s=0.8)
    plant.params.insulation_ohm = 200e3
    clock.sleep(0.8)
    # First-order settling in log-resistance: after one time constant 63 % of the way (in log).
    expected = math.exp(math.log(1e6) + (1 - math.exp(-1)) * (math.log(200e3) - math.log(1e6)))
    assert plant.imd_reading_ohm == pytest.approx(expected, rel=0.01)
    clock.sleep(8.0)
    assert plant.imd_reading_ohm == pytest.approx(200e3, rel=0.001)
    # Ramp the output with the contactors closed: the Y-capacitance current looks like leakage.
    for relay in plant.relays.values():
        relay.coil = True
    clock.sleep(0.1)
    plant.regulate_voltage(500.0, 2.0)
    lowest = plant.imd_reading_ohm
    for _ in range(100):
        clock.sleep(0.01)
        lowest = min(lowest, plant.imd_reading_ohm)
    assert lowest < 0.9 * 200e3
    clock.sleep(8.0)
    assert plant.imd_reading_ohm == pytest.approx(200e3, rel=0.01)


def _precharged() -> tuple[SimPlant, SimClock]:
    """A 100 Ah, 50 mOhm battery at 50 % SoC, the link precharged to it and both sides closed."""
    plant, clock = plant_and_clock(soc=0.5, battery_capacity_ah=100.0, internal_resistance_ohm=0.05)
    plant.ev_state = CpState.C
    for relay in plant.relays.values():
        relay.coil = True
    plant.regulate_voltage(plant.ocv_v, 2.0)
    clock.sleep(2.0)
    assert plant.link_v == pytest.approx(plant.ocv_v, abs=0.5)
    plant.ev_contactor_closed = True
    return plant, clock


def test_precharge_and_charging_move_soc_and_terminal_voltage() -> None:
    plant, clock = _precharged()
    plant.regulate_current(100.0)
    clock.sleep(36.0)  # 1 Ah into 100 Ah: +1 % SoC (minus the ramp)
    assert plant.params.soc == pytest.approx(0.51, abs=0.0005)
    assert plant.link_v == pytest.approx(plant.ocv_v + 100.0 * 0.05)
    plant.regulate_current(-100.0)
    clock.sleep(1.0)
    assert plant.current_a == -100.0 and plant.link_v == pytest.approx(plant.ocv_v - 5.0)


def test_inlet_temperature_lags_the_current() -> None:
    plant, _clock = plant_and_clock(
        inlet_resistance_ohm=0.001,
        inlet_thermal_resistance_k_per_w=0.5,
        inlet_heat_capacity_j_per_k=300.0,
        sensor_tau_s=3.0,
        ambient_c=25.0,
    )
    plant.current_a = 200.0  # hold the current: 40 W, 20 K final rise, tau 150 s
    plant.ev_contactor_closed = False
    heat = plant._step_thermal
    for _ in range(1000):
        heat(0.01)
    assert 25.0 < plant.sensor_c < plant.inlet_c < 25.0 + 20.0 * (1 - math.exp(-10.0 / 150.0)) + 0.01
    for _ in range(150_00):
        heat(0.1)
    assert plant.inlet_c == pytest.approx(45.0, abs=0.05)


def test_a_charging_current_falls_back_at_the_voltage_ceiling() -> None:
    """Constant-voltage limit (CC/CV): asked for 200 A with the terminals allowed 3 V above the open
    circuit voltage, the module carries what brings them there (3 V / 0.05 Ohm = 60 A, less as the
    charge lifts the open circuit voltage) and no more; a discharge is not held back by the ceiling."""
    plant, clock = _precharged()
    ceiling = plant.ocv_v + 3.0
    plant.regulate_current(200.0, ceiling)
    clock.sleep(5.0)
    assert plant.link_v == pytest.approx(ceiling, abs=0.01)
    assert 55.0 < plant.current_a == pytest.approx((ceiling - plant.ocv_v) / 0.05, abs=0.5)  # OCV creeps up
    plant.regulate_current(-100.0, ceiling)
    clock.sleep(2.0)
    assert plant.current_a == -100.0
