"""Scheduled mode: the EV selects a ScheduleTuple the SECC offered and keeps its EVPowerProfile within
it, the SECC checks both (ISO 15118-20 PowerDelivery, [V2G20-479] and [V2G20-478]), and a
DischargingSchedule's allowance is its magnitude, whatever the sign on the wire."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pytest

from tests.iso20.harness import Plant, run
from tests.iso20.test_power_limits import CHARGER, VEHICLE
from v2gtool.iso20 import secc as secc_module
from v2gtool.iso20.evcc import Direction, Evcc, EvccConfig
from v2gtool.iso20.events import NoEnergyTransferred, SessionEnded
from v2gtool.iso20.ports import WIRE_PRECISION, ConstantGridRequest
from v2gtool.iso20.secc import Secc, SeccConfig
from v2gtool.iso20.values import ControlMode, rational, to_float
from v2gtool.messages import iso20_cm as cm


def secc_ended(events: list[Any]) -> SessionEnded:
    (ended,) = [e for e in events if isinstance(e, SessionEnded) and e.role == "SECC"]
    return ended


def sent(exchange: Any, name: str) -> list[Any]:
    return [body for _, n, body in exchange.messages if n == name]


def with_profile(body: Any, **changes: Any) -> Any:
    """A PowerDeliveryReq Start whose Scheduled_EVPPTControlMode or first profile entry is changed."""
    profile = body.EVPowerProfile
    if "SelectedScheduleTupleID" in changes:
        mode = dataclasses.replace(profile.Scheduled_EVPPTControlMode, **changes)
        return dataclasses.replace(body, EVPowerProfile=dataclasses.replace(profile, Scheduled_EVPPTControlMode=mode))
    first, *rest = profile.EVPowerProfileEntries.EVPowerProfileEntry
    entries = cm.EVPowerProfileEntryListType(EVPowerProfileEntry=(dataclasses.replace(first, **changes), *rest))
    return dataclasses.replace(body, EVPowerProfile=dataclasses.replace(profile, EVPowerProfileEntries=entries))


def on_start(change: dict[str, Any]) -> Any:
    def rewrite(name: str, body: Any) -> Any:
        if name == "PowerDeliveryReq" and body.ChargeProgress == cm.chargeProgressType.Start:
            return with_profile(body, **change)
        return body

    return rewrite


def test_the_secc_refuses_a_schedule_tuple_it_never_offered() -> None:
    plant = Plant(CHARGER, VEHICLE)
    exchange = run(
        Evcc(EvccConfig(duration=2.0), plant.vehicle),
        Secc(SeccConfig(), plant, 0.0),
        rewrite=on_start({"SelectedScheduleTupleID": 9}),
    )
    ended = secc_ended(exchange.events)
    assert ended.response_code == "FAILED_ScheduleSelectionInvalid"
    assert "SelectedScheduleTupleID 9 was not offered (offered: 1)" in ended.reason
    assert not exchange.flows("SECC")  # energy transfer never started


def test_the_secc_refuses_a_power_profile_above_its_schedule() -> None:
    plant = Plant(CHARGER, VEHICLE)
    exchange = run(
        Evcc(EvccConfig(duration=10.0), plant.vehicle),
        Secc(SeccConfig(grid=ConstantGridRequest(20_000.0)), plant, 0.0),
        rewrite=on_start({"Power": rational(30_000.0)}),
    )
    ended = secc_ended(exchange.events)
    assert ended.response_code == "FAILED_EVPowerProfileInvalid"
    assert "asks 30000 W where schedule 1 offers 20000 W" in ended.reason


@dataclass(frozen=True)
class SteppedGrid:
    """A grid request that falls from 40 kW to 10 kW 10 s into the session."""

    revision: int = 0

    def power(self, now: float) -> float | None:
        return 40_000.0 if now < 10.0 else 10_000.0

    def schedule(self, now: float, horizon: float) -> list[tuple[float, float | None]]:
        return [(10.0 - now, 40_000.0), (horizon - 10.0 + now, 10_000.0)]


def test_the_ev_profile_follows_the_schedule_steps_and_the_secc_accepts_it() -> None:
    plant = Plant(CHARGER, VEHICLE)
    evcc = Evcc(EvccConfig(duration=20.0), plant.vehicle)
    exchange = run(evcc, Secc(SeccConfig(grid=SteppedGrid()), plant, 0.0))
    assert evcc.ok, evcc.end_reason
    (start,) = sent(exchange, "PowerDeliveryReq")[:1]
    powers = [to_float(e.Power) for e in start.EVPowerProfile.EVPowerProfileEntries.EVPowerProfileEntry]
    assert powers == [40_000.0, 10_000.0]


def test_the_ev_selects_the_schedule_tuple_the_secc_offered(monkeypatch: pytest.MonkeyPatch) -> None:
    # Any numericIDType may number a ScheduleTuple: the iso15118 package's SECC may use 7, say.
    monkeypatch.setattr(secc_module, "SCHEDULE_TUPLE_ID", 7)
    plant = Plant(CHARGER, VEHICLE)
    evcc = Evcc(EvccConfig(duration=3.0), plant.vehicle)
    exchange = run(evcc, Secc(SeccConfig(metering_confirmation_interval=1.0), plant, 0.0))
    assert evcc.ok, evcc.end_reason
    (start, *_) = sent(exchange, "PowerDeliveryReq")
    assert start.EVPowerProfile.Scheduled_EVPPTControlMode.SelectedScheduleTupleID == 7
    confirmations = sent(exchange, "MeteringConfirmationReq")
    assert confirmations
    assert all(c.SignedMeteringData.Scheduled_SMDTControlMode.SelectedScheduleTupleID == 7 for c in confirmations)


def positive_discharging_schedule(name: str, body: Any) -> Any:
    """The iso15118 package's SECC writes DischargingSchedule powers positive."""
    if name != "ScheduleExchangeRes" or body.Scheduled_SEResControlMode is None:
        return body
    tuples = []
    for tuple_ in body.Scheduled_SEResControlMode.ScheduleTuple:
        power = tuple_.DischargingSchedule.PowerSchedule
        entries = tuple(
            dataclasses.replace(e, Power=rational(abs(to_float(e.Power))))
            for e in power.PowerScheduleEntries.PowerScheduleEntry
        )
        listed = cm.PowerScheduleEntryListType(PowerScheduleEntry=entries)
        power = dataclasses.replace(power, PowerScheduleEntries=listed)
        schedule = dataclasses.replace(tuple_.DischargingSchedule, PowerSchedule=power)
        tuples.append(dataclasses.replace(tuple_, DischargingSchedule=schedule))
    mode = dataclasses.replace(body.Scheduled_SEResControlMode, ScheduleTuple=tuple(tuples))
    return dataclasses.replace(body, Scheduled_SEResControlMode=mode)


