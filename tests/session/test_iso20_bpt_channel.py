"""BPT_ChannelSelection through a whole ``session run --sim``: the station moves energy only in the
direction the EV selected ([V2G20-2123]), also when the two sides disagree on the sign convention;
in Dynamic mode the EV leaves the channel open and the grid's request sets the direction. The EV's
side is configured apart from the SECC's here, as on two machines (``--role evse`` / ``--role ev``)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from v2gtool.iso20.evcc import Direction, EvccConfig
from v2gtool.iso20.events import PowerFlow
from v2gtool.iso20.values import ControlMode, SignConvention
from v2gtool.session import runner
from v2gtool.session import scenario as scenarios
from v2gtool.session.runner import SessionResult, run_sim


def run_with_ev(monkeypatch: pytest.MonkeyPatch, scenario: scenarios.SessionScenario, **ev: Any) -> SessionResult:
    """*scenario* on the sim, the EV's configuration changed by *ev*."""
    build = runner.evcc_config

    def ev_config(scenario: scenarios.SessionScenario, capacity: float, **options: Any) -> EvccConfig:
        return build(scenario, capacity, **{**options, **ev})

    monkeypatch.setattr(runner, "evcc_config", ev_config)
    result = asyncio.run(run_sim(scenario))
    assert result.ok, result.reason
    return result


def secc_currents(result: SessionResult) -> list[float]:
    return [e.current for e in result.events if isinstance(e, PowerFlow) and e.role == "SECC"]


def test_a_signed_charger_discharges_an_ev_that_writes_magnitudes(monkeypatch: pytest.MonkeyPatch) -> None:
    scenario = scenarios.load(None, direction=Direction.DISCHARGE, duration=5.0, power=11_000.0)
    result = run_with_ev(monkeypatch, scenario, sign_convention=SignConvention.CHANNEL)
    flows = secc_currents(result)
    assert flows and max(flows) <= 0.0 and min(flows) < -20.0
    assert result.soc_end < result.soc_start


def test_in_dynamic_mode_the_grid_request_sets_the_direction(monkeypatch: pytest.MonkeyPatch) -> None:
    # The EV leaves the channel open in Dynamic mode: the charger's grid request discharges it (the VPP case).
    scenario = scenarios.load(None, direction=Direction.DISCHARGE, control_mode=ControlMode.DYNAMIC, duration=5.0)
    result = run_with_ev(monkeypatch, scenario, direction=Direction.CHARGE)
    flows = secc_currents(result)
    assert flows and max(flows) <= 0.0 and min(flows) < -20.0
    assert result.soc_end < result.soc_start
