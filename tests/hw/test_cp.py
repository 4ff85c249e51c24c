"""IEC 61851-1 Control Pilot: state bands, the diode check and the duty <-> current map."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from v2gtool.hw.cp import (
    CpError,
    CpReading,
    CpState,
    DutyMeaning,
    classify_plateau,
    current_from_duty,
    duty_from_current,
)


@pytest.mark.parametrize(
    ("volts", "state"),
    [
        (12.0, CpState.A),
        (11.0, CpState.A),
        (9.0, CpState.B),
        (7.0, CpState.C),
        (5.0, CpState.C),
        (3.0, CpState.D),
        (0.4, CpState.E),
        (10.5, None),
        (4.5, None),
        (14.0, None),
    ],
)
def test_plateau_bands(volts: float, state: CpState | None) -> None:
    assert classify_plateau(volts) is state


def test_diode_check_only_with_pwm() -> None:
    assert CpReading(6.0, -12.0, 5.0).state is CpState.C
    assert CpReading(6.0, -6.0, 5.0).state is None  # diode missing
    assert CpReading(6.0, -6.0, 100.0).state is CpState.C  # no negative half to check without PWM
    assert CpReading(12.0, -12.0, 5.0).state is CpState.A
    assert CpReading(-12.0, -12.0, 100.0).state is CpState.F


@pytest.mark.parametrize(
    ("duty", "meaning", "amps"),
    [
        (0.0, DutyMeaning.CHARGING_NOT_ALLOWED, None),
        (5.0, DutyMeaning.DIGITAL_COMMUNICATION, None),
        (7.5, DutyMeaning.NOT_ALLOWED, None),
        (9.0, DutyMeaning.CURRENT, 6.0),
        (10.0, DutyMeaning.CURRENT, 6.0),
        (50.0, DutyMeaning.CURRENT, 30.0),
        (85.0, DutyMeaning.CURRENT, 51.0),
        (90.0, DutyMeaning.CURRENT, 65.0),
        (96.5, DutyMeaning.CURRENT, 80.0),
        (98.0, DutyMeaning.NOT_ALLOWED, None),
        (100.0, DutyMeaning.PWM_OFF, None),
    ],
)
def test_current_from_duty_table(duty: float, meaning: DutyMeaning, amps: float | None) -> None:
    got = current_from_duty(duty)
    assert got.meaning is meaning
    assert got.current_a == (pytest.approx(amps) if amps is not None else None)


@pytest.mark.parametrize(
    ("amps", "duty"),
    [
        (6.0, 10.0),
        (16.0, 16.0 / 0.6),
        (32.0, 32.0 / 0.6),
        (51.0, 85.0),
        (52.0, 85.0),
        (63.0, 89.2),
        (80.0, 96.0),
    ],
)
def test_duty_from_current(amps: float, duty: float) -> None:
    assert duty_from_current(amps) == pytest.approx(duty)


@pytest.mark.parametrize("bad", [5.9, 80.1, -1.0, float("nan")])
def test_currents_without_duty_are_errors(bad: float) -> None:
    with pytest.raises(CpError):
        duty_from_current(bad)


@pytest.mark.parametrize("bad", [-0.1, 100.1, float("nan")])
def test_duty_outside_range_is_an_error(bad: float) -> None:
    with pytest.raises(CpError):
        current_from_duty(bad)


@given(st.floats(min_value=6.0, max_value=80.0))
def test_advertised_current_never_exceeds_the_request(amps: float) -> None:
    """Round trip current -> duty -> current: exact where representable, else rounded down."""
    back = current_from_duty(duty_from_current(amps)).current_a
    assert back is not None
    if 51.0 < amps <= 52.5:
        assert back == pytest.approx(51.0)
    else:
        assert back == pytest.approx(amps)


@given(st.floats(min_value=10.0, max_value=96.0).filter(lambda d: not 85.0 < d < 85.6))
def test_duty_round_trip(duty: float) -> None:
    amps = current_from_duty(duty).current_a
    assert amps is not None
    assert duty_from_current(amps) == pytest.approx(duty)
