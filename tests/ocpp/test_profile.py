"""Charging profiles as the Dynamic loop's grid request (OCPP 2.0.1 K01 / 2.1 Q01-Q09), on a virtual
wall clock: timing, validity, stacking, purposes, units, 2.1 operation modes, the 2.0.1 negative-limit
convention, and every malformed profile answered with ProfileRejected (never another exception)."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ocpp.charge_point import camel_to_snake_case

from v2gtool.ocpp.payloads import timestamp
from v2gtool.ocpp.profile import (
    ChargingProfile,
    NegativeLimits,
    ProfileRejected,
    ProfileSetpoint,
    SchedulePeriod,
    period_power,
)

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
DAY = 86_400.0


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def profile(
    pid: int = 1,
    *,
    purpose: str = "TxDefaultProfile",
    stack: int = 0,
    kind: str = "Absolute",
    unit: str = "W",
    periods: list[dict[str, Any]] | None = None,
    start: float | None = T0,
    duration: int | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A ChargingProfileType as the CSMS writes it (camelCase), handed over as the ``ocpp`` package
    gives it to the SetChargingProfile handler (snake_case)."""
    schedule: dict[str, Any] = {
        "id": pid,
        "chargingRateUnit": unit,
        "chargingSchedulePeriod": periods if periods is not None else [{"startPeriod": 0, "limit": 11000.0}],
    }
    if start is not None:
        schedule["startSchedule"] = timestamp(start)
    if duration is not None:
        schedule["duration"] = duration
    wire = {
        "id": pid,
        "stackLevel": stack,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": kind,
        "chargingSchedule": [schedule],
        **extra,
    }
    converted: dict[str, Any] = camel_to_snake_case(wire)
    return converted


def setpoint(now: float = T0, **kwargs: Any) -> tuple[ProfileSetpoint, Clock]:
    clock = Clock(now)
    return ProfileSetpoint(clock=clock, **kwargs), clock


def at(sp: ProfileSetpoint, clock: Clock, when: float) -> float | None:
    clock.now = when
    return sp.power(now=-1.0)  # the session's clock is not the schedule's


# -- timing --------------------------------------------------------------------------------------------


def test_absolute_profile_follows_its_periods_from_start_schedule_for_its_duration() -> None:
    sp, clock = setpoint(fallback=None)
    sp.install(
        profile(periods=[{"startPeriod": 0, "limit": 10000.0}, {"startPeriod": 600, "limit": 4000.0}], duration=1200)
    )
    assert at(sp, clock, T0 - 0.001) is None
    assert at(sp, clock, T0) == 10000.0
    assert at(sp, clock, T0 + 599.999) == 10000.0
    assert at(sp, clock, T0 + 600) == 4000.0
    assert at(sp, clock, T0 + 1199.999) == 4000.0
    assert at(sp, clock, T0 + 1200) is None


def test_profile_without_duration_keeps_its_last_period() -> None:
    sp, clock = setpoint(fallback=None)
    sp.install(profile(periods=[{"startPeriod": 0, "limit": 1000.0}, {"startPeriod": 60, "limit": 2000.0}]))
    assert at(sp, clock, T0 + 30 * DAY) == 2000.0


def test_relative_profile_runs_from_transaction_start_or_from_receipt() -> None:
    sp, clock = setpoint(now=T0 + 100, fallback=7.0, transaction_id="tx", transaction_start=T0)
    periods = [{"startPeriod": 0, "limit": 1000.0}, {"startPeriod": 300, "limit": 2000.0}]
    sp.install(profile(kind="Relative", start=None, periods=periods, duration=600))
    assert at(sp, clock, T0 + 299) == 1000.0
    assert at(sp, clock, T0 + 300) == 2000.0
    assert at(sp, clock, T0 + 600) == 7.0
    idle, clock2 = setpoint(now=T0 + 1000, fallback=7.0)  # no transaction: counts from its receipt
    idle.install(profile(kind="Relative", start=None, periods=periods, duration=600))
    assert at(idle, clock2, T0 + 1000 + 299) == 1000.0
    assert at(idle, clock2, T0 + 1000 + 300) == 2000.0
    assert at(idle, clock2, T0 + 1600) == 7.0


