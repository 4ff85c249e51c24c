"""Renegotiation in the loop, end to end over TCP.

Schedule renegotiation (ISO 15118-20 8.3.4.3.8.2) in the Scheduled control mode: the grid's request
changes mid-loop, the SECC says EVSENotification=ScheduleRenegotiation, the EV leaves the loop with
PowerDelivery ScheduleRenegotiation, fetches the new schedule with ScheduleExchange and resumes with
PowerDelivery Start, its power within the new schedule.

Service renegotiation: the operator allows DC_BPT mid-session, the SECC says
EVSENotification=ServiceRenegotiation, the EV stops the energy transfer, ends with SessionStop
ServiceRenegotiation and selects a service again in the same session."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pcap.session import analyse, dissect
from v2gtool.errors import ConfigError
from v2gtool.iso20.evcc import Direction
from v2gtool.iso20.events import MessageReceived, MessageSent, PowerFlow, SessionEnded
from v2gtool.iso20.values import DC_SERVICES, ControlMode, ServiceID
from v2gtool.net.v2g_tcp import Ending
from v2gtool.pcap.records import V2GMessage
from v2gtool.session import scenario as scenarios
from v2gtool.session.runner import SessionResult, run_sim
from v2gtool.session.trace import SessionTrace


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


def test_the_ev_takes_dc_bpt_once_the_operator_allows_it(tmp_path: Path) -> None:
    """A bidirectional EV charging on a DC-only offer; 20 s into the simulated session (4 s into the
    loop) the operator allows DC_BPT and the session renegotiates its service without ending."""
    scenario = scenarios.load(None, service=ServiceID.DC_BPT, bpt_allowed_from=20.0, duration=30.0)
    trace = tmp_path / "renegotiated.pcap"
    result = asyncio.run(run_sim(scenario, trace=SessionTrace(trace)))
    assert result.ok, result.reason
    sent = [e.message for e in result.events if isinstance(e, MessageSent) and e.role == "EVCC"]
    selection = ["ServiceDiscoveryReq", "ServiceDetailReq", "ServiceSelectionReq", "DC_ChargeParameterDiscoveryReq",
                 "ScheduleExchangeReq", "DC_CableCheckReq", "DC_PreChargeReq", "PowerDeliveryReq", "DC_ChargeLoopReq",
                 "PowerDeliveryReq", "DC_WeldingDetectionReq", "SessionStopReq"]
    collapsed = [name for i, name in enumerate(sent) if i == 0 or sent[i - 1] != name]
    assert collapsed == ["supportedAppProtocolReq", "SessionSetupReq", "AuthorizationSetupReq", "AuthorizationReq",
                         *selection, *selection]
    received = [e for e in result.events if isinstance(e, MessageReceived) and e.role == "SECC"]
    stops = [e.summary["ChargingSession"] for e in received if e.message == "SessionStopReq"]
    assert stops == ["ServiceRenegotiation", "Terminate"]
    ended = [e for e in result.events if isinstance(e, SessionEnded)]
    assert [(e.role, e.reason) for e in ended] == [("SECC", "SessionStop Terminate"), ("EVCC", "SessionStop Terminate")]
    # energy flowed in both loops, and none while the service was renegotiated
    flows = [e for e in result.events if isinstance(e, PowerFlow) and e.role == "SECC"]
    stop_at = next(e.t for e in received if e.message == "SessionStopReq")
    assert any(f.t < stop_at and f.power > 1000 for f in flows) and any(f.t > stop_at and f.power > 1000 for f in flows)

    # The trace: DC selected first, DC_BPT after; the loop's control mode follows; one SessionID throughout
    records = dissect(trace.read_bytes())
    messages = [r for r in records if isinstance(r, V2GMessage)]
    selected = [m.document["ServiceSelectionReq"]["SelectedEnergyTransferService"]["ServiceID"] for m in messages
                if m.message == "ServiceSelectionReq"]
    assert selected == [int(ServiceID.DC), int(ServiceID.DC_BPT)]
    offers = [m.document["ServiceDiscoveryRes"] for m in messages if m.message == "ServiceDiscoveryRes"]
    assert [[s["ServiceID"] for s in o["EnergyTransferServiceList"]["Service"]] for o in offers] == [[2], [2, 6]]
    assert all(o["ServiceRenegotiationSupported"] for o in offers)
    notes = [m.document["DC_ChargeLoopRes"].get("EVSEStatus", {}).get("EVSENotification") for m in messages
             if m.message == "DC_ChargeLoopRes"]
    assert "ServiceRenegotiation" in notes
    modes = [next(k for k in m.document["DC_ChargeLoopReq"] if k.endswith("ControlMode")) for m in messages
             if m.message == "DC_ChargeLoopReq"]
    switch = modes.index("BPT_Scheduled_DC_CLReqControlMode")
    assert switch > 0 and set(modes[:switch]) == {"Scheduled_DC_CLReqControlMode"}
    assert set(modes[switch:]) == {"BPT_Scheduled_DC_CLReqControlMode"}
    session_ids = {next(iter(m.document.values()))["Header"]["SessionID"] for m in messages[3:]}  # SessionSetupRes on
    assert len(session_ids) == 1
    summary = analyse(records).summary()
    assert summary["error_count"] == 0
    assert summary["energy_transfer"]["selected"] == ["DC", "DC_BPT"]


@pytest.mark.parametrize(("value", "accepted"), [("40", 40.0), ("0.5", 0.5), ("-1", None), ('"soon"', None),
                                                  ("true", None)])
def test_bpt_allowed_from_in_a_scenario(tmp_path: Path, value: str, accepted: float | None) -> None:
    path = tmp_path / "scenario.toml"
    path.write_text(f"[charger]\nbpt_allowed_from = {value}\n")
    if accepted is None:
        with pytest.raises(ConfigError, match=r"\[charger\] bpt_allowed_from: expected seconds >= 0, got"):
            scenarios.load(path)
        return
    scenario = scenarios.load(path)
    now = [accepted - 0.1]
    allowed = scenario.allowed_services(lambda: now[0])
    assert allowed is not None and allowed() == {ServiceID.DC}
    now[0] = accepted
    assert allowed() == {ServiceID.DC, ServiceID.DC_BPT}
    assert scenarios.load(None).allowed_services(lambda: 0.0) is None  # unrestricted unless the scenario says


def test_the_session_panel_shows_the_service_change(tmp_path: Path) -> None:
    """People's output (not a terminal here): the service row follows the renegotiation, and the
    panel's last line ends before the summary line."""
    path = tmp_path / "q02.toml"
    path.write_text('[session]\nservice = "DC_BPT"\nduration = 30\n[charger]\nbpt_allowed_from = 20\n')
    proc = subprocess.run([sys.executable, "-m", "v2gtool", "session", "run", "--sim", "--no-trace", "--scenario",
                           str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "│ service      │ DC → DC_BPT" in proc.stdout
    assert "┘\ncompleted: SessionStop Terminate" in proc.stdout


def secc_stops(result: SessionResult) -> list[str]:
    """The ChargingSession of every SessionStopReq the SECC received."""
    return [e.summary["ChargingSession"] for e in result.events
            if isinstance(e, MessageReceived) and e.role == "SECC" and e.message == "SessionStopReq"]


def test_a_discharging_ev_ends_the_session_properly_when_dc_bpt_is_withdrawn() -> None:
    """No service left for it after the renegotiation: SessionStop Terminate, not a dropped connection."""
    allowed = [DC_SERVICES]

    def listen(event: object) -> None:
        if isinstance(event, PowerFlow) and event.role == "SECC" and event.power < -1000:
            allowed[0] = frozenset({ServiceID.DC})  # the operator withdraws discharging mid-loop

    scenario = scenarios.load(None, direction=Direction.DISCHARGE, duration=30.0)
    result = asyncio.run(run_sim(scenario, listener=listen, allowed_services=lambda: allowed[0]))
    assert not result.ok and "SECC does not offer DC_BPT" in result.reason
    assert secc_stops(result) == ["ServiceRenegotiation", "Terminate"]
    ended = {e.role: e for e in result.events if isinstance(e, SessionEnded)}
    assert ended["SECC"].ok and ended["SECC"].reason == "SessionStop Terminate"
    assert result.ending is Ending.ENGINE  # ended by SessionStop, not by a closed connection


def test_an_ev_that_cannot_use_dc_bpt_is_not_asked_to_renegotiate_for_it() -> None:
    """ServiceDiscoveryReq SupportedServiceIDs: a DC-only EV gains nothing from DC_BPT being allowed."""
    result = asyncio.run(run_sim(scenarios.load(None, service=ServiceID.DC, bpt_allowed_from=20.0, duration=10.0)))
    assert result.ok, result.reason
    assert secc_stops(result) == ["Terminate"]


def test_an_ev_keeps_its_service_when_one_it_does_not_run_is_withdrawn() -> None:
    """Charging on DC_BPT: the operator withdrawing DC leaves the running service alone."""
    allowed = [DC_SERVICES]

    def listen(event: object) -> None:
        if isinstance(event, PowerFlow) and event.role == "SECC" and event.power > 1000:
            allowed[0] = frozenset({ServiceID.DC_BPT})

    result = asyncio.run(run_sim(scenarios.load(None, duration=10.0), listener=listen,
                                 allowed_services=lambda: allowed[0]))
    assert allowed[0] == {ServiceID.DC_BPT}  # it was withdrawn during the loop
    assert result.ok and secc_stops(result) == ["Terminate"]
