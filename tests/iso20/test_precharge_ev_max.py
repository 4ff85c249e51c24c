"""The SECC never drives its output above the EV's EVMaximumVoltage of DC_ChargeParameterDiscoveryReq:
not in precharge, where the EV's EVTargetVoltage is its battery's voltage, nor in standby."""

from __future__ import annotations

import dataclasses
from dataclasses import field

from tests.iso20.harness import Plant, run
from tests.iso20.test_power_limits import CHARGER, VEHICLE
from v2gtool.iso20.evcc import Evcc, EvccConfig
from v2gtool.iso20.secc import Secc, SeccConfig


@dataclasses.dataclass
class PrechargePlant(Plant):
    """The harness plant, remembering every voltage the SECC precharged to."""

    precharge_targets: list[float] = field(default_factory=list)

    def precharge(self, target_voltage: float) -> float:
        self.precharge_targets.append(target_voltage)
        return super().precharge(target_voltage)


def precharge(max_voltage: float) -> tuple[PrechargePlant, Evcc, list[str]]:
    """A session of an EV whose battery is at 375 V and whose maximum voltage is *max_voltage*."""
    plant = PrechargePlant(CHARGER, dataclasses.replace(VEHICLE, max_voltage=max_voltage, min_voltage=50.0))
    evcc = Evcc(EvccConfig(duration=1.0), plant.vehicle)
    exchange = run(evcc, Secc(SeccConfig(), plant, 0.0))
    return plant, evcc, [name for _, name, _ in exchange.messages]


def test_a_precharge_target_above_the_evs_maximum_voltage_is_not_driven() -> None:
    # The tester's vehicle: EVMaximumVoltage 100 V, a battery at 375 V that it precharges to.
    plant, evcc, messages = precharge(100.0)
    assert plant.precharge_targets and max(plant.precharge_targets) == 100.0
    # The precharge never matches the battery: no energy transfer, the EV gives up after its timeout.
    assert "PowerDeliveryReq" not in messages
    assert not evcc.ok and evcc.end_reason == "V2G_EVCC_PreCharge timeout after 10 s"


def test_a_precharge_target_within_both_maxima_is_driven() -> None:
    plant, evcc, _ = precharge(450.0)
    assert evcc.ok, evcc.end_reason
    assert plant.precharge_targets and set(plant.precharge_targets) == {375.0}


def test_standby_holds_the_output_within_the_evs_maximum_voltage() -> None:
    plant = Plant(CHARGER, VEHICLE)
    evcc = Evcc(EvccConfig(duration=3.0, standby_at=1.0, standby_for=1.0), plant.vehicle)
    run(evcc, Secc(SeccConfig(), plant, 0.0))
    assert evcc.ok, evcc.end_reason
    assert plant.voltage_limits and max(plant.voltage_limits) <= VEHICLE.max_voltage
