"""Power requests and limits in the DC_ChargeLoop: power 0 means none, a limit of 0 is a limit, the
minimums of both sides hold and the charger's maximum power is never exceeded (ISO 15118-20
DC_ChargeParameterDiscovery and DC_ChargeLoop, 8.3.5.5)."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.iso20.harness import Plant, Rewrite, run
from v2gtool.iso20.evcc import Direction, Evcc, EvccConfig
from v2gtool.iso20.events import NoEnergyTransferred
from v2gtool.iso20.ports import ConstantGridRequest, PowerLimits
from v2gtool.iso20.secc import Secc, SeccConfig
from v2gtool.iso20.values import ControlMode, rational, to_float

VEHICLE = PowerLimits(
    max_charge_power=50_000, min_charge_power=0, max_charge_current=125, min_charge_current=0,
    max_voltage=450, min_voltage=250,
    max_discharge_power=11_000, min_discharge_power=0, max_discharge_current=32, min_discharge_current=0,
)
CHARGER = PowerLimits(
    max_charge_power=60_000, min_charge_power=0, max_charge_current=150, min_charge_current=0,
    max_voltage=920, min_voltage=150,
    max_discharge_power=22_000, min_discharge_power=0, max_discharge_current=50, min_discharge_current=0,
)


def session(
    charger: PowerLimits = CHARGER, vehicle: PowerLimits = VEHICLE, secc: SeccConfig | None = None, **ev: object
) -> tuple[Plant, list[float], list[float]]:
    """One 5 s loop; the plant, and the SECC's and the EVCC's PowerFlow powers in W."""
    plant = Plant(charger, vehicle)
    config = EvccConfig(duration=5.0, **ev)  # type: ignore[arg-type]
    exchange = run(Evcc(config, plant.vehicle), Secc(secc or SeccConfig(), plant, 0.0))
    secc_flows, evcc_flows = exchange.flows("SECC"), exchange.flows("EVCC")
    assert len(secc_flows) > 10 and len(evcc_flows) == len(secc_flows)
    return plant, [f.power for f in secc_flows], [f.power for f in evcc_flows]


@pytest.mark.parametrize("direction", [Direction.CHARGE, Direction.DISCHARGE])
def test_power_zero_asks_for_no_power_in_scheduled_mode(direction: Direction) -> None:
    _, secc, evcc = session(power=0.0, direction=direction)
    assert secc == [0.0] * len(secc) and evcc == [0.0] * len(evcc)


def test_power_none_asks_for_the_maximum() -> None:
    _, secc, _ = session(power=None)
    assert max(secc) > 45_000  # 125 A, the EV's maximum current


def test_an_ev_maximum_voltage_of_zero_is_a_limit_not_unset() -> None:
    # The cable check and the precharge stay at 0 V, not at the charger's 920 V: the EV's 375 V battery
    # is never matched, so the EV ends by its precharge timeout.
    plant = Plant(CHARGER, dataclasses.replace(VEHICLE, max_voltage=0.0))
    evcc = Evcc(EvccConfig(duration=5.0), plant.vehicle)
    exchange = run(evcc, Secc(SeccConfig(), plant, 0.0))
    assert plant.cable_check_voltages and set(plant.cable_check_voltages) == {0.0}
    precharged = [to_float(body.EVSEPresentVoltage) for _, name, body in exchange.messages if name == "DC_PreChargeRes"]
    assert precharged and set(precharged) == {0.0}
    assert not evcc.ok and evcc.end_reason == "V2G_EVCC_PreCharge timeout after 10 s"


def test_the_charger_maximum_power_is_not_exceeded_at_the_output_voltage() -> None:
    # The EV reports its battery's open-circuit voltage; the output is I x R above it. Only the first
    # loop, which steps the current up from 0 before any drop could be measured, may overshoot.
    _, secc, evcc = session(charger=dataclasses.replace(CHARGER, max_charge_power=20_000))
    assert max(secc[1:]) <= 20_000 and max(evcc[1:]) <= 20_000  # EVCC: rounded wire values
    assert min(secc[2:]) > 19_900


def test_a_wish_below_the_charger_minimum_is_raised_to_it() -> None:
    _, secc, _ = session(charger=dataclasses.replace(CHARGER, min_charge_power=5_000), power=1_000.0)
    assert all(p >= 5_000 for p in secc[1:])


def test_a_discharge_below_the_vehicle_minimum_is_raised_to_it() -> None:
    vehicle = dataclasses.replace(VEHICLE, min_discharge_power=3_000)
    _, secc, _ = session(vehicle=vehicle, power=1_000.0, direction=Direction.DISCHARGE)
    # 3000 W at the battery's voltage, which the output is I x R below while discharging
    assert all(p <= -2_990 for p in secc[1:])


@pytest.mark.parametrize(
    ("direction", "charger", "vehicle", "reason"),
    [
        (Direction.CHARGE, CHARGER, dataclasses.replace(VEHICLE, min_charge_current=200),
         "the EVSE's maximum charge current 150.0 A is below the EV's minimum 200.0 A"),
        (Direction.CHARGE, dataclasses.replace(CHARGER, min_charge_power=5_000),
         dataclasses.replace(VEHICLE, max_charge_power=4_000),
         "the EV's maximum charge power 4000 W is below the EVSE's minimum 5000 W"),
        (Direction.DISCHARGE, CHARGER, dataclasses.replace(VEHICLE, min_discharge_power=30_000),
         "the EVSE's maximum discharge power 22000 W is below the EV's minimum 30000 W"),
    ],
)
def test_limits_that_leave_no_common_flow_end_the_session_at_charge_parameter_discovery(
    direction: Direction, charger: PowerLimits, vehicle: PowerLimits, reason: str
) -> None:
    # Nothing could flow in the wanted direction: the EV stops with SessionStop Terminate right after
    # DC_ChargeParameterDiscoveryRes (no cable check, no precharge) and names both values.
    plant = Plant(charger, vehicle)
    evcc = Evcc(EvccConfig(duration=5.0, direction=direction), plant.vehicle)
    exchange = run(evcc, Secc(SeccConfig(), plant, 0.0))
    requests = [name for _, name, _ in exchange.messages if name.endswith("Req")]
    assert requests[-2:] == ["DC_ChargeParameterDiscoveryReq", "SessionStopReq"]
    assert not evcc.ok and evcc.end_reason == reason
    assert plant.cable_check_voltages == []


def test_limits_of_the_other_direction_do_not_stop_a_session() -> None:
    # A charging EV whose discharge minimum the charger cannot meet still charges.
    _, secc, _ = session(vehicle=dataclasses.replace(VEHICLE, min_discharge_power=30_000))
    assert max(secc) > 45_000


def test_a_wish_below_the_vehicle_minimum_current_is_raised_to_it() -> None:
    # 5 kW at the battery's 375 V would be 13.3 A; the EV takes no less than 40 A.
    _, secc, _ = session(vehicle=dataclasses.replace(VEHICLE, min_charge_current=40), power=5_000.0)
    assert all(p >= 40 * 375.0 for p in secc[1:])


def test_the_ev_asks_for_nothing_where_the_schedule_is_below_its_minimum_current() -> None:
    # The grid's 20 kW are 53.3 A at 375 V, below the EV's 60 A minimum: it asks for none (not for
    # 53 A that the SECC could only refuse) and says why.
    plant = Plant(CHARGER, dataclasses.replace(VEHICLE, min_charge_current=60))
    evcc = Evcc(EvccConfig(duration=3.0), plant.vehicle)
    exchange = run(evcc, Secc(SeccConfig(grid=ConstantGridRequest(20_000.0)), plant, 0.0))
    assert evcc.ok and {f.current for f in exchange.flows("SECC")} == {0.0}
    (warning,) = [e for e in exchange.events if isinstance(e, NoEnergyTransferred)]
    assert "asked for no current" in warning.reason


def test_the_secc_delivers_nothing_below_its_minimum() -> None:
    # Dynamic mode: the SECC itself decides the power; a grid request below the charger's minimum
    # cannot be delivered, and more than asked must not be.
    charger = dataclasses.replace(CHARGER, min_charge_power=5_000)
    grid = SeccConfig(grid=ConstantGridRequest(1_000.0))
    _, secc, _ = session(charger=charger, secc=grid, control_mode=ControlMode.DYNAMIC)
    assert secc == [0.0] * len(secc)
    _, secc, _ = session(charger=charger, secc=SeccConfig(grid=ConstantGridRequest(6_000.0)),
                         control_mode=ControlMode.DYNAMIC)
    assert all(5_000 <= p <= 6_100 for p in secc[1:])


def loop_responses(charger: PowerLimits, vehicle: PowerLimits, rewrite: Rewrite | None = None) -> list[Any]:
    plant = Plant(charger, vehicle)
    exchange = run(Evcc(EvccConfig(duration=3.0), plant.vehicle), Secc(SeccConfig(), plant, 0.0), rewrite=rewrite)
    responses = [body for _, name, body in exchange.messages if name == "DC_ChargeLoopRes"]
    assert len(responses) > 5
    return responses


def test_the_current_limit_alone_is_not_the_power_limit() -> None:
    # The EV wants 160 A (60 kW at 375 V); the charger's 150 A bind at 382.5 V: 57.4 kW of its 60 kW.
    vehicle = dataclasses.replace(VEHICLE, max_charge_current=200, max_charge_power=100_000)
    responses = loop_responses(CHARGER, vehicle)
    assert all(r.EVSECurrentLimitAchieved and not r.EVSEPowerLimitAchieved for r in responses)
    assert max(to_float(r.EVSEPresentCurrent) * to_float(r.EVSEPresentVoltage) for r in responses) < 58_000


def test_the_power_limit_alone_is_not_the_current_limit() -> None:
    responses = loop_responses(dataclasses.replace(CHARGER, max_charge_power=20_000), VEHICLE)
    assert all(r.EVSEPowerLimitAchieved and not r.EVSECurrentLimitAchieved for r in responses[1:])


def test_no_limit_achieved_below_both() -> None:
    responses = loop_responses(CHARGER, VEHICLE)  # the EV's own 125 A hold it below the charger's limits
    assert not any(r.EVSEPowerLimitAchieved or r.EVSECurrentLimitAchieved for r in responses)


def test_within_current_caps_only_the_maximum_currents() -> None:
    """A derated charger's present limits (ChargerPort.present_limits): both maximum currents at most
    the cap, everything else as declared; no cap (inf) leaves the declared limits."""
    assert CHARGER.within_current(40.0) == dataclasses.replace(
        CHARGER, max_charge_current=40.0, max_discharge_current=40.0
    )
    assert CHARGER.within_current(100.0) == dataclasses.replace(CHARGER, max_charge_current=100.0)
    assert CHARGER.within_current(float("inf")) == CHARGER


def test_the_ev_target_voltage_is_the_output_ceiling() -> None:
    # CC/CV: the EV asks 125 A, which would take the output to 381.25 V, but caps it at 380 V.
    def target_380_v(name: str, body: Any) -> Any:
        if name != "DC_ChargeLoopReq":
            return body
        mode = dataclasses.replace(body.BPT_Scheduled_DC_CLReqControlMode, EVTargetVoltage=rational(380.0))
        return dataclasses.replace(body, BPT_Scheduled_DC_CLReqControlMode=mode)

    responses = loop_responses(CHARGER, VEHICLE, target_380_v)
    assert all(to_float(r.EVSEPresentVoltage) <= 380.0 for r in responses)
    assert all(r.EVSEVoltageLimitAchieved for r in responses)
    assert all(to_float(r.EVSEPresentCurrent) == pytest.approx(100.0) for r in responses)  # (380 - 375) V / 50 mOhm


class _StalledPrecharge(Plant):
    """A power module whose output stalls at 300 V, below the 375 V battery (a module fault)."""

    def precharge(self, target_voltage: float) -> float:
        return min(target_voltage, 300.0)


def test_a_precharge_that_never_converges_ends_with_the_precharge_timeout() -> None:
    """The EV polls DC_PreCharge until V2G_EVCC_PreCharge_Timeout (10 s, standards digest 4.4) and
    ends without closing its contactors or asking for power."""
    plant = _StalledPrecharge(CHARGER, VEHICLE)
    evcc = Evcc(EvccConfig(duration=5.0), plant.vehicle)
    exchange = run(evcc, Secc(SeccConfig(), plant, 0.0))
    assert not evcc.ok and evcc.end_reason == "V2G_EVCC_PreCharge timeout after 10 s"
    names = [name for _, name, _ in exchange.messages]
    assert "PowerDeliveryReq" not in names and names.count("DC_PreChargeReq") > 50
