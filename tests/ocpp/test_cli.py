"""The ``vpp`` and ``ocpp-bridge`` commands as a person and a script use them."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from tests.ocpp.test_park import free_port
from v2gtool.cli.context import AppContext
from v2gtool.cli.vpp import _printer, fleet_table
from v2gtool.config import Config
from v2gtool.ocpp.csms import StationConnected, StationLeft

V2GTOOL = [sys.executable, "-m", "v2gtool"]


@pytest.fixture()
def vpp(tmp_path: Path) -> Iterator[str]:
    process = subprocess.Popen(
        [*V2GTOOL, "--json", "vpp", "serve", "--port", "0", "--http-port", "0", "--state-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield json.loads(process.stdout.readline())["http"]
    finally:
        process.kill()
        process.wait()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*V2GTOOL, *args], capture_output=True, text=True, timeout=60)


def test_dispatch_status_and_cancel(vpp: str) -> None:
    human = run("vpp", "dispatch", "--http", vpp, "--power-kw", "200", "--duration", "900")
    assert human.returncode == 0 and human.stdout.strip() == "dispatching 200.0 kW into the grid for 900 s"
    status = run("--json", "vpp", "status", "--http", vpp, "--once")
    snapshot = json.loads(status.stdout)
    assert snapshot["request"]["power_w"] == -200_000 and snapshot["vehicles"] == []
    table = run("vpp", "status", "--http", vpp, "--once")
    assert "0 stations, 0 vehicles" in table.stdout and "200.0 kW asked" in table.stdout
    cancelled = run("--json", "vpp", "dispatch", "--http", vpp, "--power-kw", "0", "--cancel")
    assert json.loads(cancelled.stdout) == {"cancelled": True}
    assert json.loads(run("--json", "vpp", "status", "--http", vpp, "--once").stdout)["request"] is None


def test_errors_are_one_line_with_their_exit_status(tmp_path: Path) -> None:
    unreachable = run("vpp", "status", "--http", f"http://127.0.0.1:{free_port()}", "--once")
    assert unreachable.returncode == 3 and len(unreachable.stderr.strip().splitlines()) == 1
    assert "Traceback" not in unreachable.stderr
    key = tmp_path / "k.pem"
    key.write_text("x")
    assert run("vpp", "serve", "--key", str(key)).returncode == 2
    assert run("ocpp-bridge", "--csms", "ws://127.0.0.1:1/ocpp").returncode == 2  # neither --sim nor --iface
    wrong = run("ocpp-bridge", "--sim", "--csms", "http://127.0.0.1:1/ocpp")
    assert wrong.returncode == 2 and "ws:// or wss://" in wrong.stderr
    passwords = tmp_path / "passwords"
    passwords.write_text("no colon here\n")
    bad = run("vpp", "serve", "--passwords", str(passwords), "--state-dir", str(tmp_path / "s"))
    assert bad.returncode == 2 and f"{passwords}:1" in bad.stderr


def test_station_ids_are_shown_as_text_not_markup() -> None:
    """A station names itself in its URL: "[/red]" there must neither vanish nor crash the aggregator's
    output (rich markup)."""
    console = Console(record=True, width=200)
    show = _printer(AppContext(Config(), False, False, console, console), as_json=False)
    show(StationConnected(t=0.0, station="CS[/red]1", subprotocol="ocpp2.1"))
    show(StationLeft(t=1.0, station="CS[bold]2", reason="closed [1006]"))
    vehicle = {"station": "CS[/red]1", "evse_id": 1, "soc": 50.0, "min_soc": 20, "power_w": -1000.0,
               "allocation_w": -1000.0, "capacity_w": 11000.0, "remaining_wh": 9000.0, "departure": None}
    console.print(fleet_table({"stations": 1, "vehicles": [vehicle], "power_w": -1000.0, "request_w": None,
                               "met_at": None, "discharge_capacity_w": 11000.0, "time": 0.0}))
    text = console.export_text()
    assert "+ CS[/red]1 (ocpp2.1)" in text and "- CS[bold]2: closed [1006]" in text and "CS[/red]1/1" in text
