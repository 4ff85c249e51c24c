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
from v2gtool.hw.station import Station, StationConfig, Wait
from v2gtool.session.events import Event


@dataclass(frozen=True)
class SimSetup:
    """A simulated station with its plant, clock and vehicle, playing a scenario."""

    station: Station
    plant: SimPlant
    clock: SimClock
    vehicle: SimVehicle
    scenario: Scenario
    #: When the scenario's next step is due (``inf``: none is left).
    next_step_at: Callable[[], float]

    def fast_forward(self, seconds: float) -> None:
        """:meth:`Station.run` for *seconds*, except that while the station is idle and the plant at
        rest (:attr:`Station.idle`, :attr:`SimPlant.at_rest`) a tick leaps up to
        :attr:`SimPlant.rest_step_s` at once, never across a scenario step: then only something from
        outside (a request, a scripted step) changes anything, so a charger waiting minutes for its
        next session catches up in a few hundred ticks instead of one per millisecond."""
        station, clock = self.station, self.clock
        wait = Wait(station, lambda: False, seconds)
        while wait.poll() is None:
            leap = self._rest_leap(wait.deadline)
            if leap > station.config.tick_s:
                clock.leap(leap)
            else:
                wait.sleep()

    def _rest_leap(self, deadline: float) -> float:
        """How far the next tick may leap (0: nothing at rest)."""
        if not (self.station.idle and self.plant.at_rest):
            return 0.0
        now = self.clock.now()
        return min(self.plant.rest_step_s, deadline - now, self.next_step_at() - now)


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
    next_step_at = scenario.attach(plant, clock)
    hw, plant, clock = sim_hardware(plant, clock)
    vehicle = SimVehicle(plant)
    station = Station(
        hw,
        config,
        Interlock(interlock or InterlockConfig()),
        listener=listener,
        soc_percent=vehicle.soc_percent,
    )
    return SimSetup(station, plant, clock, vehicle, scenario, next_step_at)


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
        return Hardware(
            backend="serial", clock=MonotonicClock(), control_pilot=SerialControlPilot(link), release=link.close
        )
    if backend == "gpiod":
        return gpiod_hardware(config, MonotonicClock())
    raise ConfigError(f"backend {backend!r} is not one of {', '.join(BACKENDS)}")