@pytest.mark.parametrize(("recurrency", "period"), [("Daily", DAY), ("Weekly", 7 * DAY)])
def test_recurring_profile_restarts_every_recurrence(recurrency: str, period: float) -> None:
    sp, clock = setpoint(fallback=-1.0)
    periods = [{"startPeriod": 0, "limit": 1000.0}, {"startPeriod": 3600, "limit": 2000.0}]
    sp.install(profile(kind="Recurring", recurrencyKind=recurrency, periods=periods, duration=7200))
    for n in (0, 1, 5):
        base = T0 + n * period
        assert at(sp, clock, base + 10) == 1000.0
        assert at(sp, clock, base + 3600) == 2000.0
        assert at(sp, clock, base + 7200) == -1.0
        assert at(sp, clock, base + period - 1) == -1.0


def test_valid_from_and_valid_to_bound_the_profile() -> None:
    sp, clock = setpoint(fallback=0.0)
    sp.install(profile(validFrom=timestamp(T0 + 100), validTo=timestamp(T0 + 200)))
    assert at(sp, clock, T0 + 99.9) == 0.0
    assert at(sp, clock, T0 + 100) == 11000.0
    assert at(sp, clock, T0 + 199.9) == 11000.0
    assert at(sp, clock, T0 + 200) == 0.0


def test_datetime_without_offset_is_utc_not_local_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        naive = ChargingProfile.from_ocpp(
            {**profile(), "valid_from": "2026-01-01T01:00:00"}, T0, NegativeLimits.DISCHARGE
        )
        offset = ChargingProfile.from_ocpp(
            {**profile(), "valid_from": "2026-01-01T02:00:00+01:00"}, T0, NegativeLimits.DISCHARGE
        )
    finally:
        monkeypatch.undo()
        time.tzset()
    assert naive.valid_from == offset.valid_from == T0 + 3600


def test_schedule_runs_on_its_own_clock_not_the_sessions() -> None:
    sp, clock = setpoint(fallback=None)
    sp.install(profile(duration=10))
    clock.now = T0 + 5
    assert sp.power(now=0.0) == sp.power(now=1e9) == 11000.0


# -- which profile is in force ---------------------------------------------------------------------------


def test_highest_stack_level_in_force_wins_and_lower_ones_fill_in() -> None:
    sp, clock = setpoint(fallback=None)
    sp.install(profile(1, stack=0, periods=[{"startPeriod": 0, "limit": 1000.0}]))
    sp.install(profile(2, stack=3, periods=[{"startPeriod": 0, "limit": 3000.0}], start=T0 + 100, duration=100))
    sp.install(profile(3, stack=1, periods=[{"startPeriod": 0, "limit": 2000.0}], start=T0 + 50, duration=200))
    assert at(sp, clock, T0) == 1000.0
    assert at(sp, clock, T0 + 50) == 2000.0
    assert at(sp, clock, T0 + 100) == 3000.0
    assert at(sp, clock, T0 + 200) == 2000.0
    assert at(sp, clock, T0 + 250) == 1000.0


def test_tx_profile_beats_tx_default_profile_whatever_the_stack_levels() -> None:
    sp, clock = setpoint(fallback=None, transaction_id="tx-9", transaction_start=T0)
    sp.install(profile(1, purpose="TxDefaultProfile", stack=9, periods=[{"startPeriod": 0, "limit": 1000.0}]))
    sp.install(
        profile(2, purpose="TxProfile", stack=0, transactionId="tx-9", periods=[{"startPeriod": 0, "limit": 5000.0}],
                duration=60)
    )
    assert at(sp, clock, T0 + 1) == 5000.0
    assert at(sp, clock, T0 + 60) == 1000.0  # the TxProfile is over: the default applies again


