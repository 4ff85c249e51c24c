"""PowerDelivery Standby (ISO 15118-20 8.3.4.3.8.2): the EV pauses energy transfer inside the
session and resumes it with PowerDelivery Start, the contactors closed throughout."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from v2gtool.hw.events import ContactorsOpened
from v2gtool.iso20.evcc import Direction
from v2gtool.iso20.events import MessageReceived, PowerFlow
from v2gtool.session import scenario as scenarios
from v2gtool.session.runner import run_sim


@pytest.mark.parametrize("direction", [Direction.CHARGE, Direction.DISCHARGE])
def test_standby_pauses_and_resumes_energy_transfer(direction: Direction) -> None:
    plain = asyncio.run(run_sim(scenarios.load(None, direction=direction, duration=10.0)))
    scenario = scenarios.load(None, direction=direction, duration=10.0, standby_at=3.0, standby_for=4.0)
    result = asyncio.run(run_sim(scenario))
    assert result.ok, result.reason
    progress = [
        e.summary["ChargeProgress"]
        for e in result.events
        if isinstance(e, MessageReceived) and e.role == "SECC" and e.message == "PowerDeliveryReq"
    ]
    assert progress == ["Start", "Standby", "Start", "Stop"]
    flows = [e for e in result.events if isinstance(e, PowerFlow) and e.role == "SECC"]
    gaps = [b.t - a.t for a, b in itertools.pairwise(flows)]
    assert max(gaps) >= 4.0  # no loop while in standby
    opened = [e for e in result.events if isinstance(e, ContactorsOpened)]
    last_loop = flows[-1].t
    assert all(e.t > last_loop for e in opened)  # the contactors opened only at the end
    # Ten seconds of loop either way, four of them in standby: less energy, same sign.
    assert 0.4 < result.energy_wh / plain.energy_wh < 0.9
