"""Schedule renegotiation (ISO 15118-20 8.3.4.3.8.2) in the Scheduled control mode, end to end over
TCP: the grid's request changes mid-loop, the SECC says EVSENotification=ScheduleRenegotiation, the
EV leaves the loop with PowerDelivery ScheduleRenegotiation, fetches the new schedule with
ScheduleExchange and resumes with PowerDelivery Start, its power within the new schedule."""

from __future__ import annotations

import asyncio

import pytest

from v2gtool.iso20.evcc import Direction
from v2gtool.iso20.events import MessageReceived, MessageSent, PowerFlow
from v2gtool.iso20.values import ControlMode
from v2gtool.session import scenario as scenarios
from v2gtool.session.runner import run_sim


class StepGrid:
    """The grid asks for *before* (None: no request) until session time *at*, then *after*; it did
    not know in advance, so the first schedule says nothing of the step."""

    def __init__(self, at: float, before: float | None, after: float) -> None:
        self.at, self.before, self.after = at, before, after
        self.revision = 0

    def power(self, now: float) -> float | None:
        if now >= self.at:
            self.revision = 1
        return self.after if self.revision else self.before

    def schedule(self, now: float, horizon: float) -> list[tuple[float, float | None]]:
        return [(horizon, self.power(now))]


@pytest.mark.parametrize(
    ("direction", "wish", "after"), [(Direction.CHARGE, 30_000.0, 5_000.0), (Direction.DISCHARGE, 11_000.0, -4_000.0)]
)
def test_the_ev_follows_a_renegotiated_schedule(direction: Direction, wish: float, after: float) -> None:
    scenario = scenarios.load(None, control_mode=ControlMode.SCHEDULED, direction=direction, power=wish, duration=12.0)
    grid = StepGrid(at=float("inf"), before=None, after=after)
    # The step comes 5 s into the loop (the cable check and precharge take their simulated time).
    loop_start: list[float] = []

    def listen(event: object) -> None:
        if isinstance(event, PowerFlow) and event.role == "SECC" and not loop_start:
            loop_start.append(event.t)
            grid.at = event.t + 5.0

    result = asyncio.run(run_sim(scenario, grid=grid, listener=listen))
    assert result.ok, result.reason
    sent = [e.message for e in result.events if isinstance(e, MessageSent) and e.role == "EVCC"]
    assert sent.count("ScheduleExchangeReq") == 2
    progress = [
        e.summary.get("ChargeProgress")
        for e in result.events
        if isinstance(e, MessageReceived) and e.role == "SECC" and e.message == "PowerDeliveryReq"
    ]
    assert progress == ["Start", "ScheduleRenegotiation", "Start", "Stop"]
    flows = [e for e in result.events if isinstance(e, PowerFlow) and e.role == "SECC"]
    sign = 1 if direction is Direction.CHARGE else -1
    early = [f.power for f in flows if f.t < grid.at]
    late = [f.power for f in flows if f.t > grid.at + 1.0]
    assert early and late
    assert sign * max(early, key=abs) == pytest.approx(wish, rel=0.05)  # the EV's wish, before the step
    assert all(abs(p) <= abs(after) * 1.05 for p in late)  # within the new schedule, after it
    assert late[-1] == pytest.approx(after, rel=0.05)
