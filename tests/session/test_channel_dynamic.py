"""``session run --sim --direction discharge --sign-convention channel --control-mode dynamic``: the
wire carries magnitudes, so the EV names the direction with BPT_ChannelSelection ([V2G20-2123]) and
both sides see the discharge as one."""

from __future__ import annotations

import asyncio

from v2gtool.iso20.evcc import Direction
from v2gtool.iso20.events import MessageReceived, PowerFlow
from v2gtool.iso20.values import ControlMode, SignConvention
from v2gtool.session import scenario as scenarios
from v2gtool.session.runner import run_sim


def test_a_channel_convention_dynamic_discharge_names_its_channel() -> None:
    scenario = scenarios.load(None, direction=Direction.DISCHARGE, sign_convention=SignConvention.CHANNEL,
                              control_mode=ControlMode.DYNAMIC, duration=5.0)
    result = asyncio.run(run_sim(scenario))
    assert result.ok, result.reason
    starts = [e.summary for e in result.events if isinstance(e, MessageReceived) and e.role == "SECC"
              and e.message == "PowerDeliveryReq" and e.summary.get("ChargeProgress") == "Start"]
    assert starts and all(s.get("BPT_ChannelSelection") == "Discharge" for s in starts)
    for role in ("SECC", "EVCC"):  # the EV reads the magnitudes as the discharge they are
        currents = [e.current for e in result.events if isinstance(e, PowerFlow) and e.role == role]
        assert currents and max(currents) <= 0.0 and min(currents) < -20.0
    assert result.energy_wh < 0 and result.soc_end < result.soc_start