def test_charging_station_max_and_external_constraints_cap_the_magnitude_both_ways() -> None:
    sp, clock = setpoint(fallback=None, transaction_id="tx", transaction_start=T0)
    sp.install(profile(1, purpose="ChargingStationMaxProfile", periods=[{"startPeriod": 0, "limit": 6000.0}]))
    assert at(sp, clock, T0) == 6000.0  # no request of its own: the cap is the request
    sp.install(profile(2, purpose="TxProfile", transactionId="tx", periods=[{"startPeriod": 0, "limit": -9000.0}]))
    assert at(sp, clock, T0) == -6000.0
    sp.install(profile(2, purpose="TxProfile", transactionId="tx", periods=[{"startPeriod": 0, "limit": 4000.0}]))
    assert at(sp, clock, T0) == 4000.0
    sp.install(
        profile(3, purpose="ChargingStationExternalConstraints", periods=[{"startPeriod": 0, "limit": 2500.0}])
    )
    assert at(sp, clock, T0) == 2500.0
    sp.clear(purpose="ChargingStationExternalConstraints")
    sp.install(profile(2, purpose="TxProfile", transactionId="tx", periods=[{"startPeriod": 0, "limit": 8000.0}]))
    assert at(sp, clock, T0) == 6000.0


@pytest.mark.parametrize("purpose", ["ChargingStationMaxProfile", "ChargingStationExternalConstraints"])
@pytest.mark.parametrize(
    ("cap", "asked", "watts"),
    [
        ({"limit": 11000.0, "dischargeLimit": -3000.0}, {"operationMode": "CentralSetpoint", "setpoint": -10000.0},
         -3000.0),
        ({"limit": 11000.0, "dischargeLimit": -3000.0}, {"operationMode": "CentralSetpoint", "setpoint": 20000.0},
         11000.0),
        ({"limit": 0.0, "dischargeLimit": -10000.0}, {"operationMode": "CentralSetpoint", "setpoint": -8000.0},
         -8000.0),
        ({"limit": 0.0, "dischargeLimit": -10000.0}, {"limit": 5000.0}, 0.0),
        ({"operationMode": "CentralSetpoint", "dischargeLimit": -2000.0},
         {"operationMode": "CentralSetpoint", "setpoint": 50000.0}, 50000.0),
        ({"operationMode": "CentralSetpoint", "dischargeLimit": -2000.0},
         {"operationMode": "CentralSetpoint", "setpoint": -5000.0}, -2000.0),
        ({"operationMode": "ChargingOnly", "limit": 6000.0}, {"operationMode": "CentralSetpoint", "setpoint": -5000.0},
         0.0),
        ({"operationMode": "Idle"}, {"operationMode": "CentralSetpoint", "setpoint": 5000.0}, 0.0),
        ({"limit": 6000.0}, {"operationMode": "CentralSetpoint", "setpoint": -9000.0}, -6000.0),  # 2.0.1: both ways
    ],
)
def test_ocpp21_caps_bound_charge_by_limit_and_discharge_by_discharge_limit(
    purpose: str, cap: dict[str, Any], asked: dict[str, Any], watts: float
) -> None:
    """A site cap bounds each direction on its own (OCPP 2.1 ChargingSchedulePeriodType): ``limit`` the
    charging, ``dischargeLimit`` the discharging; a period without either field of 2.1 keeps the 2.0.1
    reading, its ``limit`` both ways."""
    sp, clock = setpoint(fallback=None, transaction_id="tx", transaction_start=T0)
    sp.install(profile(1, purpose=purpose, periods=[{"startPeriod": 0, **cap}]))
    sp.install(profile(2, purpose="TxProfile", transactionId="tx", periods=[{"startPeriod": 0, **asked}]))
    assert at(sp, clock, T0) == watts


def test_a_cap_in_amperes_bounds_each_direction_at_the_present_voltage() -> None:
    sp, clock = setpoint(fallback=None, voltage=lambda: 400.0, transaction_id="tx", transaction_start=T0)
    sp.install(profile(1, purpose="ChargingStationMaxProfile", unit="A",
                       periods=[{"startPeriod": 0, "limit": 20.0, "dischargeLimit": -5.0}]))
    sp.install(profile(2, purpose="TxProfile", transactionId="tx",
                       periods=[{"startPeriod": 0, "operationMode": "CentralSetpoint", "setpoint": -10000.0}]))
    assert at(sp, clock, T0) == -2000.0
    sp.install(profile(2, purpose="TxProfile", transactionId="tx",
                       periods=[{"startPeriod": 0, "operationMode": "CentralSetpoint", "setpoint": 10000.0}]))
    assert at(sp, clock, T0) == 8000.0


