"""A contact already closed (welded) when a fresh process starts, as after a reboot: weld-check,
status and reset judge it once the interlock's feedback margin has passed (interlock rule 4), on
sim and on gpiod, without --at."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from v2gtool.cli.main import main
from v2gtool.config import Config
from v2gtool.hw.gpiod import gpiod_hardware
from v2gtool.hw.interfaces import Hardware, Pole
from v2gtool.hw.interlock import ContactorPhase
from v2gtool.hw.sim import SimClock
from v2gtool.hw.weldcheck import run_weld_check, settle_contactors

from .conftest import make_station
from .test_cli_hw import one_line_error, result_of, run, scenario
from .test_gpiod import HW, RelayBoard, station_on

MISMATCH = '[[at]]\nt = 0\nfault = "feedback_mismatch"\n'


def test_weld_check_finds_contacts_closed_at_start(tmp_path: Path) -> None:
    check = run("contactor", "weld-check", "--scenario", scenario(tmp_path, MISMATCH), "--json")
    one_line_error(check, 4, "weld check: welded K1, K2")
    assert result_of(check)["feedback_closed"] == ["K1", "K2"]


def test_status_reports_contacts_closed_at_start_as_stuck(tmp_path: Path) -> None:
    status = run("contactor", "status", "--scenario", scenario(tmp_path, MISMATCH), "--json")
    assert status.returncode == 4
    record = result_of(status)
    assert record["stuck"] == "K1" and record["feedback"] == {"K1": True, "K2": True}
    assert record["phase"] == "open" and "CONTACTOR_STUCK" in record["close_blocked_by"]


def test_reset_is_refused_while_contacts_closed_at_start_show_closed(tmp_path: Path) -> None:
    one_line_error(run("contactor", "reset", "--scenario", scenario(tmp_path, MISMATCH)), 4, "K1, K2 closed")


def test_settling_latches_after_the_interlocks_own_margin() -> None:
    """Found closed at the first sample: latched once the opening time and the feedback margin have
    passed, not before (the interlock's timing, nothing new)."""
    setup = make_station(MISMATCH)
    station = setup.station
    station.step()
    assert station.interlock.stuck is None  # the contacts may still be opening
    settle_contactors(station)
    config = station.interlock.config
    stuck = station.interlock.stuck
    assert stuck is not None and not stuck.commanded_closed and stuck.feedback_closed
    assert stuck.t == pytest.approx(config.contactor_open_time_s + config.feedback_margin_s, abs=0.0015)
    assert station.interlock.phase is ContactorPhase.OPEN


def test_healthy_contactors_settle_at_once_and_pass() -> None:
    setup = make_station()
    settle_contactors(setup.station)
    assert setup.clock.now() == 0.0 and setup.station.interlock.stuck is None
    assert not run_weld_check(setup.station).welded


def test_a_weld_found_at_start_on_gpiod_is_reported_by_the_weld_check() -> None:
    clock = SimClock()
    board = RelayBoard(clock)
    board.welded = True
    board.levels["K1_AUX"] = True  # closed with the coils released, from the start
    station = station_on(board, clock)
    report = run_weld_check(station)
    assert report.welded and report.feedback_closed == (Pole.K1,)
    assert report.link_v is None  # no power module on gpiod: no voltage test
    assert not station.reset().allowed


# -- the commands on gpiod (the lines a test double), in this process --------------------------------------


def gpiod_main(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, list[dict[str, Any]], str]:
    """``v2gtool --json contactor *args --backend gpiod`` in this process, on a relay board whose K1
    is welded (its mirror contact closed with the coils released from the start): exit code, JSON
    lines, stderr."""
    clock = SimClock()
    board = RelayBoard(clock)
    board.welded = True
    board.levels["K1_AUX"] = True

    def welded_board(_backend: str, _config: Config) -> Hardware:
        return gpiod_hardware(Config({"hw": HW}), clock, lines=board)

    monkeypatch.setattr("v2gtool.cli.hw_common.open_hardware", welded_board)
    config = tmp_path / "v2gtool.toml"
    config.write_text("")
    with pytest.raises(SystemExit) as exited:
        main(["--config", str(config), "--json", "contactor", *args, "--backend", "gpiod"])
    out, err = capsys.readouterr()
    assert isinstance(exited.value.code, int)
    return exited.value.code, [json.loads(line) for line in out.splitlines()], err


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("weld-check", "weld check: welded K1\n"),
        ("status", "Contactor Stuck on K1 (DC+): commanded open, feedback closed\n"),
        ("reset", "feedback still reports K1 closed)\n"),
    ],
)
def test_gpiod_commands_find_a_weld_at_start(
    command: str, message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, records, err = gpiod_main([command], tmp_path, monkeypatch, capsys)
    assert code == 4 and err.startswith("v2gtool: error: ") and err.endswith(message)
    if command == "status":
        status = next(r for r in records if r.get("result") == "contactor-status")
        assert status["stuck"] == "K1" and status["feedback"]["K1"]
