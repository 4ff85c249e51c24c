"""Charge management: PID thermal derating under a step in ambient temperature, and the SoC floor."""

from __future__ import annotations

import itertools
import logging
import math

import pytest

from v2gtool.errors import ConfigError
from v2gtool.hw.backends import SimSetup, sim_station
from v2gtool.hw.control import EVSE_SHUTDOWN_REJECTED, Pid, SocFloor, ThermalDerating
from v2gtool.hw.events import CurrentDerated, DischargeRefused
from v2gtool.hw.isolation import Edition, IsolationProfile
from v2gtool.hw.scenario import parse_scenario
from v2gtool.hw.sequence import power_up
from v2gtool.hw.station import StationConfig

RATED_V = 920.0
LIMIT_C = 90.0


def thermal_station(scenario: str, derating: ThermalDerating | None) -> SimSetup:
    config = StationConfig(
        IsolationProfile(Edition.IEC_61851_23_2023, RATED_V), tick_s=0.05, derating=derating
    )
    # Coarse 50 ms steps: the thermal time constant is 150 s, and the run is 50 simulated minutes.
    setup = sim_station(config, parse_scenario(scenario, "<thermal>"), resolution_s=0.05)
    power_up(setup.station, setup.vehicle, RATED_V)
    return setup


AMBIENT_STEP = """
[plant]
battery_capacity_ah = 1e6   # the SoC stays put over the run
[[at]]
t = 0
cp = "C"
[[at]]
t = 600
ambient_c = 60
"""


@pytest.mark.parametrize("requested", [300.0, -300.0], ids=["charging", "discharging"])
def test_step_in_ambient_keeps_inlet_under_limit_and_settles_without_oscillation(requested: float) -> None:
    setup = thermal_station(
        AMBIENT_STEP, ThermalDerating(rated_current_a=300.0, limit_c=LIMIT_C, margin_c=5.0)
    )
    setup.station.request_current(requested)
    trace: list[tuple[float, float, float]] = []
    while setup.clock.now() < 3000.0:
        setup.station.run(1.0)
        trace.append((setup.clock.now(), abs(setup.plant.current_a), setup.plant.inlet_c))
    params = setup.plant.params
    # Where the inlet sits at the setpoint: 60 degC + I^2 R R_th = 85 degC.
    settled_a = math.sqrt(
        (LIMIT_C - 5.0 - 60.0) / (params.inlet_resistance_ohm * params.inlet_thermal_resistance_k_per_w)
    )
    assert max(t for _, _, t in trace) < LIMIT_C
    before = [i for t, i, _ in trace if t < 600.0]
    assert min(before) == pytest.approx(300.0)  # no derating while the inlet is cool
    after = [i for t, i, _ in trace if t >= 600.0]
    assert after[-1] == pytest.approx(settled_a, abs=0.5)
    # No oscillation: once derating starts the current only falls (to within 0.2 A of noise) and
    # never undershoots the settled value by more than 0.5 A.
    rises = [b - a for a, b in itertools.pairwise(after)]
    assert max(rises) < 0.2
    assert min(after) > settled_a - 0.5
    last_quarter = [i for t, i, _ in trace if t >= 2250.0]
    assert max(last_quarter) - min(last_quarter) < 0.5
    derated = [e for e in setup.station.events if isinstance(e, CurrentDerated)]
    assert derated and derated[0].t > 600.0 and derated[0].inlet_c > 80.0


def test_derating_reacts_to_the_lagging_sensor_not_instantly() -> None:
    setup = thermal_station(AMBIENT_STEP, ThermalDerating(rated_current_a=300.0, limit_c=LIMIT_C))
    setup.station.request_current(300.0)
    setup.station.run(620.0)
    # 20 s after the ambient step the inlet has not yet warmed up: full current still flows.
    assert abs(setup.plant.current_a) == pytest.approx(300.0)


def test_a_broken_sensor_allows_no_current() -> None:
    derating = ThermalDerating(rated_current_a=200.0)
    assert derating.update(math.nan, 0.1) == 0.0


def test_derating_configuration_is_checked() -> None:
    with pytest.raises(ConfigError):
        ThermalDerating(rated_current_a=0.0)
    with pytest.raises(ConfigError):
        ThermalDerating(rated_current_a=100.0, limit_c=5.0, margin_c=10.0)


