"""The end of a command on the station: the ``on_fault_exec`` stop action is reaped in the loop, waited
for and reported by ``Station.finish`` (with a bound, once), and ``Station.close`` gives the backend's
devices back (the GPIO line request, the serial port)."""

from __future__ import annotations

import sys
import time
import types
from collections.abc import Iterator
from typing import Any

import pytest

from tests.hw.conftest import make_station
from v2gtool.config import Config
from v2gtool.hw.backends import open_hardware
from v2gtool.hw.board_sim import BoardSimulator
from v2gtool.hw.cp import CpState
from v2gtool.hw.errors import HardwareError
from v2gtool.hw.events import StopActionRun
from v2gtool.hw.gpiod import gpiod_hardware
from v2gtool.hw.interfaces import Hardware
from v2gtool.hw.isolation import Edition, IsolationProfile
from v2gtool.hw.realtime import MonotonicClock
from v2gtool.hw.sim import SimClock
from v2gtool.hw.station import Station, StationConfig


def python(code: str) -> str:
    return f'{sys.executable} -c "{code}"'


def fault_with_stop_action(command: str) -> Station:
    """A station whose cable check just found an isolation fault: the stop action started."""
    station = make_station(on_fault_exec=command).station
    station.run(0.01)
    station.report_cable_check(station.config.isolation.evaluate(20_000.0))
    return station


def reported(station: Station) -> list[StopActionRun]:
    return [e for e in station.events if isinstance(e, StopActionRun)]


def test_the_loop_reaps_and_reports_a_stop_action_that_exited() -> None:
    station = fault_with_stop_action(python("pass"))
    deadline = time.monotonic() + 30.0
    while not reported(station) and time.monotonic() < deadline:  # real time for the child to run
        station.step()
        time.sleep(0.01)
    (ran,) = reported(station)
    assert ran.returncode == 0 and ran.detail == "session stopped" and not station.stop_actions_running


def test_finish_waits_for_a_stop_action_reports_it_once_and_may_be_called_again() -> None:
    station = fault_with_stop_action(python("import time; time.sleep(0.3); raise SystemExit(3)"))
    assert station.stop_actions_running
    station.finish()
    station.finish()
    (ran,) = reported(station)
    assert ran.returncode == 3 and ran.detail == "session stopped" and not station.stop_actions_running


def test_finish_kills_a_stop_action_that_outlives_its_bound() -> None:
    station = fault_with_stop_action(python("import time; time.sleep(60)"))
    station.finish(timeout=0.2)
    (ran,) = reported(station)
    assert ran.returncode == -9 and ran.detail == "killed: still running at the end of the command"
    assert not station.stop_actions_running


def test_close_releases_the_backend_once_per_call_and_is_safe_to_repeat() -> None:
    released: list[bool] = []
    hw = Hardware(backend="test", clock=SimClock(), release=lambda: released.append(True))
    station = Station(hw, StationConfig(IsolationProfile(Edition.IEC_61851_23_2023, 920.0)))
    with station:
        station.run(0.01)
    station.close()
    assert released == [True, True]


@pytest.fixture
def board() -> Iterator[BoardSimulator]:
    sim = BoardSimulator(CpState.C).start()
    yield sim
    sim.stop()


def test_close_closes_the_serial_port(board: BoardSimulator) -> None:
    hw = open_hardware("serial", Config({"hw": {"serial_port": board.port}}))
    assert hw.control_pilot is not None and hw.control_pilot.read().state is CpState.C
    Station(hw, StationConfig(IsolationProfile(Edition.IEC_61851_23_2023, 920.0))).close()
    with pytest.raises(HardwareError, match="disconnected"):
        hw.control_pilot.read()


def test_close_releases_the_gpio_line_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """The libgpiod v2 API as the backend uses it: request_lines, and release on the request."""
    releases: list[bool] = []

    class Request:
        def get_value(self, _line: Any) -> str:
            return "INACTIVE"

        def set_value(self, _line: Any, _value: Any) -> None:
            pass

        def release(self) -> None:
            releases.append(True)

    line = types.SimpleNamespace(
        Value=types.SimpleNamespace(ACTIVE="ACTIVE", INACTIVE="INACTIVE"),
        Direction=types.SimpleNamespace(INPUT="in", OUTPUT="out"),
    )
    gpiod = types.SimpleNamespace(LineSettings=lambda **_settings: None, request_lines=lambda *_a, **_k: Request())
    monkeypatch.setitem(sys.modules, "gpiod", gpiod)
    monkeypatch.setitem(sys.modules, "gpiod.line", line)
    layout = {"k1_coil": "K1_COIL", "k2_coil": "K2_COIL", "k1_feedback": "K1_AUX", "k2_feedback": "K2_AUX"}
    hw = gpiod_hardware(Config({"hw": layout}), MonotonicClock())
    Station(hw, StationConfig(IsolationProfile(Edition.IEC_61851_23_2023, 920.0))).close()
    assert releases == [True]