def test_fallback_applies_without_a_profile_in_force() -> None:
    sp, clock = setpoint(fallback=-3000.0)
    assert at(sp, clock, T0) == -3000.0
    sp.install(profile(start=T0 + 10, duration=10))
    assert at(sp, clock, T0) == -3000.0
    assert at(sp, clock, T0 + 10) == 11000.0


# -- units and what a period means -----------------------------------------------------------------------


def test_amperes_convert_with_the_present_link_voltage() -> None:
    volts = [400.0]
    sp, clock = setpoint(fallback=None, voltage=lambda: volts[0])
    sp.install(profile(unit="A", periods=[{"startPeriod": 0, "limit": 16.0}]))
    assert at(sp, clock, T0) == 6400.0
    volts[0] = 800.0
    assert at(sp, clock, T0) == 12800.0


def test_amperes_convert_setpoint_and_discharge_limit_too() -> None:
    period = SchedulePeriod(
        start=0, limit=50.0, setpoint=-40.0, discharge_limit=-25.0, operation_mode="CentralSetpoint"
    )
    assert period_power(period, "A", 400.0) == -10000.0
    assert period_power(period, "W", 400.0) == -25.0


@pytest.mark.parametrize(
    ("period", "watts"),
    [
        ({"operationMode": "Idle", "setpoint": -5000.0, "limit": 3000.0}, 0.0),
        ({"operationMode": "ChargingOnly", "limit": 7000.0}, 7000.0),
        ({"operationMode": "ChargingOnly", "setpoint": -7000.0, "limit": 7000.0}, 7000.0),
        ({"operationMode": "ChargingOnly"}, 0.0),
        ({"operationMode": "CentralSetpoint", "setpoint": -9000.0, "dischargeLimit": -6000.0}, -6000.0),
        ({"operationMode": "CentralSetpoint", "setpoint": -3000.0, "dischargeLimit": -6000.0}, -3000.0),
        ({"operationMode": "CentralSetpoint", "setpoint": 9000.0, "limit": 5000.0}, 5000.0),
        ({"operationMode": "CentralSetpoint", "setpoint": 4000.0, "limit": 5000.0, "dischargeLimit": -1.0}, 4000.0),
        ({"operationMode": "CentralSetpoint", "dischargeLimit": -6000.0}, -6000.0),
    ],
)
def test_ocpp21_operation_modes(period: dict[str, Any], watts: float) -> None:
    sp, clock = setpoint(fallback=None, negative=NegativeLimits.REJECT)
    sp.install(profile(periods=[{"startPeriod": 0, **period}]))
    assert at(sp, clock, T0) == watts


@pytest.mark.parametrize(
    "mode",
    ["ExternalSetpoint", "ExternalLimits", "CentralFrequency", "LocalFrequency", "LocalLoadBalancing", "Foo"],
)
def test_ocpp21_operation_modes_not_supported_are_rejected_and_never_applied(mode: str) -> None:
    """Only CentralSetpoint, Idle and ChargingOnly are implemented (README): a profile with any other
    mode in any period is refused, with its own reason code, and the request stays what it was."""
    sp, clock = setpoint(fallback=-1000.0)
    periods = [{"startPeriod": 0, "operationMode": "Idle"}, {"startPeriod": 60, "operationMode": mode, "limit": 6000.0}]
    with pytest.raises(ProfileRejected, match=f"operationMode '{mode}' at startPeriod 60 is not supported") as info:
        sp.install(profile(periods=periods))
    assert info.value.code == "UnsupportedOpMode"
    assert sp.profiles == {} and at(sp, clock, T0 + 90) == -1000.0


def test_ocpp21_positive_discharge_limit_is_rejected() -> None:
    with pytest.raises(ProfileRejected, match="dischargeLimit 500 must be <= 0"):
        ChargingProfile.from_ocpp(
            profile(periods=[{"startPeriod": 0, "operationMode": "CentralSetpoint", "setpoint": 0.0,
                              "dischargeLimit": 500.0}]),
            T0,
            NegativeLimits.DISCHARGE,
        )


