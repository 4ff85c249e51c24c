"""EVProcessing of DC_PreChargeReq and DC_WeldingDetectionReq: the EV loops with Ongoing and ends each
loop with one request saying Finished (as the iso15118 package's EVCC does); the SECC answers both."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.iso20.harness import Exchange, Plant, run
from tests.iso20.test_power_limits import CHARGER, VEHICLE
from v2gtool.iso20.evcc import Evcc, EvccConfig
from v2gtool.iso20.secc import Secc, SeccConfig
from v2gtool.messages import iso20_ct as ct


@dataclass
class RampingPlant(Plant):
    """A charger whose precharge output follows *precharge_voltages*, one per DC_PreChargeReq (then
    the target)."""

    precharge_voltages: list[float] = field(default_factory=list)

    def precharge(self, target_voltage: float) -> float:
        return self.precharge_voltages.pop(0) if self.precharge_voltages else target_voltage


def session(plant: Plant, **ev: object) -> tuple[Evcc, Exchange]:
    evcc = Evcc(EvccConfig(duration=1.0, **ev), plant.vehicle)  # type: ignore[arg-type]
    exchange = run(evcc, Secc(SeccConfig(), plant, 0.0))
    assert evcc.ok, evcc.end_reason
    return evcc, exchange


def processing(exchange: Exchange, name: str) -> list[str]:
    """EVProcessing of each *name* request, and the name of the request after the last of them."""
    names = [n for _, n, _ in exchange.messages if n.endswith("Req")]
    after = names[len(names) - names[::-1].index(name)]
    return [b.EVProcessing.value for _, n, b in exchange.messages if n == name] + [after]


def test_precharge_ends_with_finished_then_power_delivery() -> None:
    # 100 V, then 300 V (both out of the 20 V tolerance of the battery's 375 V), then at the battery
    plant = RampingPlant(CHARGER, VEHICLE, precharge_voltages=[100.0, 300.0])
    _, exchange = session(plant)
    assert processing(exchange, "DC_PreChargeReq") == ["Ongoing", "Ongoing", "Ongoing", "Finished", "PowerDeliveryReq"]
    responses = [b for _, n, b in exchange.messages if n == "DC_PreChargeRes"]
    assert all(r.ResponseCode.value == "OK" for r in responses)  # the SECC answers Ongoing and Finished alike


def test_precharge_goes_on_when_the_voltage_leaves_the_tolerance_after_finished() -> None:
    # at the battery, then 300 V in answer to the Finished request: not precharged after all
    plant = RampingPlant(CHARGER, VEHICLE, precharge_voltages=[375.0, 300.0])
    _, exchange = session(plant)
    assert processing(exchange, "DC_PreChargeReq") == ["Ongoing", "Finished", "Ongoing", "Finished", "PowerDeliveryReq"]


@pytest.mark.parametrize(("rounds", "expected"), [(1, ["Finished"]), (3, ["Ongoing", "Ongoing", "Finished"])])
def test_welding_detection_ends_with_finished_then_session_stop(rounds: int, expected: list[str]) -> None:
    _, exchange = session(Plant(CHARGER, VEHICLE), welding_rounds=rounds)
    assert processing(exchange, "DC_WeldingDetectionReq") == [*expected, "SessionStopReq"]
    responses = [b for _, n, b in exchange.messages if n == "DC_WeldingDetectionRes"]
    assert len(responses) == rounds and all(r.ResponseCode.value == "OK" for r in responses)


def test_the_secc_also_serves_an_ev_that_never_says_finished() -> None:
    def always_ongoing(name: str, body: Any) -> Any:
        if name in ("DC_PreChargeReq", "DC_WeldingDetectionReq"):
            return dataclasses.replace(body, EVProcessing=ct.processingType.Ongoing)
        return body

    plant = Plant(CHARGER, VEHICLE)
    evcc = Evcc(EvccConfig(duration=1.0), plant.vehicle)
    exchange = run(evcc, Secc(SeccConfig(), plant, 0.0), rewrite=always_ongoing)
    assert evcc.ok, evcc.end_reason
    assert exchange.flows("SECC")  # precharged and charged
    assert {b.EVProcessing.value for _, n, b in exchange.messages if n == "DC_WeldingDetectionReq"} == {"Ongoing"}