def test_pid_anti_windup_recovers_at_once() -> None:
    pid = Pid(kp=1.0, ki=1.0, kd=0.0, out_min=0.0, out_max=10.0)
    for _ in range(1000):  # long saturation at the top
        assert pid.update(setpoint=100.0, measurement=0.0, dt=0.1) == 10.0
    # Without anti-windup the integral would hold the output at 10 for a long time.
    assert pid.update(setpoint=0.0, measurement=5.0, dt=0.1) < 10.0 - 4.0


SOC_FLOOR = """
[plant]
soc = 0.2005
battery_capacity_ah = 10
[[at]]
t = 0
cp = "C"
"""


def test_discharge_stops_at_the_soc_floor_with_the_log_code(caplog: pytest.LogCaptureFixture) -> None:
    setup = thermal_station(SOC_FLOOR, None)
    setup.station.request_current(-50.0)
    caplog.set_level(logging.WARNING, logger="v2gtool.hw.control")
    setup.station.run(20.0)
    refused = [e for e in setup.station.events if isinstance(e, DischargeRefused)]
    assert len(refused) == 1
    assert refused[0].code == EVSE_SHUTDOWN_REJECTED and refused[0].floor_percent == 20.0
    assert refused[0].soc_percent <= 20.0
    # 0.05 % of 10 Ah at 50 A takes 0.36 s (plus the ramp): the refusal comes then, not later.
    assert refused[0].t - setup.clock.now() + 20.0 < 1.0
    assert setup.plant.current_a == 0.0
    assert any(EVSE_SHUTDOWN_REJECTED in r.getMessage() for r in caplog.records)
    setup.station.request_current(30.0)  # charging stays allowed
    setup.station.run(1.0)
    assert setup.plant.current_a == pytest.approx(30.0)


def test_soc_floor_default_and_bounds() -> None:
    floor = SocFloor()
    assert floor.floor_percent == 20.0
    assert floor.allows_discharge(20.1) and not floor.allows_discharge(20.0)
    with pytest.raises(ConfigError):
        SocFloor(120.0)


HOT_AMBIENT = """
[plant]
ambient_c = 80
battery_capacity_ah = 1e6
[[at]]
t = 0
cp = "C"
"""


def test_a_hot_inlet_never_passes_its_limit() -> None:
    """80 degC ambient, only 5 K below the setpoint, at full current: the derating takes the current
    back before the sensor (and the inlet itself) reaches the limit, over a long run."""
    setup = thermal_station(HOT_AMBIENT, ThermalDerating(rated_current_a=300.0, limit_c=LIMIT_C))
    setup.station.request_current(300.0)
    hottest = sensed = 0.0
    while setup.clock.now() < 1800.0:
        setup.station.run(1.0)
        hottest, sensed = max(hottest, setup.plant.inlet_c), max(sensed, setup.plant.sensor_c)
    assert hottest <= LIMIT_C and sensed <= LIMIT_C
    derated = [e for e in setup.station.events if isinstance(e, CurrentDerated)]
    assert derated and max(e.inlet_c for e in derated) <= LIMIT_C
    # Settled where the inlet sits at the setpoint: 80 degC + I^2 R R_th = 85 degC.
    params = setup.plant.params
    assert abs(setup.plant.current_a) == pytest.approx(
        math.sqrt(5.0 / (params.inlet_resistance_ohm * params.inlet_thermal_resistance_k_per_w)), abs=0.5
    )


def test_the_soc_floor_warns_once_per_crossing_and_rearms(caplog: pytest.LogCaptureFixture) -> None:
    """A session loop asks for the discharge again and again (every 250 ms): the refusal is reported
    once, not once per request; after charging above the floor it is armed again."""
    setup = thermal_station(SOC_FLOOR, None)
    caplog.set_level(logging.WARNING)
    for _ in range(80):
        setup.station.request_current(-50.0)
        setup.station.run(0.25)
    assert setup.station.discharge_refused and setup.plant.current_a == 0.0
    refused = [e for e in setup.station.events if isinstance(e, DischargeRefused)]
    warnings = [r for r in caplog.records if EVSE_SHUTDOWN_REJECTED in r.getMessage()]
    assert len(refused) == 1 and len(warnings) == 1
    setup.station.request_current(30.0)  # charge above the floor ...
    setup.station.run(3.0)
    for _ in range(40):  # ... and discharge down to it again: a new crossing, a new report
        setup.station.request_current(-50.0)
        setup.station.run(0.25)
    assert len([e for e in setup.station.events if isinstance(e, DischargeRefused)]) == 2
    assert len([r for r in caplog.records if EVSE_SHUTDOWN_REJECTED in r.getMessage()]) == 2
