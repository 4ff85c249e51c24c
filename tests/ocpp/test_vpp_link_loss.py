"""A station whose connection to the VPP drops keeps running the TxProfile it accepted (OCPP 2.0.1
K01): the VPP counts it at that share until the profile ends, so the others share only the rest and
the fleet does not overshoot, and only then re-dispatches it to the others. Profiles are short (one
lease) and renewed while the request runs, so a lost station stops on its own soon."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import websockets
from websockets.asyncio.client import connect

from tests.ocpp.test_vpp_dispatch import RawStation, needs, plant, until
from v2gtool.ocpp.csms import Vpp, VppConfig
from v2gtool.ocpp.fleet import Fleet, Vehicle
from v2gtool.ocpp.payloads import Reading


def test_a_lost_station_counts_at_its_share_until_its_profile_ends_then_the_others_take_it(tmp_path: Path) -> None:
    """The tester's case: three stations share 15 kW, one's link drops while it runs on. The two
    others' renewals after the loss still carry 5 kW (not 7.5 kW: 20 kW in all); once its profile
    has ended, they get 7.5 kW."""

    async def scenario() -> None:
        async with plant(tmp_path, dict.fromkeys("abc", "Accepted"), response_timeout=1.0) as (vpp, stations):
            vehicles = vpp.fleet.vehicles
            vpp.dispatch(-15_000.0, 600.0)
            await until(lambda: all(v.accepted == pytest.approx(-5000, abs=1) for v in vehicles.values()), 10.0)
            lost = vehicles[("c", 1)]
            assert lost.accepted_until <= time.time() + vpp.lease()  # a lease, not the 600 s of the request
            for station in stations.values():
                await station.meter(1, -5000.0)
            met = vpp.fleet.met_at
            assert met is not None

            stations["c"].ws.transport.abort()  # the link drops; the station runs on
            await until(lambda: lost.link_lost, 10.0)
            a = stations["a"]
            sent = len(a.profiles)
            await until(lambda: len(a.profiles) > sent, 10.0)  # a renewal since the loss...
            assert a.profiles[-1][1] == pytest.approx(-5000, abs=1)  # ...of the same share
            assert vpp.fleet.met_at == met and vpp.fleet.check_met(time.time())  # c counts at its 5 kW
            snapshot = vpp.snapshot()
            held = next(v for v in snapshot["vehicles"] if v["station"] == "c")
            assert held["link_lost"] and held["allocation_w"] == pytest.approx(-5000, abs=1) and not held["capacity_w"]
            assert snapshot["allocated_w"] == pytest.approx(-15_000, abs=1)

            ends = lost.accepted_until
            await until(lambda: ("c", 1) not in vehicles, 10.0)
            assert time.time() >= ends and vpp.fleet.dispatched_at is not None and vpp.fleet.dispatched_at >= ends
            assert vpp.fleet.met_at is None  # a re-dispatch
            await until(lambda: a.profiles[-1][1] == pytest.approx(-7500, abs=1), 10.0)
            await until(lambda: stations["b"].profiles[-1][1] == pytest.approx(-7500, abs=1), 10.0)
            for name in "ab":
                await stations[name].meter(2, -7500.0)
            assert vpp.fleet.met_at is not None

    asyncio.run(scenario())


def test_a_station_back_before_its_profile_ends_keeps_its_vehicle_and_gets_its_renewals(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with plant(tmp_path, {"a": "Accepted", "c": "Accepted"}, response_timeout=3.0) as (vpp, stations):
            vpp.dispatch(-10_000.0, 600.0)
            lost = vpp.fleet.vehicles[("c", 1)]
            await until(lambda: lost.accepted == pytest.approx(-5000, abs=1), 10.0)
            port = stations["c"].ws.remote_address[1]
            stations["c"].ws.transport.abort()
            await until(lambda: lost.link_lost, 10.0)
            ws = await connect(f"ws://127.0.0.1:{port}/ocpp/c", subprotocols=[websockets.Subprotocol("ocpp2.0.1")],
                               proxy=None)  # fmt: skip
            back = RawStation(ws, "Accepted")
            reading = asyncio.create_task(back.read())
            try:
                await back.meter(1, -5000.0)  # the same transaction, carried on
                assert vpp.fleet.vehicles[("c", 1)] is lost and not lost.link_lost and lost.needs is not None
                await until(lambda: back.profiles, 10.0)  # renewed over the new connection
                assert back.profiles[-1][1] == pytest.approx(-5000, abs=1)
            finally:
                await ws.close()
                reading.cancel()

    asyncio.run(scenario())


def test_every_share_of_a_transaction_replaces_its_one_tx_profile(tmp_path: Path) -> None:
    """New shares and renewals carry the transaction's profile id: a station replaces the TxProfile
    with that id, where one under another id at the same stackLevel would be refused (K01)."""

    async def scenario() -> None:
        async with plant(tmp_path, {"a": "Accepted", "b": "Accepted"}, response_timeout=1.0) as (vpp, stations):
            a = stations["a"]
            vpp.dispatch(-8000.0, 600.0)
            await until(lambda: len(a.profiles) >= 2, 10.0)  # the share and a renewal
            vpp.dispatch(-12_000.0, 600.0)
            await until(lambda: a.profiles[-1][1] == pytest.approx(-6000, abs=1), 10.0)
            assert set(a.ids) == {1} and set(stations["b"].ids) == {1}

    asyncio.run(scenario())


def lost_fleet() -> Fleet:
    """Three vehicles of 10 kW running 5 kW each of a 15 kW request, accepted until 13 s; c's link lost
    at 2 s."""
    fleet = Fleet()
    for station in "abc":
        vehicle = Vehicle(station, 1, f"tx-{station}")
        vehicle.update_needs(needs())
        vehicle.accepted, vehicle.accepted_until = -5000.0, 13.0
        fleet.arrive(vehicle)
    fleet.dispatch(-15_000.0, 600.0, 0.0)
    fleet.allocate(1.0)
    fleet.lose(2.0, "c")
    return fleet


def test_the_fleet_holds_a_lost_vehicle_at_its_accepted_share_until_that_profile_ends() -> None:
    fleet = lost_fleet()
    assert fleet.allocate(3.0) == {("a", 1): -5000.0, ("b", 1): -5000.0, ("c", 1): -5000.0}
    assert fleet.capacity(3.0, 600.0) == pytest.approx(20_000.0)  # c is not dispatchable
    for station in "ab":  # c reports nothing: counted at its share
        fleet.vehicles[(station, 1)].meter(Reading(at=3.0, imported_wh=None, exported_wh=None, power=-5000.0, soc=None))
    assert fleet.check_met(3.0)
    assert fleet.allocate(13.0) == {("a", 1): -7500.0, ("b", 1): -7500.0}  # its profile ended: gone
    assert fleet.dispatched_at == 13.0 and fleet.met_at is None


def test_a_lost_vehicle_without_a_profile_in_force_leaves_at_once_and_a_rejoined_one_is_dispatched() -> None:
    fleet = lost_fleet()
    fleet.vehicles[("b", 1)].accepted_until = 1.5  # it lapsed before the loss of b's link
    fleet.lose(2.5, "b")
    assert ("b", 1) not in fleet.vehicles and fleet.dispatched_at == 2.5
    fleet.rejoin("c")
    assert fleet.allocate(3.0) == {("a", 1): -7500.0, ("c", 1): -7500.0}


@pytest.mark.parametrize(
    ("watts", "accepted", "ends_in", "request_left", "due"),
    [
        (-5000.0, -5000.0, 12.0, 600.0, False),  # 12 s left of its 13 s profile: not yet
        (-5000.0, -5000.0, 10.5, 600.0, True),  # under the response timeout and a period left: renewed
        (-5000.0, -5000.0, -3.0, 600.0, True),  # it lapsed (refused meanwhile): sent again
        (-5000.0, -5000.0, 10.5, 10.5, False),  # it runs to the end of the request already
        (-5000.0, -5000.0, 10.5, None, False),  # no request: no renewals
        (0.0, 0.0, 10.5, 600.0, True),  # idle, its profile in force: kept idle
        (0.0, 0.0, -1.0, 600.0, False),  # never sent one, or its idle one ended: none
        (-5200.0, -5000.0, 12.0, 600.0, True),  # the share moved
        (-5050.0, -5000.0, 12.0, 600.0, False),  # by less than CHANGE_W
    ],
)
def test_a_share_is_renewed_before_its_profile_ends_while_the_request_runs(
    tmp_path: Path, watts: float, accepted: float, ends_in: float, request_left: float | None, due: bool
) -> None:
    vpp = Vpp(VppConfig(tmp_path / "state", period=1.0, response_timeout=10.0))
    try:
        assert vpp.lease() == 13.0
        now = time.time()
        if request_left is not None:
            vpp.fleet.dispatch(-5000.0, request_left, now)
        vehicle = Vehicle("a", 1, "tx")
        vehicle.accepted, vehicle.accepted_until = accepted, now + ends_in
        assert vpp.due(vehicle, watts, now) is due
    finally:
        vpp.log.close()
