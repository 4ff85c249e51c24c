"""Shared helpers of the hardware tests: simulated stations built from scenario text."""

from __future__ import annotations

from collections.abc import Iterable

from v2gtool.hw.backends import SimSetup, sim_station
from v2gtool.hw.interlock import InterlockConfig
from v2gtool.hw.isolation import Edition, IsolationProfile
from v2gtool.hw.scenario import parse_scenario
from v2gtool.hw.station import StationConfig
from v2gtool.session.events import Event

RATED_V = 920.0


def make_station(
    scenario: str = '[[at]]\nt = 0\ncp = "C"\n',
    *,
    edition: Edition = Edition.IEC_61851_23_2023,
    interlock: InterlockConfig | None = None,
    **station: object,
) -> SimSetup:
    config = StationConfig(IsolationProfile(edition, RATED_V), **station)  # type: ignore[arg-type]
    return sim_station(config, parse_scenario(scenario, "<test>"), interlock=interlock)


def names(events: Iterable[Event]) -> list[str]:
    return [e.name for e in events]


def first(events: Iterable[Event], name: str) -> Event:
    return next(e for e in events if e.name == name)


def after(events: list[Event], t: float) -> list[Event]:
    return [e for e in events if e.t >= t]
