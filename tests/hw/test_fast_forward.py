"""SimSetup.fast_forward: an idle station on a plant at rest catches up in coarse steps, never across a
scripted step, and an active one exactly as Station.run does."""

from __future__ import annotations

import pytest

from tests.hw.conftest import RATED_V, first, make_station
from v2gtool.hw.backends import SimSetup
from v2gtool.hw.cp import CpState
from v2gtool.hw.events import CpStateChanged, EmergencyStopChanged
from v2gtool.hw.sequence import power_up


def count_steps(setup: SimSetup) -> list[int]:
    """A counter of the station's control ticks from now on."""
    counted = [0]
    step = setup.station.step

    def counting() -> None:
        counted[0] += 1
        step()

    setup.station.step = counting  # type: ignore[method-assign]
    return counted


def after_a_session(setup: SimSetup) -> None:
    """Charge for a second, then stop: the output is live and the inlet warm when the idle starts."""
    power_up(setup.station, setup.vehicle, RATED_V)
    setup.station.request_current(200.0)
    setup.station.run(1.0)
    setup.station.request_current(0.0)
    setup.station.session_stop()
    setup.vehicle.session_stopped()


def test_ten_idle_minutes_cost_a_few_hundred_ticks() -> None:
    setup = make_station()
    setup.station.run(0.01)
    ticks = count_steps(setup)
    start = setup.clock.now()
    setup.fast_forward(600.0)
    assert setup.clock.now() == pytest.approx(start + 600.0)
    assert ticks[0] <= 650  # one per second at rest, not 600 000 at 1 ms


def test_the_plant_at_rest_ends_where_fine_steps_end() -> None:
    """The output bleeds down and the inlet cools alike whether the idle minute is stepped by 1 ms or
    leapt: the decays are integrated in closed form, the thermal one in steps short against R_th C."""
    fine, coarse = make_station(), make_station()
    for setup in (fine, coarse):
        after_a_session(setup)
        setup.station.run(0.5)  # the contactors open
    fine.station.run(60.0)
    ticks = count_steps(coarse)
    coarse.fast_forward(60.0)
    assert ticks[0] < 200
    assert coarse.clock.now() == pytest.approx(fine.clock.now())
    assert coarse.plant.inlet_c == pytest.approx(fine.plant.inlet_c, rel=1e-4)
    assert coarse.plant.sensor_c == pytest.approx(fine.plant.sensor_c, rel=1e-4)
    assert coarse.plant.imd_reading_ohm == pytest.approx(fine.plant.imd_reading_ohm, rel=1e-4)
    assert coarse.plant.link_v == pytest.approx(fine.plant.link_v, abs=1e-6)
    assert coarse.plant.cable_v == pytest.approx(fine.plant.cable_v, abs=1e-6)
    assert coarse.plant.inlet_c > coarse.plant.params.ambient_c  # still cooling: not at a fixed point


def test_a_scripted_step_is_seen_within_a_tick_of_its_time() -> None:
    setup = make_station('[[at]]\nt = 0\ncp = "C"\n[[at]]\nt = 100.25\nestop = true\n[[at]]\nt = 300.5\ncp = "A"\n')
    setup.station.run(0.01)
    setup.fast_forward(400.0)
    pressed = first(setup.station.events, "EmergencyStopChanged")
    assert isinstance(pressed, EmergencyStopChanged) and pressed.pressed
    assert pressed.t == pytest.approx(100.25, abs=0.0011)
    unplugged = [e for e in setup.station.events if isinstance(e, CpStateChanged) and e.state is CpState.A]
    assert len(unplugged) == 1 and unplugged[0].t == pytest.approx(300.5, abs=0.0011)


def test_an_active_station_runs_tick_for_tick_as_station_run() -> None:
    run, fast = make_station(), make_station()
    for setup in (run, fast):
        power_up(setup.station, setup.vehicle, RATED_V)
        setup.station.request_current(150.0)
    ticks = count_steps(fast)
    run.station.run(2.0)
    fast.fast_forward(2.0)
    assert ticks[0] >= 2000
    assert fast.plant.params.soc == run.plant.params.soc
    assert fast.plant.inlet_c == run.plant.inlet_c
    assert fast.clock.now() == run.clock.now()
