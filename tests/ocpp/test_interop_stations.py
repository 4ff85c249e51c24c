"""Our aggregator (``Vpp``) against stations written with the ``ocpp`` package alone.

Each station is the package's ChargePoint (schema validation on every message both ways) that
announces a DC_BPT vehicle the way OCPP 2.1 says it (NotifyEVChargingNeeds with
v2xChargingParameters), or a 2.0.1 station that only knows ``limit``. The aggregator must share a
grid request in proportion to what each vehicle can give, say it in each version's terms, notice
when the stations' meters show it met, count a repeated TransactionEvent once, and re-dispatch
when a station drops out (once the profile it runs has ended).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest
import websockets
from ocpp.routing import on
from ocpp.v21 import ChargePoint as Cp21
from ocpp.v21 import call as call21
from ocpp.v201 import ChargePoint as Cp201
from ocpp.v201 import call as call201
from websockets.asyncio.client import connect

from tests.ocpp.wire import until
from v2gtool.ocpp.csms import Vpp, VppConfig


def iso(epoch: float) -> str:
    return dt.datetime.fromtimestamp(epoch, dt.UTC).isoformat().replace("+00:00", "Z")


def station_class(base: type[Any]) -> type[Any]:
    class PackageStation(base):  # type: ignore[misc,valid-type]
        profiles: list[dict[str, Any]]

        @on("SetChargingProfile")
        def set_profile(self, evse_id: int, charging_profile: dict[str, Any], **_: Any) -> Any:
            self.profiles.append(charging_profile)
            return self._call_result.SetChargingProfile(status="Accepted")

    return PackageStation


class PackageStation:
    """A station process in miniature: the package's ChargePoint over a websocket client."""

    def __init__(self, name: str, version: str, max_discharge: float, dischargeable_wh: float) -> None:
        self.name, self.version = name, version
        self.max_discharge, self.dischargeable_wh = max_discharge, dischargeable_wh
        self.call = call21 if version == "ocpp2.1" else call201
        self.tx = f"tx-{name}"
        self.seq = 0
        self.exported = 0.0
        self.cp: Any = None
        self.task: asyncio.Task[Any] | None = None
        self.ws: Any = None

    async def start(self, port: int) -> None:
        self.ws = await connect(
            f"ws://127.0.0.1:{port}/ocpp/{self.name}", subprotocols=[websockets.Subprotocol(self.version)], proxy=None
        )
        self.cp = station_class(Cp21 if self.version == "ocpp2.1" else Cp201)(self.name, self.ws)
        self.cp.profiles = []
        self.task = asyncio.create_task(self.cp.start())
        boot = await self.cp.call(
            self.call.BootNotification(charging_station={"model": "pkg", "vendor_name": "pkg"}, reason="PowerUp")
        )
        assert boot.status == "Accepted"
        await self.transaction("Started", "CablePluggedIn", evse={"id": 1, "connector_id": 1})
        await self.cp.call(self.call.NotifyEVChargingNeeds(evse_id=1, charging_needs=self.needs()))
        await self.meter(0.0)

    def needs(self) -> dict[str, Any]:
        departure = iso(time.time() + 7200)
        if self.version == "ocpp2.1":
            return {
                "requested_energy_transfer": "DC_BPT",
                "control_mode": "DynamicControl",
                "departure_time": departure,
                "v2x_charging_parameters": {
                    "max_charge_power": 50000,
                    "max_discharge_power": self.max_discharge,
                    "ev_min_v2x_energy_request": -self.dischargeable_wh,
                    "ev_max_v2x_energy_request": 20000,
                },
            }
        return {  # a plain 2.0.1 vehicle: charge only, nothing to dispatch for discharge
            "requested_energy_transfer": "DC",
            "departure_time": departure,
            "dc_charging_parameters": {"ev_max_current": 125, "ev_max_voltage": 450, "ev_max_power": 50000},
        }

    async def transaction(self, event_type: str, trigger: str, **extra: Any) -> None:
        await self.cp.call(
            self.call.TransactionEvent(
                event_type=event_type,
                timestamp=iso(time.time()),
                trigger_reason=trigger,
                seq_no=self.seq,
                transaction_info={"transaction_id": self.tx},
                **extra,
            )
        )
        self.seq += 1

    async def meter(self, power: float, repeat_seq: bool = False) -> None:
        if repeat_seq:
            self.seq -= 1
        values = [
            {"measurand": "Power.Active.Import", "value": max(power, 0.0)},
            {"measurand": "Power.Active.Export", "value": max(-power, 0.0)},
            {"measurand": "Energy.Active.Export.Register", "value": self.exported},
        ]
        await self.transaction(
            "Updated", "MeterValuePeriodic", meter_value=[{"timestamp": iso(time.time()), "sampled_value": values}]
        )

    def last_setpoint(self) -> float:
        period = self.cp.profiles[-1]["charging_schedule"][0]["charging_schedule_period"][0]
        if self.version == "ocpp2.1":
            assert period["operation_mode"] in ("CentralSetpoint", "Idle")
            return float(period.get("setpoint", 0.0))
        return float(period["limit"])

    async def close(self) -> None:
        await self.ws.close()
        if self.task is not None:
            await asyncio.gather(self.task, return_exceptions=True)


