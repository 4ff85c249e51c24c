"""IEC 61851-23 insulation thresholds of both editions and the cable-check voltage (Formula CC.1)."""

from __future__ import annotations

import pytest

from v2gtool.errors import V2GToolError
from v2gtool.hw.isolation import Edition, IsolationProfile, IsolationVerdict, cable_check_voltage


@pytest.mark.parametrize(
    ("ev_max", "evse_max", "expected"),
    [
        (400.0, 920.0, 450.0),
        (470.0, 920.0, 500.0),
        (500.0, 920.0, 500.0),
        (400.0, 420.0, 420.0),
        (800.0, 920.0, 880.0),
        (850.0, 920.0, 920.0),
    ],
)
def test_formula_cc1(ev_max: float, evse_max: float, expected: float) -> None:
    assert cable_check_voltage(ev_max, evse_max) == pytest.approx(expected)


@pytest.mark.parametrize(("ev_max", "evse_max"), [(0.0, 500.0), (400.0, -1.0), (float("nan"), 500.0)])
def test_formula_cc1_rejects_nonsense(ev_max: float, evse_max: float) -> None:
    with pytest.raises(V2GToolError):
        cable_check_voltage(ev_max, evse_max)


def test_2023_has_a_fixed_fault_level_and_no_warning() -> None:
    profile = IsolationProfile(Edition.IEC_61851_23_2023, 1000.0)
    assert profile.evaluate(99_999.0).verdict is IsolationVerdict.FAULT
    assert profile.evaluate(100_000.0).verdict is IsolationVerdict.PASS
    assert profile.evaluate(400_000.0).verdict is IsolationVerdict.PASS
    assert profile.warning_threshold_ohm is None


def test_2014_scales_with_rated_voltage() -> None:
    profile = IsolationProfile(Edition.IEC_61851_23_2014, 500.0)
    assert profile.fault_threshold_ohm == 50_000.0 and profile.warning_threshold_ohm == 250_000.0
    assert profile.evaluate(49_000.0).verdict is IsolationVerdict.FAULT
    assert profile.evaluate(50_000.0).verdict is IsolationVerdict.WARNING
    assert profile.evaluate(249_999.0).verdict is IsolationVerdict.WARNING
    assert profile.evaluate(250_000.0).verdict is IsolationVerdict.PASS
