"""The EV's own plant when the charger is across the link: its battery follows the current the SECC
reports (:class:`v2gtool.session.plant.RemoteChargerVehicle`). Unit tests on event timestamps (a
virtual clock), then ``serve`` / ``connect`` over veth between two namespaces."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.netns import VethPair, veth_pair
from v2gtool.cli.live import build_plant
from v2gtool.iso20.events import PhaseChanged, PowerFlow, SessionEnded
from v2gtool.iso20.states import State
from v2gtool.session.plant import RemoteChargerVehicle

V2GTOOL = [sys.executable, "-m", "v2gtool"]
CAPACITY_AH = 5.0  # a small battery: a few seconds of DC_ChargeLoop move its SoC by whole percent


def ev_scenario(tmp_path: Path, soc: float = 0.5, extra: str = "") -> Path:
    scenario = tmp_path / "ev.toml"
    scenario.write_text(f"[plant]\nbattery_capacity_ah = {CAPACITY_AH}\nsoc = {soc}\n{extra}")
    return scenario


def ev_vehicle(tmp_path: Path) -> RemoteChargerVehicle:
    vehicle = build_plant(ev_scenario(tmp_path), remote_ev=False)[2]
    assert isinstance(vehicle, RemoteChargerVehicle)
    return vehicle


def flow(t: float, amps: float, role: str = "EVCC") -> PowerFlow:
    return PowerFlow(t=t, role=role, voltage=375.0, current=amps, power=375.0 * amps)


def test_reported_current_is_held_and_counted_until_energy_transfer_ends(tmp_path: Path) -> None:
    vehicle = ev_vehicle(tmp_path)
    ocv = vehicle.battery_voltage()
    vehicle.follow(flow(10.0, -30.0))
    assert vehicle.soc_percent() == pytest.approx(50.0)  # nothing counted yet
    assert vehicle.battery_voltage() == pytest.approx(ocv - 30.0 * 0.05)  # OCV + I * R_i, I < 0
    vehicle.follow(flow(10.25, -20.0))
    # a renegotiation keeps the current flowing; the SECC's own events do not count
    vehicle.follow(PhaseChanged(t=10.5, role="EVCC", phase=State.RENEGOTIATION.value))
    vehicle.follow(flow(10.6, 500.0, role="SECC"))
    vehicle.follow(PhaseChanged(t=11.0, role="EVCC", phase=State.WELDING_DETECTION.value))
    counted_as = -30.0 * 0.25 - 20.0 * 0.75  # A*s
    assert vehicle.soc_percent() == pytest.approx(50.0 + 100 * counted_as / 3600 / CAPACITY_AH)
    assert vehicle.battery_voltage() == pytest.approx(vehicle.setup.plant.ocv_v)
    after_stop = vehicle.soc_percent()
    vehicle.follow(SessionEnded(t=20.0, role="EVCC", reason="SessionStop Terminate", ok=True))
    assert vehicle.soc_percent() == after_stop  # no current after the loop


def test_a_session_end_mid_loop_stops_the_count(tmp_path: Path) -> None:
    vehicle = ev_vehicle(tmp_path)
    vehicle.follow(flow(0.0, 100.0))
    vehicle.follow(SessionEnded(t=1.0, role="EVCC", reason="timeout", ok=False))
    vehicle.follow(flow(5.0, 100.0, role="SECC"))
    assert vehicle.soc_percent() == pytest.approx(50.0 + 100 * 100.0 / 3600 / CAPACITY_AH)


# -- over a real link ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def link() -> Iterator[VethPair]:
    with veth_pair("v2ge") as pair:
        yield pair


def session(link: VethPair, scenario: Path, *args: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """``serve --sessions 1`` and ``connect --scenario``: the EV's and the SECC's JSON records."""
    secc = subprocess.Popen(link.cmd(link.secc_ns, *V2GTOOL, "--json", "v2g-message-handler", "serve", "--iface",
                                     link.secc_if, "--no-tls", "--sessions", "1"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ev = subprocess.run(link.cmd(link.ev_ns, *V2GTOOL, "--json", "v2g-message-handler", "connect", "--iface",
                                     link.ev_if, "--no-tls", "--scenario", str(scenario), *args),
                            capture_output=True, text=True, timeout=120)
        secc_out, secc_err = secc.communicate(timeout=30)
    finally:
        secc.kill()
    assert ev.returncode == 0, ev.stderr + secc_err
    return [json.loads(line) for line in ev.stdout.splitlines()], [json.loads(line) for line in secc_out.splitlines()]


def flows(records: list[dict[str, Any]], role: str) -> list[dict[str, Any]]:
    return [r for r in records if r["event"] == "PowerFlow" and r["role"] == role]


def metered_wh(secc_flows: list[dict[str, Any]]) -> float:
    """The energy the SECC metered (its power held between its own DC_ChargeLoopRes), signed."""
    return sum(a["power"] * (b["t"] - a["t"]) for a, b in itertools.pairwise(secc_flows)) / 3600


@pytest.mark.netns
@pytest.mark.parametrize("direction", ["discharge", "charge"])
def test_the_ev_soc_follows_the_energy_the_secc_metered(link: VethPair, tmp_path: Path, direction: str) -> None:
    capacity_wh = ev_vehicle(tmp_path).setup.plant.battery_capacity_wh
    ev, secc = session(link, ev_scenario(tmp_path), "--direction", direction, "--duration", "3")
    ev_flows, secc_flows = flows(ev, "EVCC"), flows(secc, "SECC")
    assert len(ev_flows) == len(secc_flows) >= 10
    # The SoC in the EV's n-th PowerFlow counts the current up to the (n-1)-th loop response: compare
    # it with what the SECC metered over the same loop responses.
    moved_wh = (ev_flows[-1]["soc"] - ev_flows[0]["soc"]) / 100 * capacity_wh
    metered = metered_wh(secc_flows[:-1])
    assert abs(metered) > 3.0  # watt-hours: the session moved energy
    assert (moved_wh > 0) == (direction == "charge")
    assert moved_wh == pytest.approx(metered, rel=0.04)  # measured: 0.4 % discharging, 1.7 % charging


@pytest.mark.netns
def test_the_ev_stops_discharging_at_its_soc_floor(link: VethPair, tmp_path: Path) -> None:
    """20.3 % and a floor of 20 %: the EV ends the loop itself long before --duration."""
    scenario = ev_scenario(tmp_path, soc=0.203, extra="[session]\nmin_soc = 20\n")
    ev, _secc = session(link, scenario, "--direction", "discharge", "--duration", "60")
    ev_flows = flows(ev, "EVCC")
    assert ev_flows[-1]["soc"] <= 20.0 < ev_flows[-2]["soc"]
    assert ev_flows[-1]["t"] - ev_flows[0]["t"] < 30
    ended = next(r for r in ev if r["event"] == "SessionEnded")
    assert ended["ok"] and ended["reason"] == "SessionStop Terminate"