def test_ocpp201_negative_limit_discharges_under_the_discharge_convention() -> None:
    sp, clock = setpoint(fallback=None, negative=NegativeLimits.DISCHARGE)
    sp.install(profile(periods=[{"startPeriod": 0, "limit": 2000.0}, {"startPeriod": 60, "limit": -7000.0}]))
    assert at(sp, clock, T0) == 2000.0
    assert at(sp, clock, T0 + 60) == -7000.0


def test_ocpp201_negative_limit_is_rejected_under_the_reject_convention() -> None:
    sp, _ = setpoint(fallback=None, negative=NegativeLimits.REJECT)
    with pytest.raises(ProfileRejected) as info:
        sp.install(profile(7, periods=[{"startPeriod": 0, "limit": 2000.0}, {"startPeriod": 60, "limit": -7000.0}]))
    message = str(info.value)
    assert "\n" not in message
    assert "charging profile 7" in message and "negative limit -7000 at startPeriod 60" in message
    assert sp.profiles == {} and sp.revision == 0


# -- malformed profiles ----------------------------------------------------------------------------------


def _without_schedule() -> dict[str, Any]:
    data = profile()
    del data["charging_schedule"]
    return data


def _schedule_edit(**changes: Any) -> dict[str, Any]:
    data = profile()
    data["charging_schedule"][0].update(changes)
    return data


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (_without_schedule(), "no chargingSchedule"),
        ({**profile(), "charging_schedule": []}, "no chargingSchedule"),
        (profile(unit="kW"), "chargingRateUnit 'kW' is not W or A"),
        (_schedule_edit(charging_rate_unit=None), "chargingRateUnit None is not W or A"),
        (profile(periods=[]), "must start at 0 and increase"),
        (profile(periods=[{"startPeriod": 10, "limit": 1.0}]), "must start at 0 and increase"),
        (profile(periods=[{"startPeriod": 0, "limit": 1.0}, {"startPeriod": 0, "limit": 2.0}]), "must start at 0"),
        (
            profile(periods=[{"startPeriod": 0, "limit": 1.0}, {"startPeriod": 90, "limit": 2.0},
                             {"startPeriod": 60, "limit": 3.0}]),
            "must start at 0 and increase",
        ),
        (_schedule_edit(start_schedule="2026-13-01T00:00:00Z"), "invalid dateTime '2026-13-01T00:00:00Z'"),
        (_schedule_edit(start_schedule="yesterday"), "invalid dateTime 'yesterday'"),
        (profile(validTo="soon"), "invalid dateTime 'soon'"),
        (profile(start=None), "a Absolute profile needs startSchedule"),
        (profile(kind="Recurring", start=None, recurrencyKind="Daily"), "a Recurring profile needs startSchedule"),
        (profile(purpose="ChargingStationFancyProfile"), "unsupported chargingProfilePurpose"),
        (profile(kind="Sometimes", start=None), "chargingProfileKind 'Sometimes' is not one of"),
        (profile(kind="Recurring"), "a Recurring profile needs recurrencyKind Daily or Weekly"),
        (profile(kind="Recurring", recurrencyKind="Hourly"), "needs recurrencyKind Daily or Weekly"),
        (profile(periods=[{"startPeriod": "0", "limit": 1.0}]), "startPeriod '0' is not an integer"),
        (profile(periods=[{"startPeriod": 0, "limit": float("nan")}]), "limit nan is not a finite number"),
        (profile(periods=[{"startPeriod": 0, "limit": "11 kW"}]), "limit '11 kW' is not a finite number"),
        (profile(periods=[[0, 1.0]]), "chargingSchedulePeriod is not a list of objects"),
        ({**profile(), "charging_schedule": ["W"]}, "chargingSchedule is not a list of objects"),
        ({**profile(), "id": None}, "id None is not an integer"),
        (profile(transactionId=17), "transactionId 17 is not a string"),
    ],
)
def test_malformed_profiles_are_rejected_with_a_one_line_reason(data: dict[str, Any], reason: str) -> None:
    with pytest.raises(ProfileRejected, match=reason) as info:
        ChargingProfile.from_ocpp(data, T0, NegativeLimits.DISCHARGE)
    assert "\n" not in str(info.value)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
