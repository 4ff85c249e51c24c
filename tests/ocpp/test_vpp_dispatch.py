"""The VPP's control loop against stations that do not take their share: a silent station delays
neither the control period nor the other stations (one profile in flight per vehicle), and a vehicle
whose share is rejected or never answered keeps running its previous TxProfile (OCPP 2.0.1 K01), so
it is counted at that (or at its metered power) and the others get only the rest: the request is
met, not overshot."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import websockets
from websockets.asyncio.client import ClientConnection, connect

from v2gtool.ocpp.csms import Vpp, VppConfig
from v2gtool.ocpp.fleet import Fleet, Vehicle
from v2gtool.ocpp.payloads import Reading, VehicleNeeds


def iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass
class RawStation:
    """A station on a raw websocket, one vehicle of 10 kW / 30 kWh discharge: it answers every
    SetChargingProfile with *status* (None: never; it may change) and keeps (arrival time, limit) of
    each, and each one's id. A limit beyond *capped_info*'s cap (W) gets its statusInfo as well."""

    ws: ClientConnection
    status: str | None
    profiles: list[tuple[float, float]] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    capped_info: tuple[float, dict[str, str]] | None = None
    _answers: dict[str, asyncio.Future[Any]] = field(default_factory=dict)

    async def read(self) -> None:
        async for raw in self.ws:
            frame = json.loads(raw)
            if frame[0] != 2:
                self._answers.pop(frame[1]).set_result(frame)
                continue
            period = frame[3]["chargingProfile"]["chargingSchedule"][0]["chargingSchedulePeriod"][0]
            self.profiles.append((time.monotonic(), period["limit"]))
            self.ids.append(frame[3]["chargingProfile"]["id"])
            answer: dict[str, Any] = {"status": self.status}
            if self.capped_info is not None and abs(period["limit"]) > self.capped_info[0]:
                answer["statusInfo"] = self.capped_info[1]
            if self.status is not None:
                await self.ws.send(json.dumps([3, frame[1], answer]))

    async def call(self, action: str, payload: dict[str, Any]) -> Any:
        message_id = f"m{len(self.profiles)}-{time.monotonic_ns()}"
        self._answers[message_id] = asyncio.get_running_loop().create_future()
        await self.ws.send(json.dumps([2, message_id, action, payload]))
        return await asyncio.wait_for(self._answers[message_id], 2)

    async def plug_in(self) -> None:
        await self.call("BootNotification", {"chargingStation": {"vendorName": "x", "model": "y"}, "reason": "PowerUp"})
        await self.call("TransactionEvent", {
            "eventType": "Started", "timestamp": iso(time.time()), "triggerReason": "CablePluggedIn", "seqNo": 0,
            "transactionInfo": {"transactionId": "tx"}, "evse": {"id": 1, "connectorId": 1}})  # fmt: skip
        extension = {"vendorId": "org.v2gtool", "bpt": True, "maxDischargePower": 10000,
                     "evMinV2XEnergyRequest": -30000}  # fmt: skip
        await self.call("NotifyEVChargingNeeds", {"evseId": 1, "chargingNeeds": {
            "requestedEnergyTransfer": "DC", "customData": extension}})  # fmt: skip

    async def meter(self, seq_no: int, power: float) -> None:
        """A TransactionEvent Updated with the metered power (signed W, - into the grid)."""
        measurand = "Power.Active.Import" if power >= 0 else "Power.Active.Export"
        await self.call("TransactionEvent", {
            "eventType": "Updated", "timestamp": iso(time.time()), "triggerReason": "MeterValuePeriodic",
            "seqNo": seq_no, "transactionInfo": {"transactionId": "tx"}, "evse": {"id": 1, "connectorId": 1},
            "meterValue": [{"timestamp": iso(time.time()), "sampledValue": [
                {"measurand": measurand, "value": abs(power)}]}]})  # fmt: skip


@asynccontextmanager
async def plant(
    tmp_path: Path, statuses: dict[str, str | None], response_timeout: float = 3.0
) -> AsyncIterator[tuple[Vpp, dict[str, RawStation]]]:
    """A running Vpp (0.1 s period, its control loop on) with one plugged-in OCPP 2.0.1 station per
    entry of *statuses*."""
    vpp = Vpp(VppConfig(tmp_path / "state", period=0.1, response_timeout=response_timeout))
    server = await vpp.serve("127.0.0.1", 0)
    port = next(iter(server.sockets)).getsockname()[1]
    stations: dict[str, RawStation] = {}
    tasks = []
    for name, status in statuses.items():
        ws = await connect(f"ws://127.0.0.1:{port}/ocpp/{name}", subprotocols=[websockets.Subprotocol("ocpp2.0.1")],
                           proxy=None)  # fmt: skip
        stations[name] = RawStation(ws, status)
        tasks.append(asyncio.create_task(stations[name].read()))
        await stations[name].plug_in()
    control = asyncio.create_task(vpp.control_loop())
    try:
        yield vpp, stations
    finally:
        control.cancel()
        for station in stations.values():
            await station.ws.close()
        for task in tasks:
            task.cancel()
        server.close()
        await server.wait_closed()
        vpp.log.close()


async def until(condition: Any, timeout: float) -> float:
    """Seconds until *condition()* holds (fails after *timeout*)."""
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "timed out"
        await asyncio.sleep(0.01)
    return time.monotonic() - start


def test_a_silent_station_delays_neither_the_others_nor_the_next_period(tmp_path: Path) -> None:
    """Causality rather than a wall-clock window: the other station's new share arrives while the
    silent station's profile is still unanswered (its 60 s response timeout far from over)."""

    async def scenario() -> None:
        async with plant(tmp_path, {"ok": "Accepted", "silent": None}, response_timeout=60.0) as (vpp, stations):
            ok, silent = stations["ok"], stations["silent"]
            vpp.dispatch(-10_000.0, 600.0)
            await until(lambda: ok.profiles and silent.profiles, 10.0)
            assert ok.profiles[-1][1] == pytest.approx(-5000, abs=1)
            await asyncio.sleep(0.3)
            vpp.cancel()
            await until(lambda: ok.profiles[-1][1] == 0, 20.0)
            assert not vpp._sending[("silent", 1)].done()  # still waiting for the silent station's answer
            assert not vpp.fleet.vehicles[("silent", 1)].refused(time.time())
            assert len(silent.profiles) == 1  # no second profile piled on the unanswered one

    asyncio.run(scenario())


