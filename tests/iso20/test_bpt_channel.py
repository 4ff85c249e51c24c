"""PowerDeliveryReq BPT_ChannelSelection ([V2G20-2123]): once a DC_BPT EV selected a power channel,
the SECC transfers energy in that direction only, whatever the sign convention of the current on
the wire and whatever the grid asks for in the Dynamic mode."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from tests.iso20.harness import Plant, run
from tests.iso20.test_power_limits import CHARGER, VEHICLE
from v2gtool.iso20.evcc import Direction, Evcc, EvccConfig
from v2gtool.iso20.events import NoEnergyTransferred
from v2gtool.iso20.ports import ConstantGridRequest
from v2gtool.iso20.secc import Secc, SeccConfig
from v2gtool.iso20.values import ControlMode, SignConvention, rational, to_float
from v2gtool.messages import iso20_cm as cm


def currents(direction: Direction, ev: SignConvention, secc: SignConvention) -> tuple[list[float], list[float]]:
    """A Scheduled 3 s loop with the EV and the SECC on their own sign conventions: the SECC's and the
    EVCC's signed currents."""
    plant = Plant(CHARGER, VEHICLE)
    evcc = Evcc(EvccConfig(duration=3.0, direction=direction, sign_convention=ev), plant.vehicle)
    exchange = run(evcc, Secc(SeccConfig(sign_convention=secc), plant, 0.0))
    assert evcc.ok, evcc.end_reason
    return [f.current for f in exchange.flows("SECC")], [f.current for f in exchange.flows("EVCC")]


@pytest.mark.parametrize("ev", list(SignConvention))
@pytest.mark.parametrize("secc", list(SignConvention))
def test_a_scheduled_discharge_discharges_whatever_the_sign_conventions(
    ev: SignConvention, secc: SignConvention
) -> None:
    # the EV's 11 kW at 375 V (with the wire's precision as headroom): 29.3 A out of the vehicle
    secc_currents, _ = currents(Direction.DISCHARGE, ev, secc)
    assert secc_currents and all(c == pytest.approx(-29.3, abs=0.05) for c in secc_currents)


def test_an_ev_writing_magnitudes_sees_its_discharge_at_a_signed_secc() -> None:
    _, evcc_currents = currents(Direction.DISCHARGE, SignConvention.CHANNEL, SignConvention.SIGNED)
    assert evcc_currents and all(c == pytest.approx(-29.3, abs=0.05) for c in evcc_currents)


@pytest.mark.parametrize("ev", list(SignConvention))
@pytest.mark.parametrize("secc", list(SignConvention))
def test_a_scheduled_charge_charges_whatever_the_sign_conventions(ev: SignConvention, secc: SignConvention) -> None:
    secc_currents, _ = currents(Direction.CHARGE, ev, secc)
    assert secc_currents and all(c == pytest.approx(125.0) for c in secc_currents)


def test_a_target_of_the_other_sign_is_read_as_a_magnitude_in_the_channel() -> None:
    # An EV that selected Charge but writes its target negative: the channel switched the power path
    # to charging, so 20 A charge it.
    def negative_target(name: str, body: Any) -> Any:
        if name != "DC_ChargeLoopReq":
            return body
        mode = dataclasses.replace(body.BPT_Scheduled_DC_CLReqControlMode, EVTargetCurrent=rational(-20.0))
        return dataclasses.replace(body, BPT_Scheduled_DC_CLReqControlMode=mode)

    plant = Plant(CHARGER, VEHICLE)
    evcc = Evcc(EvccConfig(duration=2.0), plant.vehicle)
    exchange = run(evcc, Secc(SeccConfig(), plant, 0.0), rewrite=negative_target)
    assert {f.current for f in exchange.flows("SECC")} == {20.0}


def test_without_a_channel_the_sign_gives_the_direction() -> None:
    # BPT_ChannelSelection is optional: a signed target of a DC_BPT EV that selected none is taken as signed.
    def no_channel(name: str, body: Any) -> Any:
        return dataclasses.replace(body, BPT_ChannelSelection=None) if name == "PowerDeliveryReq" else body

    plant = Plant(CHARGER, VEHICLE)
    evcc = Evcc(EvccConfig(duration=2.0, direction=Direction.DISCHARGE), plant.vehicle)
    exchange = run(evcc, Secc(SeccConfig(), plant, 0.0), rewrite=no_channel)
    assert all(f.current == pytest.approx(-29.3, abs=0.05) for f in exchange.flows("SECC"))


