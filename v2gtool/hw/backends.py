"""Building a station on a backend: ``sim`` (the default) here; ``gpiod`` and ``serial`` on demand."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from v2gtool.hw.interlock import Interlock, InterlockConfig
from v2gtool.hw.scenario import Scenario, default_scenario
from v2gtool.hw.sim import SimClock, SimPlant, SimVehicle, sim_hardware
from v2gtool.hw.station import Station, StationConfig
from v2gtool.session.events import Event


@dataclass(frozen=True)
class SimSetup:
    """A simulated station with its plant, clock and vehicle, playing a scenario."""

    station: Station
    plant: SimPlant
    clock: SimClock
    vehicle: SimVehicle


def sim_station(
    config: StationConfig,
    scenario: Scenario | None = None,
    *,
    interlock: InterlockConfig | None = None,
    listener: Callable[[Event], None] | None = None,
) -> SimSetup:
    """A station on the ``sim`` backend; the interlock's contactor times match the plant's relays."""
    scenario = scenario or default_scenario()
    params = scenario.parameters()
    plant = SimPlant(params)
    clock = SimClock()
    scenario.attach(plant, clock)
    hw, plant, clock = sim_hardware(plant, clock)
    vehicle = SimVehicle(plant)
    station = Station(
        hw,
        config,
        Interlock(interlock or InterlockConfig()),
        listener=listener,
        soc_percent=vehicle.soc_percent,
    )
    return SimSetup(station, plant, clock, vehicle)
