"""TOML fault scenarios: parsing, errors as one line, and replay on the plant in simulated time."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2gtool.hw.cp import CpState
from v2gtool.hw.errors import ScenarioError
from v2gtool.hw.interfaces import Pole
from v2gtool.hw.scenario import load_scenario, parse_scenario, plugged_in
from v2gtool.hw.sim import Fault, SimClock, SimPlant

EXAMPLE = """
[plant]
insulation_ohm = 2.0e6
soc = 0.45

[[at]]
t = 2.5
fault = "weld"
poles = ["K1"]

[[at]]
t = 0
cp = "c"

[[at]]
t = 4.0
insulation_ohm = 40e3
estop = true
clear = "all"
"""


def test_parse_and_replay_in_time_order() -> None:
    scenario = parse_scenario(EXAMPLE, "example.toml")
    assert [s.t for s in scenario.steps] == [0.0, 2.5, 4.0]
    params = scenario.parameters()
    assert params.insulation_ohm == 2.0e6 and params.soc == 0.45
    plant, clock = SimPlant(params), SimClock()
    scenario.attach(plant, clock)
    clock.attach(plant.step)
    assert plant.ev_state is CpState.C and not plant.faults
    clock.sleep(2.499)
    assert not plant.faults
    clock.sleep(0.002)
    assert plant.has_fault(Fault.WELD, Pole.K1) and not plant.has_fault(Fault.WELD, Pole.K2)
    clock.sleep(1.5)
    assert plant.estop and plant.params.insulation_ohm == 40e3 and not plant.faults


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[[at]]\ncp = 'C'\n", "needs t"),
        ("[[at]]\nt = -1\n", "t must not be negative"),
        ("[[at]]\nt = 0\ncp = 'G'\n", "cp must be one of"),
        ("[[at]]\nt = 0\nfault = 'melt'\n", "fault must be one of"),
        ("[[at]]\nt = 0\npoles = ['K3']\n", "poles must be"),
        ("[[at]]\nt = 0\nestop = 1\n", "estop must be true or false"),
        ("[[at]]\nt = 0\nwobble = 1\n", "unknown key 'wobble'"),
        ("[plant]\ninsulation_ohm = 0\n", "insulation_ohm must be positive"),
        ("[plant]\nsoc = 1.5\n", "soc is a fraction"),
        ("[plant]\nsoc = 'half'\n", "soc must be a finite number"),
        ("[plant]\nsoc = nan\n", "finite number"),
        ("surprise = 1\n", "unknown key 'surprise'"),
        ("[[at]\n", "scenario bad.toml"),
    ],
)
def test_errors_are_one_line_and_name_the_place(text: str, message: str) -> None:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "bad.toml")
    assert message in str(info.value)
    assert "\n" not in str(info.value) and "bad.toml" in str(info.value)


def test_missing_file_is_a_scenario_error(tmp_path: Path) -> None:
    with pytest.raises(ScenarioError, match="cannot read scenario"):
        load_scenario(tmp_path / "none.toml")


_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)
_keys = st.sampled_from(["t", "cp", "estop", "fault", "poles", "clear", "soc", "insulation_ohm", "x"])


@settings(max_examples=300)
@given(st.text(max_size=200))
def test_fuzz_text_only_raises_scenario_error(text: str) -> None:
    with contextlib.suppress(ScenarioError):
        parse_scenario(text, "fuzz")


def _toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.encode("unicode_escape").decode().replace('"', '\\"') + '"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f'"{k}" = {_toml_value(v)}' for k, v in value.items()) + "}"
    return '""'


@settings(max_examples=300)
@given(st.lists(st.dictionaries(_keys, _values, max_size=5), max_size=4))
def test_fuzz_structured_steps_only_raise_scenario_error(steps: list[dict[str, object]]) -> None:
    text = "".join(
        "[[at]]\n" + "".join(f"{k} = {_toml_value(v)}\n" for k, v in step.items() if v is not None)
        for step in steps
    )
    try:
        scenario = parse_scenario(text, "fuzz")
    except ScenarioError:
        return
    plant, clock = SimPlant(scenario.parameters()), SimClock()
    scenario.attach(plant, clock)
    clock.attach(plant.step)
    clock.sleep(0.01)


def test_a_file_that_only_unplugs_later_has_the_vehicle_plugged_in_until_then() -> None:
    """The unplug example of ``session run --scenario unplug.toml``: CP C from t = 0, A at 30 s."""
    unplug = plugged_in(parse_scenario('[[at]]\nt = 30.0\ncp = "A"\n', "unplug.toml"))
    assert [(step.t, step.cp) for step in unplug.steps if step.cp is not None] == [(0.0, CpState.C), (30.0, CpState.A)]
    absent = parse_scenario('[[at]]\nt = 0\ncp = "A"\n[[at]]\nt = 5\ncp = "C"\n', "late.toml")
    assert plugged_in(absent) == absent  # a file that scripts t = 0 itself says what the start is