def dynamic(
    direction: Direction, grid_w: float | None, channel: bool = True
) -> tuple[list[float], list[NoEnergyTransferred]]:
    """A Dynamic 3 s loop of an EV wanting *direction* under a grid request of *grid_w* (None: none):
    the SECC's currents and the EV's warnings. Ours leaves the channel open in Dynamic mode; with
    *channel*, the EV selects the one of its *direction* (as an EV that must switch its reverse power
    path does)."""

    def select(name: str, body: Any) -> Any:
        if name != "PowerDeliveryReq" or body.ChargeProgress != cm.chargeProgressType.Start:
            return body
        discharge = direction == Direction.DISCHARGE
        wanted = cm.channelSelectionType.Discharge if discharge else cm.channelSelectionType.Charge
        return dataclasses.replace(body, BPT_ChannelSelection=wanted)

    plant = Plant(CHARGER, VEHICLE)
    evcc = Evcc(EvccConfig(duration=3.0, direction=direction, control_mode=ControlMode.DYNAMIC), plant.vehicle)
    grid = ConstantGridRequest(grid_w) if grid_w is not None else None
    exchange = run(evcc, Secc(SeccConfig(grid=grid), plant, 0.0), rewrite=select if channel else None)
    assert evcc.ok, evcc.end_reason
    warnings = [e for e in exchange.events if isinstance(e, NoEnergyTransferred)]
    return [f.current for f in exchange.flows("SECC")], warnings


@pytest.mark.parametrize(("direction", "grid_w"), [(Direction.CHARGE, -10_000.0), (Direction.DISCHARGE, 10_000.0)])
def test_a_dynamic_grid_request_against_the_channel_transfers_nothing(direction: Direction, grid_w: float) -> None:
    flows, warnings = dynamic(direction, grid_w)
    assert flows and set(flows) == {0.0}
    (warning,) = warnings
    assert warning.reason == "the SECC delivered no current"


@pytest.mark.parametrize(("direction", "grid_w"), [(Direction.CHARGE, 10_000.0), (Direction.DISCHARGE, -10_000.0)])
def test_a_dynamic_grid_request_in_the_channel_is_delivered(direction: Direction, grid_w: float) -> None:
    flows, warnings = dynamic(direction, grid_w)
    assert flows and all(c * 375.0 == pytest.approx(grid_w, rel=2e-3) for c in flows) and not warnings


@pytest.mark.parametrize("grid_w", [-10_000.0, 10_000.0])
def test_our_dynamic_ev_leaves_the_channel_open_so_the_grid_sets_the_direction(grid_w: float) -> None:
    flows, _ = dynamic(Direction.CHARGE, grid_w, channel=False)
    assert flows and all(c * 375.0 == pytest.approx(grid_w, rel=2e-3) for c in flows)


def test_a_dynamic_discharge_without_a_grid_request_gives_the_ev_maximum() -> None:
    flows, _ = dynamic(Direction.DISCHARGE, None)
    assert flows and all(c * 375.0 == pytest.approx(-VEHICLE.max_discharge_power, rel=2e-3) for c in flows)


def test_an_ev_that_was_charged_instead_of_discharged_says_so() -> None:
    # A SECC that moves energy the wrong way (here: the present current's sign flipped on the way) is
    # not reported as one that delivered nothing.
    def flipped(name: str, body: Any) -> Any:
        if name != "DC_ChargeLoopRes":
            return body
        return dataclasses.replace(body, EVSEPresentCurrent=rational(-to_float(body.EVSEPresentCurrent)))

    plant = Plant(CHARGER, VEHICLE)
    evcc = Evcc(EvccConfig(duration=2.0, direction=Direction.DISCHARGE), plant.vehicle)
    exchange = run(evcc, Secc(SeccConfig(), plant, 0.0), rewrite=flipped)
    (warning,) = [e for e in exchange.events if isinstance(e, NoEnergyTransferred)]
    assert warning.reason == "the SECC charged the EV although it asked to discharge"