@pytest.mark.interop
def test_vpp_dispatches_package_stations_in_their_own_terms(tmp_path: Path) -> None:
    async def scenario() -> None:
        vpp = Vpp(VppConfig(tmp_path / "state", period=0.2, response_timeout=1.0))  # profiles of 1.6 s
        server = await vpp.serve("127.0.0.1", 0)
        port = next(iter(server.sockets)).getsockname()[1]
        control = asyncio.create_task(vpp.control_loop())
        big = PackageStation("BIG", "ocpp2.1", max_discharge=10000, dischargeable_wh=40000)
        small = PackageStation("SMALL", "ocpp2.1", max_discharge=10000, dischargeable_wh=1000)
        plain = PackageStation("PLAIN", "ocpp2.0.1", max_discharge=0, dischargeable_wh=0)
        try:
            for station in (big, small, plain):
                await station.start(port)
            await asyncio.sleep(0.3)
            assert {v.station for v in vpp.fleet.vehicles.values()} == {"BIG", "SMALL", "PLAIN"}
            # 12 kW for one hour: SMALL can sustain 1 kWh / 1 h = 1 kW, BIG its 10 kW.
            vpp.dispatch(-12000.0, 3600.0)
            await asyncio.sleep(0.5)
            big_share, small_share = big.last_setpoint(), small.last_setpoint()
            assert big_share == pytest.approx(-10000, abs=50) and small_share == pytest.approx(-1000, abs=50)
            assert plain.cp.profiles == [] or plain.last_setpoint() == 0.0  # 2.0.1, charge only: nothing
            assert vpp.fleet.met_at is None  # short of 12 kW: never met
            vpp.dispatch(-5500.0, 3600.0)  # within capacity: shared 10:1
            await asyncio.sleep(0.5)
            big_share, small_share = big.last_setpoint(), small.last_setpoint()
            assert big_share + small_share == pytest.approx(-5500, abs=20)
            assert big_share / small_share == pytest.approx(10.0, rel=0.02)
            await big.meter(big_share)
            assert vpp.fleet.met_at is None  # SMALL has not reported since the dispatch
            await small.meter(small_share)
            assert vpp.fleet.met_at is not None
            before = len(vpp.log.seen)
            await small.meter(small_share, repeat_seq=True)  # a replay after a lost answer
            assert len(vpp.log.seen) == before and vpp.log.duplicates == 1
            dispatched = vpp.fleet.dispatched_at
            await small.close()  # drops out: it runs its profile until that ends, then BIG takes what it can
            await asyncio.sleep(0.3)
            assert vpp.fleet.vehicles[("SMALL", 1)].link_lost and vpp.fleet.dispatched_at == dispatched
            assert big.last_setpoint() == pytest.approx(big_share, abs=1)
            assert await until(lambda: ("SMALL", 1) not in vpp.fleet.vehicles, 5.0)
            await asyncio.sleep(0.5)
            assert vpp.fleet.dispatched_at is not None and dispatched is not None
            assert vpp.fleet.dispatched_at > dispatched and vpp.fleet.met_at is None
            assert big.last_setpoint() == pytest.approx(-5500, abs=20)
        finally:
            control.cancel()
            for station in (big, plain):
                await station.close()
            server.close()
            vpp.log.close()

    asyncio.run(scenario())


@pytest.mark.interop
def test_vpp_speaks_negative_limits_to_a_201_station_with_our_extension(tmp_path: Path) -> None:
    """A 2.0.1 station that announces discharge in our customData gets a negative ``limit``."""

    async def scenario() -> float:
        vpp = Vpp(VppConfig(tmp_path / "state", period=0.2))
        server = await vpp.serve("127.0.0.1", 0)
        port = next(iter(server.sockets)).getsockname()[1]
        station = PackageStation("EXT", "ocpp2.0.1", max_discharge=7000, dischargeable_wh=50000)
        station.needs = lambda: {  # type: ignore[method-assign]
            "requested_energy_transfer": "DC",
            "dc_charging_parameters": {"ev_max_current": 125, "ev_max_voltage": 450},
            "custom_data": {"vendor_id": "org.v2gtool", "bpt": True, "max_discharge_power": 7000,
                            "ev_min_v2x_energy_request": -50000, "min_soc": 30},
        }
        try:
            await station.start(port)
            vpp.dispatch(-3000.0, 600.0)
            await vpp.redispatch()
            return station.last_setpoint()
        finally:
            await station.close()
            server.close()
            vpp.log.close()

    assert asyncio.run(scenario()) == pytest.approx(-3000)
