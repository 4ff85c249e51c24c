"""SetChargingProfile answers Rejected, with a standardized statusInfo reasonCode, what OCPP 2.0.1 K01
says a station rejects, and installs nothing of it: a TxProfile on evseId 0 (K01.FR.16) or without its
transactionId (K01.FR.03), a ChargingStationMaxProfile on an EVSE (K01.FR.03) or Relative (K01.FR.38),
a Relative profile with a startSchedule (K01.FR.41), and a TxProfile with another TxProfile's
stackLevel and transaction under a new id (K01.FR.39)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.ocpp.test_profile import T0, profile
from v2gtool.ocpp.outbox import Outbox
from v2gtool.ocpp.profile import ProfileSetpoint
from v2gtool.ocpp.station import BridgeConfig, ChargingProfileReceived, StationBridge
from v2gtool.session.events import Event

TX = "tx-1"
LIMIT = [{"startPeriod": 0, "limit": 4000.0}]


def _bridge(tmp: Path) -> tuple[StationBridge, list[Event]]:
    """A station (EVSE 1) whose transaction TX runs, and the events it reports."""
    events: list[Event] = []
    setpoint = ProfileSetpoint(clock=lambda: T0, transaction_id=TX, transaction_start=T0)
    return StationBridge(BridgeConfig(url="ws://x", station_id="K01"), Outbox(tmp), setpoint, events.append), events


def relative(pid: int = 1, **fields: Any) -> dict[str, Any]:
    return profile(pid, kind="Relative", start=None, periods=LIMIT, **fields)


@pytest.mark.parametrize(
    ("evse_id", "data", "code", "why"),
    [
        (0, relative(purpose="TxProfile", transactionId=TX), "InvalidValue", "not on evseId 0"),
        (1, relative(purpose="TxProfile"), "MissingParam", "a TxProfile needs the transactionId it is for"),
        (1, profile(purpose="ChargingStationMaxProfile", periods=LIMIT), "InvalidValue", "not on 1"),
        (0, relative(purpose="ChargingStationMaxProfile"), "InvalidValue", "cannot be Relative"),
        (1, profile(kind="Relative", periods=LIMIT), "InvalidSchedule", "a Relative profile has no startSchedule"),
    ],
    ids=["K01.FR.16", "K01.FR.03-tx", "K01.FR.03-max", "K01.FR.38", "K01.FR.41"],
)
def test_a_profile_k01_refuses_is_rejected_with_its_reason_code_and_not_installed(
    tmp_path: Path, evse_id: int, data: dict[str, Any], code: str, why: str
) -> None:
    bridge, events = _bridge(tmp_path)
    status, reason_code, reason = bridge.set_charging_profile(evse_id, data)
    assert (status, reason_code) == ("Rejected", code) and why in reason and "\n" not in reason
    assert bridge.setpoint.profiles == {} and bridge.setpoint.revision == 0
    assert [(e.accepted, e.reason) for e in events if isinstance(e, ChargingProfileReceived)] == [(False, reason)]


def test_what_k01_allows_is_accepted(tmp_path: Path) -> None:
    """The same purposes where K01 puts them: a TxProfile of the running transaction on its EVSE, a
    ChargingStationMaxProfile on 0, a Relative profile without startSchedule, an Absolute one with."""
    bridge, _ = _bridge(tmp_path)
    assert bridge.set_charging_profile(1, relative(1, purpose="TxProfile", transactionId=TX))[0] == "Accepted"
    assert bridge.set_charging_profile(0, profile(2, purpose="ChargingStationMaxProfile"))[0] == "Accepted"
    assert bridge.set_charging_profile(0, relative(3, stack=1))[0] == "Accepted"
    assert sorted(bridge.setpoint.profiles) == [1, 2, 3]


def test_a_tx_profile_at_another_ones_stack_level_is_rejected_not_swapped_in(tmp_path: Path) -> None:
    """K01.FR.39: a new id at the stackLevel of the transaction's TxProfile is refused
    (InvalidStackLevel) and the installed one runs on; the CSMS replaces it by its id (K01.FR.05),
    or stacks another at a new level."""
    bridge, _ = _bridge(tmp_path)
    assert bridge.set_charging_profile(1, relative(1, purpose="TxProfile", transactionId=TX))[0] == "Accepted"
    other = profile(2, purpose="TxProfile", transactionId=TX, kind="Relative", start=None,
                    periods=[{"startPeriod": 0, "limit": -7000.0}])  # fmt: skip
    status, code, reason = bridge.set_charging_profile(1, other)
    assert (status, code) == ("Rejected", "InvalidStackLevel")
    assert "TxProfile 1 of transaction 'tx-1' has stackLevel 0 already" in reason
    assert list(bridge.setpoint.profiles) == [1] and bridge.setpoint.power(0.0) == 4000.0
    again = profile(1, purpose="TxProfile", transactionId=TX, kind="Relative", start=None,
                    periods=[{"startPeriod": 0, "limit": 2000.0}])  # fmt: skip
    assert bridge.set_charging_profile(1, again)[0] == "Accepted" and bridge.setpoint.power(0.0) == 2000.0
    assert bridge.set_charging_profile(1, {**other, "stack_level": 1})[0] == "Accepted"
    assert sorted(bridge.setpoint.profiles) == [1, 2] and bridge.setpoint.power(0.0) == -7000.0