def test_a_positive_discharging_schedule_is_a_discharge_allowance() -> None:
    plant = Plant(CHARGER, VEHICLE)
    evcc = Evcc(EvccConfig(duration=3.0, direction=Direction.DISCHARGE), plant.vehicle)
    exchange = run(evcc, Secc(SeccConfig(), plant, 0.0), rewrite=positive_discharging_schedule)
    assert evcc.ok, evcc.end_reason
    assert min(f.power for f in exchange.flows("SECC")) < -10_000  # the EV's 11 kW, at the wire's precision
    assert not [e for e in exchange.events if isinstance(e, NoEnergyTransferred)]


def test_a_discharge_that_moves_no_energy_is_reported() -> None:
    # The grid allows no discharge: the schedule's discharge steps are 0 W, so the EV asks for none.
    plant = Plant(CHARGER, VEHICLE)
    evcc = Evcc(EvccConfig(duration=3.0, direction=Direction.DISCHARGE), plant.vehicle)
    exchange = run(evcc, Secc(SeccConfig(grid=ConstantGridRequest(0.0)), plant, 0.0))
    assert evcc.ok  # the protocol went well ...
    (warning,) = [e for e in exchange.events if isinstance(e, NoEnergyTransferred)]  # ... but not the transfer
    assert warning.direction == "discharge" and "asked for no current" in warning.reason


def test_an_ev_that_wants_no_power_is_not_warned() -> None:
    plant = Plant(CHARGER, VEHICLE)
    evcc = Evcc(EvccConfig(duration=3.0, direction=Direction.DISCHARGE, power=0.0), plant.vehicle)
    exchange = run(evcc, Secc(SeccConfig(), plant, 0.0))
    assert evcc.ok and not [e for e in exchange.events if isinstance(e, NoEnergyTransferred)]


@pytest.mark.parametrize("direction", [Direction.CHARGE, Direction.DISCHARGE])
def test_a_dynamic_start_carries_a_dynamic_power_profile(direction: Direction) -> None:
    # Optional in the schema, but the iso15118 package's SECC does not answer a Start without it.
    plant = Plant(CHARGER, VEHICLE)
    evcc = Evcc(EvccConfig(duration=2.0, control_mode=ControlMode.DYNAMIC, direction=direction), plant.vehicle)
    exchange = run(evcc, Secc(SeccConfig(), plant, 0.0))
    assert evcc.ok, evcc.end_reason
    (start,) = [b for b in sent(exchange, "PowerDeliveryReq") if b.ChargeProgress == cm.chargeProgressType.Start]
    profile = start.EVPowerProfile
    assert profile is not None and profile.Dynamic_EVPPTControlMode is not None
    assert profile.Scheduled_EVPPTControlMode is None
    (entry,) = profile.EVPowerProfileEntries.EVPowerProfileEntry
    # the EV's most: 125 A at its 375 V (46.9 kW of its 50 kW), or its 11 kW of discharge (32 A would be 12 kW)
    expected = 125 * 375.0 if direction == Direction.CHARGE else -11_000.0
    assert to_float(entry.Power) == pytest.approx(expected, rel=WIRE_PRECISION)
