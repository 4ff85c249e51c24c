"""A station that accepts a share but caps it at its charger's maximum (SetChargingProfile Accepted,
statusInfo reasonCode LimitCapped, as the bridge answers) runs at that cap: the VPP counts it there,
bounds its capacity by it, and re-shares the rest among the others."""

from __future__ import annotations

import asyncio
import math
import time
from pathlib import Path

import pytest

from tests.ocpp.test_vpp_dispatch import needs, plant, until
from v2gtool.ocpp.fleet import Fleet, Vehicle
from v2gtool.ocpp.payloads import OCPP21, OCPP201, dispatch_profile, limit_capped
from v2gtool.ocpp.profile import ProfileSetpoint

CAPPED_INFO = {
    "reasonCode": "LimitCapped",
    "additionalInfo": "discharging limit 8000 W capped at this charger's 5000 W",
}


def test_a_capped_station_counts_at_its_cap_and_the_others_share_the_rest(tmp_path: Path) -> None:
    """24 kW over three 10 kW vehicles, one behind a 5 kW charger: it answers its 8 kW share capped, so
    the capacity is 25 kW, shared 10:10:5 (9.6 kW, 9.6 kW, 4.8 kW), and the meters meet the request."""

    async def scenario() -> None:
        async with plant(tmp_path, dict.fromkeys("abc", "Accepted")) as (vpp, stations):
            stations["c"].capped_info = (5000.0, CAPPED_INFO)
            vpp.dispatch(-24_000.0, 600.0)
            capped = vpp.fleet.vehicles[("c", 1)]
            await until(lambda: capped.charger_max_discharge == 5000.0, 10.0)
            for name, share in (("a", -9600), ("b", -9600), ("c", -4800)):
                await until(lambda s=stations[name], w=share: s.profiles[-1][1] == pytest.approx(w, abs=1), 10.0)
            await until(lambda: capped.accepted == pytest.approx(-4800, abs=1), 10.0)
            snapshot = vpp.snapshot()
            assert snapshot["discharge_capacity_w"] == pytest.approx(25_000, abs=1)
            assert snapshot["allocated_w"] == pytest.approx(-24_000, abs=1)
            assert next(v for v in snapshot["vehicles"] if v["station"] == "c")["capacity_w"] == 5000.0
            for name, power in (("a", -9600.0), ("b", -9600.0), ("c", -4800.0)):
                await stations[name].meter(1, power)
            assert vpp.fleet.met_at is not None

    asyncio.run(scenario())


def test_a_cap_that_does_not_say_at_what_counts_the_station_at_its_metered_power(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with plant(tmp_path, dict.fromkeys("abc", "Accepted")) as (vpp, stations):
            stations["c"].capped_info = (5000.0, {"reasonCode": "LimitCapped"})
            vpp.dispatch(-24_000.0, 600.0)
            capped = vpp.fleet.vehicles[("c", 1)]
            await until(lambda: capped.refused(time.time()), 10.0)  # counted at what it runs...
            await stations["c"].meter(1, -5000.0)  # ...which its meter says
            for name in "ab":
                await until(lambda s=stations[name]: s.profiles[-1][1] == pytest.approx(-9500, abs=1), 10.0)

    asyncio.run(scenario())


def three_vehicles() -> Fleet:
    fleet = Fleet()
    for station in "abc":
        vehicle = Vehicle(station, 1, f"tx-{station}")
        vehicle.update_needs(needs(11_000.0))
        fleet.arrive(vehicle)
    return fleet


def test_the_cap_bounds_the_vehicles_capacity_in_its_direction_and_redispatches() -> None:
    fleet = three_vehicles()
    fleet.dispatch(-30_000.0, 600.0, 0.0)
    assert fleet.allocate(1.0)[("c", 1)] == -10_000.0
    fleet.met_at = 1.5
    fleet.cap(2.0, ("c", 1), -10_000.0, 5000.0)
    assert fleet.dispatched_at == 2.0 and fleet.met_at is None and fleet.vehicles[("c", 1)].accepted == -5000.0
    assert fleet.capacity(3.0, 600.0) == pytest.approx(27_000.0)  # the other two's 1 kW of headroom each
    assert fleet.allocate(3.0) == {("a", 1): -11_000.0, ("b", 1): -11_000.0, ("c", 1): -5000.0}
    assert fleet.vehicles[("c", 1)].charge_capacity(3.0) == 10_000.0  # charging is not capped by it
    fleet.cap(4.0, ("c", 1), 8000.0, 7000.0)
    assert fleet.vehicles[("c", 1)].charge_capacity(4.0) == 7000.0


@pytest.mark.parametrize("subprotocol", [OCPP201, OCPP21])
@pytest.mark.parametrize(("watts", "cap"), [(-10_000.0, 5000.0), (22_000.0, 11_000.0), (-7_500.5, 3_333.3)])
def test_the_bridges_own_capped_answer_is_read_at_its_cap(subprotocol: str, watts: float, cap: float) -> None:
    """What :meth:`ProfileSetpoint.capped` writes is what :func:`limit_capped` reads (they cannot drift)."""
    station = ProfileSetpoint(max_charge=cap, max_discharge=cap, transaction_id="tx")
    profile = station.install(dispatch_profile(subprotocol, 1, "tx", watts, 1.9e9, 60.0))
    assert limit_capped({"reason_code": "LimitCapped", "additional_info": station.capped(profile)}) == cap


@pytest.mark.parametrize(
    ("status_info", "cap"),
    [
        (None, math.inf),
        ({"reason_code": "InvalidValue", "additional_info": "capped at 5 W"}, math.inf),
        ({"reason_code": "limitcapped", "additional_info": "Capped At 7.5 kW by the site"}, 7500.0),
        ({"reason_code": "LimitCapped", "additional_info": "capped at -5000W"}, 5000.0),
        ({"reason_code": "LimitCapped", "additional_info": "capped at 1.2e3 W"}, 1200.0),
        ({"reason_code": "LimitCapped"}, None),
        ({"reason_code": "LimitCapped", "additional_info": "capped at 16 A"}, None),
        ({"reason_code": "LimitCapped", "additional_info": "capped at 5000 Wh"}, None),
        ({"reason_code": "LimitCapped", "additional_info": "capped at 1e999 W"}, None),
        ("LimitCapped", math.inf),
    ],
)
def test_a_capped_answer_is_read_robustly(status_info: object, cap: float | None) -> None:
    assert limit_capped(status_info) == cap