PERIOD_KEYS = ("start_period", "limit", "setpoint", "discharge_limit", "operation_mode")
SCHEDULE_KEYS = ("charging_rate_unit", "start_schedule", "duration", "charging_schedule_period")
PROFILE_KEYS = (
    "id", "stack_level", "charging_profile_purpose", "charging_profile_kind", "recurrency_kind", "valid_from",
    "valid_to", "transaction_id", "charging_schedule",
)  # fmt: skip


def _mutated(base: dict[str, Any], keys: tuple[str, ...]) -> st.SearchStrategy[dict[str, Any]]:
    """*base* with some of *keys* replaced by arbitrary JSON or removed."""
    return st.dictionaries(st.sampled_from(keys), JSON | st.just(KeyError), max_size=3).map(
        lambda edits: {k: v for k, v in {**base, **edits}.items() if v is not KeyError}
    )


VALID = profile(
    kind="Recurring",
    recurrencyKind="Daily",
    periods=[{"startPeriod": 0, "limit": 1.0}, {"startPeriod": 60, "operationMode": "CentralSetpoint",
                                                 "setpoint": -1.0, "dischargeLimit": -2.0}],
    duration=120,
    validFrom=timestamp(T0),
)


@st.composite
def fuzzed_profiles(draw: st.DrawFn) -> Any:
    """Arbitrary JSON objects, and valid profiles with arbitrary values at every level."""
    if draw(st.booleans()):
        return draw(st.dictionaries(st.sampled_from(PROFILE_KEYS) | st.text(max_size=4), JSON, max_size=6))
    periods = [draw(_mutated(p, PERIOD_KEYS)) for p in VALID["charging_schedule"][0]["charging_schedule_period"]]
    schedule = draw(_mutated({**VALID["charging_schedule"][0], "charging_schedule_period": periods}, SCHEDULE_KEYS))
    return draw(_mutated({**VALID, "charging_schedule": [schedule]}, PROFILE_KEYS))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fuzzed_profiles(), st.sampled_from(NegativeLimits), st.floats(T0 - 2 * DAY, T0 + 2 * DAY))
def test_fuzzed_profiles_raise_only_profile_rejected(data: dict[str, Any], negative: NegativeLimits,
                                                     now: float) -> None:
    try:
        accepted = ChargingProfile.from_ocpp(data, T0, negative)
    except ProfileRejected as exc:
        assert "\n" not in str(exc)
        return
    sp = ProfileSetpoint(clock=lambda: now, negative=negative, transaction_id=accepted.transaction_id,
                         transaction_start=T0)
    sp.install(data)  # what was accepted once installs, and is then a number or None at any time
    power = sp.power(now)
    assert power is None or isinstance(power, float)


# -- managing installed profiles -------------------------------------------------------------------------


def test_install_replaces_same_id_and_same_purpose_and_stack_level() -> None:
    sp, clock = setpoint(fallback=None)
    sp.install(profile(1, stack=0, periods=[{"startPeriod": 0, "limit": 1000.0}]))
    sp.install(profile(1, stack=2, periods=[{"startPeriod": 0, "limit": 2000.0}]))
    assert list(sp.profiles) == [1] and at(sp, clock, T0) == 2000.0
    sp.install(profile(5, stack=2, periods=[{"startPeriod": 0, "limit": 3000.0}]))
    assert list(sp.profiles) == [5] and at(sp, clock, T0) == 3000.0
    assert sp.revision == 3


def test_tx_profile_needs_the_running_transaction() -> None:
    sp, _ = setpoint(fallback=None)
    with pytest.raises(ProfileRejected, match="TxProfile for transaction 'tx-1', none running") as info:
        sp.install(profile(purpose="TxProfile", transactionId="tx-1"))
    assert info.value.code == "TxNotFound"
    sp.transaction_id = "tx-1"
    with pytest.raises(ProfileRejected, match="TxProfile for transaction 'tx-2', running: 'tx-1'") as info:
        sp.install(profile(purpose="TxProfile", transactionId="tx-2"))
    assert info.value.code == "TxNotFound" and sp.profiles == {}
    sp.install(profile(purpose="TxProfile", transactionId="tx-1"))
    assert list(sp.profiles) == [1]


