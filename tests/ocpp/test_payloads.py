"""The OCPP payloads both ways, through the ``ocpp`` package's own JSON schemas and case conversion:
the dispatch TxProfile read back as the station's grid request, NotifyEVChargingNeeds read back as
the aggregator's vehicle needs, meter values read back as registers, signed power and SoC; and the
meter's integration of a signed power series into import and export registers (energy = P dt)."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.ocpp.wire import over_the_wire
from v2gtool.iso20.events import EVChargingNeeds
from v2gtool.iso20.ports import PowerLimits
from v2gtool.ocpp.payloads import (
    OCPP21,
    OCPP201,
    VENDOR_ID,
    ImplausibleValue,
    Meter,
    charging_needs,
    dispatch_profile,
    read_charging_needs,
    read_meter_value,
    timestamp,
)
from v2gtool.ocpp.profile import ChargingProfile, NegativeLimits, ProfileRejected, ProfileSetpoint

SUBPROTOCOLS = st.sampled_from([OCPP201, OCPP21])
EPOCH = st.floats(1.6e9, 2.2e9)
FAST = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- SetChargingProfile: what the aggregator sends is what the station runs ----------------------------


@FAST
@given(
    SUBPROTOCOLS,
    st.integers(1, 2**31 - 1),
    st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=36),
    st.floats(-350_000, 350_000),
    EPOCH,
    st.floats(0.1, 86_400),
    st.floats(0, 1),
)
def test_dispatch_profile_is_schema_valid_and_runs_at_the_dispatched_watts(
    subprotocol: str, profile_id: int, tx: str, watts: float, start: float, duration: float, into: float
) -> None:
    sent = {"evse_id": 1, "charging_profile": dispatch_profile(subprotocol, profile_id, tx, watts, start, duration)}
    received = over_the_wire("SetChargingProfile", sent, subprotocol)
    assert received == sent  # the package's camelCase conversion round-trips every key

    clock_now = [start]
    station = ProfileSetpoint(
        fallback=None, clock=lambda: clock_now[0], negative=NegativeLimits.DISCHARGE, transaction_id=tx,
        transaction_start=start - 60,
    )  # fmt: skip
    installed = station.install(received["charging_profile"])
    assert installed.purpose == "TxProfile" and installed.transaction_id == tx
    assert installed.start_schedule is not None
    assert abs(installed.start_schedule - start) < 0.001  # whole milliseconds on the wire
    runs_for = max(1, round(duration))
    assert installed.duration == runs_for
    clock_now[0] = installed.start_schedule + into * (runs_for - 0.001)
    power = station.power(now=0.0)
    assert power is not None and abs(power - watts) <= 0.05  # the wire carries 0.1 W
    clock_now[0] = installed.start_schedule + runs_for
    assert station.power(now=0.0) is None  # and stops when the request ends


@FAST
@given(SUBPROTOCOLS, st.floats(-350_000, -0.1))
def test_discharge_dispatch_under_the_reject_convention(subprotocol: str, watts: float) -> None:
    """A 2.1 discharge is a setpoint, which the reject convention accepts; a 2.0.1 one is a negative limit."""
    data = over_the_wire(
        "SetChargingProfile",
        {"evse_id": 1, "charging_profile": dispatch_profile(subprotocol, 1, "tx", watts, 1.8e9, 900)},
        subprotocol,
    )["charging_profile"]
    if subprotocol == OCPP21:
        assert ChargingProfile.from_ocpp(data, 1.8e9, NegativeLimits.REJECT).periods[0].setpoint == round(watts, 1)
    else:
        with pytest.raises(ProfileRejected, match="negative limit"):
            ChargingProfile.from_ocpp(data, 1.8e9, NegativeLimits.REJECT)


def test_zero_watts_is_idle_in_ocpp21_and_a_zero_limit_in_ocpp201() -> None:
    idle = dispatch_profile(OCPP21, 1, "tx", 0.0, 1.8e9, 60)["charging_schedule"][0]["charging_schedule_period"]
    zero = dispatch_profile(OCPP201, 1, "tx", 0.0, 1.8e9, 60)["charging_schedule"][0]["charging_schedule_period"]
    assert idle == [{"start_period": 0, "operation_mode": "Idle"}]
    assert zero == [{"start_period": 0, "limit": 0.0}]


# -- NotifyEVChargingNeeds: what the station declares is what the aggregator counts --------------------

POWER = st.floats(0, 400_000)
CURRENT = st.floats(0, 600)


@st.composite
def needs_events(draw: st.DrawFn) -> EVChargingNeeds:
    limits = PowerLimits(
        max_charge_power=draw(POWER),
        min_charge_power=draw(POWER),
        max_charge_current=draw(CURRENT),
        min_charge_current=draw(CURRENT),
        max_voltage=draw(st.floats(0, 1000)),
        min_voltage=draw(st.floats(0, 1000)),
        max_discharge_power=draw(POWER),
        min_discharge_power=draw(POWER),
        max_discharge_current=draw(CURRENT),
        min_discharge_current=draw(CURRENT),
    )
    optional_energy = st.none() | st.floats(-200_000, 200_000)
    return EVChargingNeeds(
        t=draw(st.floats(0, 1e6)),
        role="SECC",
        service=draw(st.sampled_from(["DC", "DC_BPT"])),
        control_mode=draw(st.sampled_from(["DYNAMIC", "SCHEDULED"])),
        limits=limits,
        departure_time=draw(st.none() | st.integers(0, 7 * 86_400)),
        target_soc=draw(st.none() | st.integers(0, 100)),
        min_soc=draw(st.none() | st.integers(0, 100)),
        target_energy=draw(st.none() | st.floats(0, 200_000)),
        max_v2x_energy=draw(optional_energy),
        min_v2x_energy=draw(optional_energy),
    )


@FAST
@given(needs_events(), SUBPROTOCOLS, EPOCH)
def test_charging_needs_are_schema_valid_and_read_back(event: EVChargingNeeds, subprotocol: str, now: float) -> None:
    sent = charging_needs(event, subprotocol, now, evse_id=3)
    received = over_the_wire("NotifyEVChargingNeeds", sent, subprotocol)
    assert received == sent
    assert received["evse_id"] == 3
    needs = read_charging_needs(received["charging_needs"])
    bpt = event.service == "DC_BPT"
    lim = event.limits
    assert needs.bpt is bpt
    if bpt:
        assert needs.max_charge_power == lim.max_charge_power
        assert needs.max_discharge_power == lim.max_discharge_power
        assert needs.min_soc == event.min_soc
        expected = max(0.0, -event.min_v2x_energy) if event.min_v2x_energy is not None else 0.0
        assert needs.dischargeable_wh == expected
    else:  # a charge-only vehicle: nothing to give, its power from the DC parameters (integers in 2.0.1)
        assert abs(needs.max_charge_power - lim.max_charge_power) <= 0.5
        assert needs.max_discharge_power == 0.0 and needs.dischargeable_wh == 0.0 and needs.min_soc is None
    assert needs.target_soc == event.target_soc
    if event.departure_time is None:
        assert needs.departure is None
    else:
        assert needs.departure is not None
        assert abs(needs.departure - (now + event.departure_time)) < 0.001  # whole milliseconds on the wire
    modes = {"DYNAMIC": "DynamicControl", "SCHEDULED": "ScheduledControl"}
    assert needs.control_mode == (modes[event.control_mode] if subprotocol == OCPP21 else None)
    transfer = received["charging_needs"]["requested_energy_transfer"]
    assert transfer == ("DC_BPT" if bpt and subprotocol == OCPP21 else "DC")  # 2.0.1 has no DC_BPT


def test_ocpp201_needs_without_our_extension_read_as_charge_only() -> None:
    plain = {"requested_energy_transfer": "DC", "dc_charging_parameters": {"ev_max_current": 200, "ev_max_voltage": 500,
                                                                           "ev_max_power": 90000}}  # fmt: skip
    foreign = {**plain, "custom_data": {"vendor_id": "com.example", "bpt": True, "max_discharge_power": 5000,
                                        "ev_min_v2x_energy_request": -9000}}  # fmt: skip
    for data in (plain, foreign):
        needs = read_charging_needs(data)
        assert (needs.bpt, needs.max_charge_power, needs.max_discharge_power, needs.dischargeable_wh) == (
            False, 90000.0, 0.0, 0.0,
        )  # fmt: skip
    ours = {**plain, "custom_data": {**foreign["custom_data"], "vendor_id": VENDOR_ID}}
    assert read_charging_needs(ours).dischargeable_wh == 9000.0


# -- meter values ----------------------------------------------------------------------------------------


def _transaction_event(meter_value: dict[str, Any]) -> dict[str, Any]:
    return {
        "event_type": "Updated",
        "timestamp": meter_value["timestamp"],
        "trigger_reason": "MeterValuePeriodic",
        "seq_no": 4,
        "transaction_info": {"transaction_id": "tx-1"},
        "meter_value": [meter_value],
    }


SAMPLES = st.lists(
    st.tuples(st.floats(0.001, 120), st.floats(-350_000, 350_000), st.none() | st.floats(0, 100)),
    min_size=1,
    max_size=40,
)


@FAST
@given(SAMPLES, SUBPROTOCOLS, EPOCH, st.sampled_from(["Sample.Periodic", "Transaction.End", "Trigger"]))
def test_meter_integrates_signed_power_and_reads_back_through_a_transaction_event(
    samples: list[tuple[float, float, float | None]], subprotocol: str, epoch: float, context: str
) -> None:
    meter = Meter()
    t, imported, exported, held, soc = 1000.0, 0.0, 0.0, None, None
    for dt, power, sample_soc in samples:
        t += dt
        if held is not None:  # the previous reading's power held over the interval: E = P dt
            imported += max(held, 0.0) * dt / 3600
            exported += max(-held, 0.0) * dt / 3600
        before = (meter.imported_wh, meter.exported_wh)
        meter.sample(t, 400.0, power, sample_soc)
        assert meter.imported_wh >= before[0] and meter.exported_wh >= before[1]  # registers never run back
        held, soc = power, sample_soc if sample_soc is not None else soc
    assert math.isclose(meter.imported_wh, imported, rel_tol=1e-9, abs_tol=1e-6)
    assert math.isclose(meter.exported_wh, exported, rel_tol=1e-9, abs_tol=1e-6)

    sent = _transaction_event(meter.meter_value(epoch, context))
    received = over_the_wire("TransactionEvent", sent, subprotocol)
    assert received == sent
    reading = read_meter_value(received["meter_value"][0])
    assert abs(reading.at - epoch) < 0.001  # whole milliseconds on the wire
    assert reading.imported_wh == round(meter.imported_wh, 3) and reading.exported_wh == round(meter.exported_wh, 3)
    assert held is not None and reading.power is not None and abs(reading.power - held) <= 0.001
    assert reading.soc == (round(soc, 3) if soc is not None else None)
    assert {sv["context"] for sv in received["meter_value"][0]["sampled_value"]} == {context}


def test_meter_physics_one_hour_each_way() -> None:
    meter = Meter()
    for second in range(3601):  # 10 kW into the EV for an hour
        meter.sample(float(second), 400.0, 10_000.0, None)
    for second in range(3601, 3601 + 1800):  # then 7.4 kW back to the grid for half an hour
        meter.sample(float(second), 400.0, -7_400.0, None)
    meter.sample(5401.0, 400.0, 0.0, 50.0)
    # each reading's power holds until the next one: 3601 s at +10 kW, then 1800 s at -7.4 kW
    assert math.isclose(meter.imported_wh, 10_000.0 * 3601 / 3600, rel_tol=1e-12)
    assert math.isclose(meter.exported_wh, 3_700.0, rel_tol=1e-12)


def test_meter_counts_nothing_while_idle_or_for_repeated_and_backward_times() -> None:
    meter = Meter()
    meter.sample(0.0, 400.0, 36_000.0, None)
    meter.sample(10.0, 400.0, 36_000.0, None)
    assert meter.imported_wh == pytest.approx(100.0)
    meter.idle()
    meter.sample(500.0, 400.0, 36_000.0, None)  # the idle gap carried no energy
    assert meter.imported_wh == pytest.approx(100.0) and meter.power == 36_000.0
    meter.sample(500.0, 400.0, 36_000.0, None)
    meter.sample(400.0, 400.0, 36_000.0, None)
    assert meter.imported_wh == pytest.approx(100.0)


def test_meter_value_without_measurand_is_an_import_register_and_absent_ones_are_none() -> None:
    reading = read_meter_value({"timestamp": timestamp(1.8e9), "sampled_value": [{"value": 12.5}]})
    assert (reading.imported_wh, reading.exported_wh, reading.power, reading.soc) == (12.5, None, None, None)
    export_only = read_meter_value(
        {"timestamp": "2027-01-15T08:00:00Z", "sampled_value": [{"measurand": "Power.Active.Export", "value": 3000}]}
    )
    assert export_only.power == -3000.0


def _one(*sampled: dict[str, Any]) -> Any:
    return read_meter_value({"timestamp": "2027-01-15T08:00:00Z", "sampled_value": list(sampled)})


def test_meter_values_are_scaled_by_unit_and_multiplier() -> None:
    kilo = _one(
        {"measurand": "Power.Active.Export", "value": 7.5, "unit_of_measure": {"unit": "kW"}},
        {"measurand": "Energy.Active.Export.Register", "value": 2.0, "unit_of_measure": {"unit": "kWh"}},
        {"measurand": "Energy.Active.Import.Register", "value": 1500,
         "unit_of_measure": {"unit": "Wh", "multiplier": -3}},
        {"measurand": "SoC", "value": 55, "unit_of_measure": {"unit": "Percent"}},
    )  # fmt: skip
    assert (kilo.power, kilo.exported_wh, kilo.imported_wh, kilo.soc) == (-7500.0, 2000.0, 1.5, 55.0)
    multiplied = _one(
        {"measurand": "Power.Active.Import", "value": 7.5, "unit_of_measure": {"unit": "W", "multiplier": 3}}
    )
    assert multiplied.power == 7500.0


def test_per_phase_values_do_not_overwrite_the_total() -> None:
    reading = _one(
        {"measurand": "Power.Active.Export", "value": 7500},
        {"measurand": "Power.Active.Export", "value": 2500, "phase": "L1"},
        {"measurand": "Energy.Active.Export.Register", "value": 900, "phase": "L2-N"},
    )
    assert (reading.power, reading.exported_wh) == (-7500.0, None)


@pytest.mark.parametrize(
    "sampled",
    [
        {"measurand": "SoC", "value": 150},
        {"measurand": "SoC", "value": -1},
        {"measurand": "Energy.Active.Export.Register", "value": -5},
        {"measurand": "Energy.Active.Import.Register", "value": 1e400},
        {"measurand": "Power.Active.Import", "value": 1.7e308},
        {"measurand": "Power.Active.Import", "value": 1, "unit_of_measure": {"unit": "W", "multiplier": 400}},
        {"measurand": "Power.Active.Import", "value": 1, "unit_of_measure": {"unit": "V"}},
        {"measurand": "SoC", "value": 50, "unit_of_measure": {"unit": "Wh"}},
    ],
)
def test_impossible_readings_are_refused(sampled: dict[str, Any]) -> None:
    with pytest.raises(ImplausibleValue):
        _one(sampled)