@pytest.mark.parametrize("status", ["Rejected", None])
def test_a_refused_vehicle_counts_at_its_accepted_share_and_the_fleet_does_not_overshoot(
    tmp_path: Path, status: str | None
) -> None:
    """Both vehicles take -4 kW of -8 kW; then one station rejects (or never answers) its -6 kW of a
    -12 kW request. It still runs its -4 kW TxProfile (K01), so the other is sent -8 kW, not its full
    10 kW: the fleet runs at the request. Once that station meters -5 kW, the other gets -7 kW."""

    async def scenario() -> None:
        async with plant(tmp_path, {"ok": "Accepted", "refuses": "Accepted"}) as (vpp, stations):
            ok, refuses = stations["ok"], stations["refuses"]
            refused = vpp.fleet.vehicles[("refuses", 1)]
            vpp.dispatch(-8_000.0, 600.0)
            await until(lambda: refused.accepted == pytest.approx(-4000, abs=1), 10.0)
            await until(lambda: ok.profiles and ok.profiles[-1][1] == pytest.approx(-4000, abs=1), 10.0)
            refuses.status = status
            vpp.dispatch(-12_000.0, 600.0)
            await until(lambda: ok.profiles[-1][1] == pytest.approx(-8000, abs=1), 20.0)
            assert refused.refused(time.time()) and refused.accepted == pytest.approx(-4000, abs=1)
            limits = [limit for limit, _ in itertools.groupby(limit for _, limit in refuses.profiles)]  # renewals
            assert limits == pytest.approx([-4000, -6000], abs=1)
            sent = len(refuses.profiles)
            assert refused.allocation == pytest.approx(-4000, abs=1)
            # what the stations run: ok its last profile, the refused one the profile it accepted
            assert ok.profiles[-1][1] + refused.accepted == pytest.approx(-12_000, abs=1)
            snapshot = vpp.snapshot()
            assert snapshot["allocated_w"] == pytest.approx(-12_000, abs=1)
            assert [(v["station"], v["refused"]) for v in snapshot["vehicles"]] == [("ok", False), ("refuses", True)]
            await refuses.meter(1, -5000.0)
            await until(lambda: ok.profiles[-1][1] == pytest.approx(-7000, abs=1), 10.0)
            await asyncio.sleep(0.5)  # five periods: the refused station is offered nothing meanwhile
            assert len(refuses.profiles) == sent and ok.profiles[-1][1] == pytest.approx(-7000, abs=1)

    asyncio.run(scenario())


