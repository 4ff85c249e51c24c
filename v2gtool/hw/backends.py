"""Building a station on a backend: ``sim`` (the default) here; ``gpiod`` and ``serial`` on demand."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from v2gtool.config import Config
from v2gtool.errors import ConfigError
from v2gtool.hw.gpiod import gpiod_hardware
from v2gtool.hw.interfaces import Hardware
from v2gtool.hw.interlock import Interlock, InterlockConfig
from v2gtool.hw.realtime import MonotonicClock
from v2gtool.hw.scenario import Scenario, default_scenario
from v2gtool.hw.serial import BoardLink, SerialControlPilot
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
    scenario: Scenario


def sim_station(
    config: StationConfig,
    scenario: Scenario | None = None,
    *,
    interlock: InterlockConfig | None = None,
    listener: Callable[[Event], None] | None = None,
    resolution_s: float = 0.001,
) -> SimSetup:
    """A station on the ``sim`` backend, integrated in steps of *resolution_s* simulated seconds."""
    scenario = scenario or default_scenario()
    params = scenario.parameters()
    plant = SimPlant(params)
    clock = SimClock(resolution=resolution_s)
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
    return SimSetup(station, plant, clock, vehicle, scenario)


#: The backends a command can select; ``sim`` is the default.
BACKENDS = ("sim", "serial", "gpiod")


def open_hardware(backend: str, config: Config) -> Hardware:
    """The :class:`Hardware` of a real backend, configured from the ``[hw]`` table."""
    if backend == "serial":
        port = config.get("hw", "serial_port")
        if not port:
            raise ConfigError("the serial backend needs [hw] serial_port (or V2GTOOL_HW__SERIAL_PORT)")
        try:
            baudrate = int(config.get("hw", "serial_baud", 115200))
        except (TypeError, ValueError):
            raise ConfigError(
                f"[hw] serial_baud must be an integer, got {config.get('hw', 'serial_baud')!r}"
            ) from None
        link = BoardLink(str(port), baudrate)
        return Hardware(backend="serial", clock=MonotonicClock(), control_pilot=SerialControlPilot(link))
    if backend == "gpiod":
        return gpiod_hardware(config, MonotonicClock())
    raise ConfigError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
