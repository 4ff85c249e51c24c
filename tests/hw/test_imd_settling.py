"""The IMD's measuring time: ramp transients are not judged, settled readings and real faults are."""

from __future__ import annotations

import pytest

from tests.hw.conftest import RATED_V, first, make_station, names
from v2gtool.hw.cablecheck import CableCheckSettings, run_cable_check
from v2gtool.hw.events import IsolationFault
from v2gtool.hw.isolation import IMD_RESPONSE_TIME_S, IsolationVerdict
from v2gtool.hw.sequence import power_up


def plant(insulation_ohm: float) -> str:
    return f'[plant]\ninsulation_ohm = {insulation_ohm}\n[[at]]\nt = 0\ncp = "C"\n'


def test_ramp_transients_after_the_cable_check_are_no_isolation_fault() -> None:
    """110 kOhm passes the check; the ramp-down and precharge dips (C_Y dV/dt) must not trip it."""
    setup = make_station(plant(110e3))
    report = power_up(setup.station, setup.vehicle, RATED_V)
    assert report.cable_check.result is not None
    assert report.cable_check.result.verdict is IsolationVerdict.PASS
    setup.station.request_current(100.0)
    setup.station.run(20.0)
    assert "IsolationFault" not in names(setup.station.events)
    assert setup.station.interlock.energy_transfer


@pytest.mark.parametrize(("true_ohm", "verdict"), [(101e3, IsolationVerdict.PASS), (99e3, IsolationVerdict.FAULT)])
def test_the_cable_check_samples_the_settled_reading(true_ohm: float, verdict: IsolationVerdict) -> None:
    setup = make_station(plant(true_ohm))
    report = run_cable_check(setup.station, CableCheckSettings(setup.vehicle.max_voltage(), RATED_V))
    assert report.result is not None and report.result.verdict is verdict
    assert report.result.resistance_ohm == pytest.approx(true_ohm, rel=0.01)


@pytest.mark.parametrize("fault_ohm", [90e3, 20e3])
def test_a_real_fault_while_charging_trips_within_the_imd_response_time(fault_ohm: float) -> None:
    setup = make_station(plant(5e6))
    power_up(setup.station, setup.vehicle, RATED_V)
    setup.station.request_current(100.0)
    setup.station.run(5.0)
    dropped = setup.clock.now()
    setup.plant.params.insulation_ohm = fault_ohm
    setup.station.run(IMD_RESPONSE_TIME_S)
    fault = first(setup.station.events, "IsolationFault")
    assert isinstance(fault, IsolationFault) and fault.resistance_ohm < 100e3
    assert dropped < fault.t <= dropped + IMD_RESPONSE_TIME_S
    assert not setup.station.interlock.energy_transfer