def needs(max_discharge: float = 10_000.0) -> VehicleNeeds:
    return VehicleNeeds(bpt=True, max_charge_power=10_000.0, max_discharge_power=max_discharge, departure=None,
                        target_soc=None, min_soc=None, dischargeable_wh=30_000.0)  # fmt: skip


def two_vehicles(accepted: float) -> Fleet:
    """Two vehicles of 10 kW discharge whose stations accepted *accepted* W each."""
    fleet = Fleet()
    for station in ("a", "b"):
        vehicle = Vehicle(station, 1, f"tx-{station}")
        vehicle.update_needs(needs())
        vehicle.accepted = accepted
        fleet.arrive(vehicle)
    return fleet


def test_a_refused_vehicle_is_offered_no_share_until_new_needs_or_the_hold_ends() -> None:
    fleet = two_vehicles(-4000.0)
    fleet.dispatch(-8_000.0, 600.0, 0.0)
    assert fleet.allocate(0.0) == {("a", 1): -4000.0, ("b", 1): -4000.0}
    fleet.refuse(1.0, ("b", 1))
    assert fleet.dispatched_at == 1.0  # a re-dispatch: what was met is met no longer
    assert fleet.capacity(2.0, 600.0) == pytest.approx(10_000.0)  # b is not dispatchable
    assert fleet.allocate(2.0) == {("a", 1): -4000.0, ("b", 1): -4000.0}  # b runs its accepted share
    fleet.dispatch(-12_000.0, 600.0, 3.0)
    assert fleet.allocate(4.0) == {("a", 1): -8000.0, ("b", 1): -4000.0}  # not a's 10 kW: no overshoot
    assert fleet.allocate(61.0) == {("a", 1): -6000.0, ("b", 1): -6000.0}  # REFUSAL_HOLD_S later: offered again
    fleet.refuse(62.0, ("b", 1))
    fleet.vehicles[("b", 1)].update_needs(needs())
    assert fleet.allocate(63.0) == {("a", 1): -6000.0, ("b", 1): -6000.0}


@pytest.mark.parametrize(
    ("request_w", "held", "a_share"),
    [
        (-12_000.0, -4000.0, -8000.0),  # a refused vehicle's old discharge: the other gives the rest
        (-3_000.0, -4000.0, 1000.0),  # it gives more than asked: the other charges the difference
        (5_000.0, -4000.0, 9000.0),  # a charge request while it still discharges
        (-12_000.0, 3000.0, -10_000.0),  # it still charges: the other gives all it can (a shortfall)
        (0.0, -4000.0, 4000.0),
    ],
)
def test_the_fleet_runs_at_the_request_with_a_refused_vehicle_counted_at_what_it_runs(
    request_w: float, held: float, a_share: float
) -> None:
    fleet = two_vehicles(held)
    fleet.refuse(0.0, ("b", 1))
    fleet.dispatch(request_w, 600.0, 1.0)
    allocation = fleet.allocate(2.0)
    assert allocation == {("a", 1): pytest.approx(a_share), ("b", 1): held}
    if abs(a_share) < 10_000.0:  # within a's capacity: met exactly, never overshot
        assert allocation[("a", 1)] + held == pytest.approx(request_w)


def test_a_refused_vehicle_counts_at_its_metered_power_once_a_reading_since_the_refusal_came() -> None:
    """After a profile that was never answered the station may run the new share, or anything:
    its meter says what it runs. A reading from before the refusal does not count."""
    fleet = two_vehicles(-4000.0)
    b = fleet.vehicles[("b", 1)]
    b.meter(Reading(at=0.5, imported_wh=None, exported_wh=None, power=-3000.0, soc=None))
    fleet.refuse(1.0, ("b", 1))
    fleet.dispatch(-12_000.0, 600.0, 1.0)
    assert fleet.allocate(2.0)[("a", 1)] == -8000.0
    b.meter(Reading(at=2.5, imported_wh=None, exported_wh=None, power=-6000.0, soc=None))
    assert fleet.allocate(3.0) == {("a", 1): -6000.0, ("b", 1): -6000.0}
