"""The cable check sequence of v2gtool.hw.cablecheck on the simulated station."""

from __future__ import annotations

from tests.hw.conftest import make_station
from v2gtool.hw.cablecheck import CableCheckSettings, run_cable_check
from v2gtool.hw.isolation import SAFE_OUTPUT_V, IsolationVerdict

SETTINGS = CableCheckSettings(ev_max_voltage_v=450.0, evse_max_voltage_v=920.0)


def test_a_cable_check_right_after_a_session_discharges_the_output_first() -> None:
    """Step 1 of the sequence: the output below 60 V before the contactors close. A charger serving
    one session after another finds the DC link still charged from the last one."""
    station = make_station().station
    first = run_cable_check(station, SETTINGS)
    assert first.failure is None and first.result is not None
    station.regulate_voltage(400.0)  # precharge, then the session ends at once
    assert station.wait_for(lambda: station.measurement.link_v > 390.0, 5.0)
    station.session_stop()
    assert station.wait_for(lambda: station.measurement.cable_v < SAFE_OUTPUT_V, 2.0)
    assert station.measurement.link_v > SAFE_OUTPUT_V  # what the interlock would refuse to close onto

    second = run_cable_check(station, SETTINGS)
    assert second.failure is None and second.result is not None
    assert second.result.verdict is not IsolationVerdict.FAULT
    assert station.measurement.link_v < SAFE_OUTPUT_V  # ramped down again before reporting
