"""The direction of a DC_BPT current is always on the wire: as the sign, or, where a side writes
magnitudes (:attr:`SignConvention.CHANNEL`), as PowerDeliveryReq's BPT_ChannelSelection
([V2G20-2123], standards digest section 4.2 item 10), in either control mode."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.iso20.harness import Exchange, Plant, run
from tests.iso20.test_power_limits import CHARGER, VEHICLE
from v2gtool.iso20.evcc import Direction, Evcc, EvccConfig
from v2gtool.iso20.ports import ConstantGridRequest
from v2gtool.iso20.secc import Secc, SeccConfig
from v2gtool.iso20.values import ControlMode, SignConvention, to_float
from v2gtool.messages import iso20_cm as cm


def session(ev: EvccConfig, secc: SeccConfig, rewrite: Any = None) -> tuple[Evcc, Exchange]:
    plant = Plant(CHARGER, VEHICLE)
    evcc = Evcc(ev, plant.vehicle)
    exchange = run(evcc, Secc(secc, plant, 0.0), rewrite=rewrite)
    assert evcc.ok, evcc.end_reason
    return evcc, exchange


def sent(exchange: Exchange, name: str) -> list[Any]:
    return [body for _, message, body in exchange.messages if message == name]


def channels(exchange: Exchange) -> list[cm.channelSelectionType | None]:
    return [b.BPT_ChannelSelection for b in sent(exchange, "PowerDeliveryReq")
            if b.ChargeProgress == cm.chargeProgressType.Start]


@pytest.mark.parametrize(("direction", "grid_w"), [(Direction.DISCHARGE, -10_000.0), (Direction.CHARGE, 10_000.0)])
def test_a_channel_convention_ev_selects_its_channel_in_dynamic_mode(direction: Direction, grid_w: float) -> None:
    ev = EvccConfig(duration=3.0, direction=direction, control_mode=ControlMode.DYNAMIC,
                    sign_convention=SignConvention.CHANNEL)
    secc = SeccConfig(grid=ConstantGridRequest(grid_w), sign_convention=SignConvention.CHANNEL)
    evcc, exchange = session(ev, secc)
    wanted = cm.channelSelectionType.Discharge if direction is Direction.DISCHARGE else cm.channelSelectionType.Charge
    assert channels(exchange) == [wanted]
    # magnitudes on the wire, and both sides agree on the direction the channel names
    assert all(to_float(res.EVSEPresentCurrent) >= 0 for res in sent(exchange, "DC_ChargeLoopRes"))
    for role in ("SECC", "EVCC"):
        flows = exchange.flows(role)
        assert flows and all(f.current * 375.0 == pytest.approx(grid_w, rel=2e-3) for f in flows)  # at the battery
    assert (evcc.energy_wh < 0) == (direction is Direction.DISCHARGE)


def test_a_signed_ev_still_leaves_the_channel_open_in_dynamic_mode() -> None:
    ev = EvccConfig(duration=3.0, direction=Direction.CHARGE, control_mode=ControlMode.DYNAMIC)
    _, exchange = session(ev, SeccConfig(grid=ConstantGridRequest(-10_000.0)))
    assert channels(exchange) == [None]


def test_a_channel_secc_signs_the_current_when_the_ev_selected_no_channel() -> None:
    # A signed EV in Dynamic mode leaves the channel open, the grid discharges it: a magnitude would
    # tell it it was charged.
    ev = EvccConfig(duration=3.0, direction=Direction.CHARGE, control_mode=ControlMode.DYNAMIC)
    secc = SeccConfig(grid=ConstantGridRequest(-10_000.0), sign_convention=SignConvention.CHANNEL)
    evcc, exchange = session(ev, secc)
    loop = sent(exchange, "DC_ChargeLoopRes")
    assert loop and all(to_float(res.EVSEPresentCurrent) <= 0 for res in loop)
    assert min(to_float(res.EVSEPresentCurrent) for res in loop) < -20.0
    assert evcc.energy_wh < 0


def test_a_channel_secc_reads_a_target_without_a_channel_as_signed() -> None:
    # BPT_ChannelSelection is optional in Scheduled mode too: a signed EV that selected none and asks to
    # discharge is discharged, not charged with the magnitude of its target.
    def no_channel(name: str, body: Any) -> Any:
        return dataclasses.replace(body, BPT_ChannelSelection=None) if name == "PowerDeliveryReq" else body

    ev = EvccConfig(duration=2.0, direction=Direction.DISCHARGE)
    _, exchange = session(ev, SeccConfig(sign_convention=SignConvention.CHANNEL), rewrite=no_channel)
    flows = exchange.flows("SECC")
    assert flows and all(f.current == pytest.approx(-29.3, abs=0.05) for f in flows)