def test_clear_by_id_by_purpose_and_all() -> None:
    sp, clock = setpoint(fallback=None, transaction_id="tx", transaction_start=T0)
    sp.install(profile(1, purpose="TxDefaultProfile", periods=[{"startPeriod": 0, "limit": 1000.0}]))
    sp.install(profile(2, purpose="TxProfile", transactionId="tx", periods=[{"startPeriod": 0, "limit": 2000.0}]))
    sp.install(profile(3, purpose="ChargingStationMaxProfile", periods=[{"startPeriod": 0, "limit": 9000.0}]))
    revision = sp.revision
    assert sp.clear(profile_id=42) == 0 and sp.revision == revision
    assert sp.clear(profile_id=2) == 1 and at(sp, clock, T0) == 1000.0
    assert sp.clear(purpose="TxDefaultProfile") == 1 and at(sp, clock, T0) == 9000.0
    assert sp.revision == revision + 2
    sp.install(profile(4, purpose="TxDefaultProfile"))
    assert sp.clear() == 2 and sp.profiles == {} and at(sp, clock, T0) is None


def test_clear_matches_every_criterion_given() -> None:
    """K10.FR.02: purpose, stackLevel and evseId together select; a criterion nothing matches clears
    nothing (the answer is Unknown), whatever the others match."""
    sp, clock = setpoint(fallback=None)
    sp.install(profile(1, stack=0, periods=[{"startPeriod": 0, "limit": -1000.0}]), evse_id=0)
    sp.install(profile(2, stack=1, periods=[{"startPeriod": 0, "limit": -3000.0}]), evse_id=0)
    sp.install(profile(3, purpose="ChargingStationMaxProfile", stack=1), evse_id=1)
    assert sp.clear(purpose="TxDefaultProfile", evse_id=2) == 0
    assert sp.clear(profile_id=2, stack_level=0) == 0
    assert sp.clear(stack_level=1, evse_id=1) == 1 and sorted(sp.profiles) == [1, 2]
    assert sp.clear(purpose="TxDefaultProfile", stack_level=1) == 1 and list(sp.profiles) == [1]
    assert at(sp, clock, T0) == -1000.0
    assert sp.clear(purpose="TxDefaultProfile", stack_level=0, evse_id=0) == 1 and sp.profiles == {}


def test_end_transaction_drops_tx_profiles_only() -> None:
    sp, clock = setpoint(fallback=None, transaction_id="tx", transaction_start=T0)
    sp.install(profile(1, purpose="TxDefaultProfile", periods=[{"startPeriod": 0, "limit": 1000.0}]))
    sp.install(profile(2, purpose="TxProfile", transactionId="tx", periods=[{"startPeriod": 0, "limit": -4000.0}]))
    assert at(sp, clock, T0) == -4000.0
    sp.end_transaction()
    assert list(sp.profiles) == [1] and sp.transaction_id is None and sp.transaction_start is None
    assert at(sp, clock, T0) == 1000.0


@st.composite
def schedules(draw: st.DrawFn) -> tuple[list[dict[str, Any]], int | None]:
    gaps = draw(st.lists(st.integers(1, 3_600), max_size=6))
    starts = [0, *itertools.accumulate(gaps)]
    limits = draw(st.lists(st.floats(-350_000, 350_000), min_size=len(starts), max_size=len(starts)))
    duration = draw(st.none() | st.integers(1, 30_000))
    return [{"startPeriod": s, "limit": lim} for s, lim in zip(starts, limits, strict=True)], duration


@settings(max_examples=200, deadline=None)
@given(schedules(), st.integers(-1_000_000, 40_000_000).map(lambda ms: ms / 1000), st.integers(0, 3))
def test_the_period_in_force_is_the_last_one_started(
    schedule: tuple[list[dict[str, Any]], int | None], offset: float, stack: int
) -> None:
    periods, duration = schedule
    sp, clock = setpoint(fallback=None, negative=NegativeLimits.DISCHARGE)
    sp.install(profile(stack=stack, periods=periods, duration=duration))
    started = [p["limit"] for p in periods if p["startPeriod"] <= offset]
    expected = started[-1] if offset >= 0 and (duration is None or offset < duration) else None
    assert at(sp, clock, T0 + offset) == expected
