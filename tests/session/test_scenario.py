"""Scenario files: what a field engineer writes by hand is checked when it is read, each error in one
line naming the file and the key, before any session starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from v2gtool.errors import ConfigError
from v2gtool.iso20.evcc import Direction
from v2gtool.iso20.values import ServiceID, rational, to_float
from v2gtool.session import scenario as scenarios


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[charger]\nbpt = "false"', "[charger] bpt: expected true or false, got 'false'"),  # was truthy: V2G on
        ('[session]\npower = "11000"', "[session] power: expected a number, got '11000'"),
        ("[session]\nduration = nan", "[session] duration: expected a number, got nan"),  # was a traceback
        ("[session]\nduration = inf", "[session] duration: expected a number, got inf"),
        ("[session]\nduration = -5", "duration: -5 is not within 0 .. 4294967295"),  # was refused mid-session
        ("[session]\nduration = 5e9", "an xs:unsignedInt on the wire"),
        ("[session]\ntarget_soc = 150", "[session] target_soc: 150 is not within 0 .. 100 (%)"),
        ("[session]\npower = -5000", "[session] power: -5000 is not within 0 .. 10000000 (W, the direction gives "
                                     "the sign; at most 10 MW)"),
        # Beyond a RationalNumber (32767 x 10^127) failed the session at DC_ChargeParameterDiscovery, and
        # beyond any DC charging system is a typo.
        ("[vehicle]\nmax_charge_power = 1e308", "[vehicle] max_charge_power: 1e+308 W is above 10000000 W, more "
                                                "than any DC charging system"),
        ("[charger]\nmax_voltage = 1e200", "[charger] max_voltage: 1e+200 V is above 2000 V"),
        ("[charger]\nmax_voltage = 2500", "[charger] max_voltage: 2500 V is above 2000 V"),
        ("[vehicle]\nmax_discharge_current = 20000", "[vehicle] max_discharge_current: 20000 A is above 10000 A"),
        ("[session]\npower = 1e300", "[session] power: 1e+300 is not within 0 .. 10000000"),
        ("[session]\nstandby_for = -5", "[session] standby_for: -5 is not >= 0"),
        ("[session]\nstandby_for = 60", "[session] standby_for 60 s is not below the SECC's V2G_SECC_Sequence_Timeout"),
        ("[session]\nmetering_confirmation_interval = -3", "metering_confirmation_interval: -3 is not >= 0.001"),
        ("[session]\nmin_soc = 60\ntarget_soc = 50", "[session] min_soc 60 is above target_soc 50"),
        # Against the effective values: a key left out keeps its default (target 80 %, floor 20 %).
        ("[session]\nmin_soc = 90", "[session] min_soc 90 is above target_soc 80 (the default)"),
        ("[session]\ntarget_soc = 10", "[session] min_soc 20 (the default) is above target_soc 10"),
        ("[plant]\nocv_full_v = 300\nocv_empty_v = 400", "[plant] ocv_full_v 300 is not above ocv_empty_v 400"),
        ("[plant]\nocv_full_v = 300", "[plant] ocv_full_v 300 is not above ocv_empty_v 330"),
        # A maximum of 0 read as "no limit" downstream.
        ("[vehicle]\nmax_voltage = 0", "[vehicle] max_voltage: a maximum must be positive, got 0"),
        ("[charger]\nmax_discharge_power = 0", "[charger] max_discharge_power: a maximum must be positive"),
        ('[session]\nservice = "AC"', "[session] service: 'AC' is not DC or DC_BPT"),
        ("[session]\nservice = 2", "[session] service: invalid value 2"),
        ("[vehicle]\nmax_voltage = 100", "[vehicle]: min_voltage 250 is above max_voltage 100"),
        ("[charger]\nmax_charge_current = inf", "[charger] max_charge_current: expected a non-negative number"),
        ('[session]\ndirection = "discharge"\nservice = "DC"', "a discharge needs the DC_BPT service, not DC"),
    ],
)
def test_a_bad_scenario_is_one_config_error_naming_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as caught:
        scenarios.load(path)
    assert str(caught.value).startswith(f"scenario {path}: ") and message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_the_ceilings_fit_a_rational_number_and_an_option_beyond_one_names_the_option() -> None:
    for ceiling, _unit in scenarios.CEILINGS.values():
        assert to_float(rational(ceiling)) == ceiling  # what the wire carries for the largest limit allowed
    with pytest.raises(ConfigError, match=r"^--power: 1e\+300 is not within 0 \.\. 10000000 "):
        scenarios.load(None, power=1e300)


def test_options_that_contradict_each_other_are_refused() -> None:
    with pytest.raises(ConfigError, match=r"^a discharge needs the DC_BPT service, not DC$"):
        scenarios.load(None, service=ServiceID.DC, direction=Direction.DISCHARGE)


def test_a_good_scenario_keeps_its_values(tmp_path: Path) -> None:
    path = tmp_path / "good.toml"
    path.write_text('[session]\nservice = "DC_V2G"\ndirection = "discharge"\nduration = 600\ntarget_soc = 90\n'
                    "min_soc = 30\n[charger]\nbpt = false\n[vehicle]\nmax_voltage = 400\nmin_voltage = 300\n")
    scenario = scenarios.load(path, power=11000.0)
    assert (scenario.service, scenario.direction, scenario.duration) == (ServiceID.DC_BPT, Direction.DISCHARGE, 600.0)
    assert (scenario.target_soc, scenario.min_soc, scenario.bpt, scenario.power) == (90.0, 30.0, False, 11000.0)
    assert (scenario.vehicle.max_voltage, scenario.vehicle.min_voltage) == (400.0, 300.0)
