"""The VPP's control loop against stations that do not take their share: a silent station delays
neither the control period nor the other stations (one profile in flight per vehicle), and a share
that is rejected or never answered goes to the other vehicles, so the request is still met."""

from __future__ import annotations

import asyncio
import datetime as dt
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
from v2gtool.ocpp.payloads import VehicleNeeds


def iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat().replace("+00:00", "Z")


@dataclass
class RawStation:
    """A station on a raw websocket, one vehicle of 10 kW / 30 kWh discharge: it answers every
    SetChargingProfile with *status* (None: never) and keeps (arrival time, limit) of each."""

    ws: ClientConnection
    status: str | None
    profiles: list[tuple[float, float]] = field(default_factory=list)
    _answers: dict[str, asyncio.Future[Any]] = field(default_factory=dict)

    async def read(self) -> None:
        async for raw in self.ws:
            frame = json.loads(raw)
            if frame[0] != 2:
                self._answers.pop(frame[1]).set_result(frame)
                continue
            period = frame[3]["chargingProfile"]["chargingSchedule"][0]["chargingSchedulePeriod"][0]
            self.profiles.append((time.monotonic(), period["limit"]))
            if self.status is not None:
                await self.ws.send(json.dumps([3, frame[1], {"status": self.status}]))

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


@asynccontextmanager
async def plant(tmp_path: Path, statuses: dict[str, str | None]) -> AsyncIterator[tuple[Vpp, dict[str, RawStation]]]:
    """A running Vpp (0.1 s period, 3 s response timeout, its control loop on) with one plugged-in
    OCPP 2.0.1 station per entry of *statuses*."""
    vpp = Vpp(VppConfig(tmp_path / "state", period=0.1, response_timeout=3.0))
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
    async def scenario() -> None:
        async with plant(tmp_path, {"ok": "Accepted", "silent": None}) as (vpp, stations):
            ok, silent = stations["ok"], stations["silent"]
            vpp.dispatch(-10_000.0, 600.0)
            await until(lambda: ok.profiles and silent.profiles, 1.0)
            assert ok.profiles[-1][1] == pytest.approx(-5000, abs=1)
            await asyncio.sleep(0.3)
            vpp.cancel()  # the silent station's profile is still unanswered (3 s)
            took = await until(lambda: ok.profiles[-1][1] == 0, 2.0)
            assert took < 0.5
            assert len(silent.profiles) == 1  # no second profile piled on the unanswered one

    asyncio.run(scenario())


@pytest.mark.parametrize("status", ["Rejected", None])
def test_a_share_rejected_or_never_answered_goes_to_the_other_vehicles(tmp_path: Path, status: str | None) -> None:
    async def scenario() -> None:
        async with plant(tmp_path, {"ok": "Accepted", "refuses": status}) as (vpp, stations):
            ok = stations["ok"]
            vpp.dispatch(-8_000.0, 600.0)
            await until(lambda: ok.profiles, 1.0)
            assert ok.profiles[0][1] == pytest.approx(-4000, abs=1)
            await until(lambda: ok.profiles[-1][1] == pytest.approx(-8000, abs=1), 5.0)
            assert vpp.fleet.vehicles[("refuses", 1)].allocation == 0.0

    asyncio.run(scenario())


def needs(max_discharge: float = 10_000.0) -> VehicleNeeds:
    return VehicleNeeds(bpt=True, max_charge_power=10_000.0, max_discharge_power=max_discharge, departure=None,
                        target_soc=None, min_soc=None, dischargeable_wh=30_000.0)  # fmt: skip


def test_a_refused_vehicle_gets_no_share_until_new_needs_or_the_hold_ends() -> None:
    fleet = Fleet()
    for station in ("a", "b"):
        vehicle = Vehicle(station, 1, f"tx-{station}")
        vehicle.update_needs(needs())
        fleet.arrive(vehicle)
    fleet.dispatch(-8_000.0, 600.0, 0.0)
    assert fleet.allocate(0.0) == {("a", 1): -4000.0, ("b", 1): -4000.0}
    fleet.refuse(1.0, ("b", 1))
    assert fleet.dispatched_at == 1.0  # a re-dispatch: what was met is met no longer
    assert fleet.allocate(2.0) == {("a", 1): -8000.0, ("b", 1): 0.0}
    assert fleet.allocate(61.0) == {("a", 1): -4000.0, ("b", 1): -4000.0}  # REFUSAL_HOLD_S later: offered again
    fleet.refuse(62.0, ("b", 1))
    fleet.vehicles[("b", 1)].update_needs(needs())
    assert fleet.allocate(63.0) == {("a", 1): -4000.0, ("b", 1): -4000.0}
    fleet.refuse(64.0, ("b", 1))
    fleet.dispatch(5_000.0, 600.0, 64.0)  # a charge request is not shared with it either
    assert fleet.allocate(65.0) == {("a", 1): 5000.0, ("b", 1): 0.0}
