"""Fault scenarios for the ``sim`` backend: a TOML file that scripts the plant in simulated time.

Every fault path can be replayed from a file::

    # the [plant] table overrides constants of the model (any SimParameters field)
    [plant]
    insulation_ohm = 2.0e6
    soc = 0.45

    # [[at]] steps apply, in time order, when simulated time reaches t (seconds)
    [[at]]
    t = 0.0
    cp = "C"                 # vehicle's CP state A..E, or "F" (EVSE not available)

    [[at]]
    t = 2.5
    fault = "weld"           # weld | stuck_open | feedback_mismatch | diode_missing | imd_self_test
    poles = ["K1"]           # for contactor faults; default both

    [[at]]
    t = 4.0
    insulation_ohm = 40e3    # any SimParameters field, e.g. ambient_c for a thermal step
    estop = true             # emergency stop pressed (false: released)
    clear = "weld"           # repair one fault, or "all"

Without a file the commands use :func:`default_scenario`: a vehicle plugged in and ready (CP C).
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from v2gtool.hw.cp import CpState
from v2gtool.hw.errors import ScenarioError
from v2gtool.hw.interfaces import Pole
from v2gtool.hw.sim import Fault, SimClock, SimParameters, SimPlant

_STEP_KEYS = frozenset({"t", "cp", "estop", "fault", "poles", "clear"})
#: Model constants that may be zero or negative; every other one must be positive.
_ANY_SIGN = frozenset({"ambient_c", "soc"})
_MAY_BE_ZERO = frozenset({"y_capacitance_f"})


@dataclass(frozen=True)
class ScenarioStep:
    """What changes at simulated time ``t``."""

    t: float
    cp: CpState | None = None
    estop: bool | None = None
    fault: Fault | None = None
    poles: frozenset[Pole] = frozenset(Pole)
    clear: Fault | str | None = None
    params: tuple[tuple[str, float], ...] = ()

    def apply(self, plant: SimPlant) -> None:
        if self.cp is CpState.F:
            plant.evse_state_f = True
        elif self.cp is not None:
            plant.evse_state_f = False
            plant.ev_state = self.cp
        if self.estop is not None:
            plant.estop = self.estop
        if self.clear is not None:
            plant.clear(self.clear if isinstance(self.clear, Fault) else None)
        if self.fault is not None:
            plant.inject(self.fault, set(self.poles))
        for name, value in self.params:
            setattr(plant.params, name, value)


@dataclass(frozen=True)
class Scenario:
    """Plant overrides and the time-ordered steps; :meth:`attach` plays it on a plant."""

    plant: tuple[tuple[str, float], ...] = ()
    steps: tuple[ScenarioStep, ...] = ()
    source: str = "<default>"

    @property
    def duration_s(self) -> float:
        return self.steps[-1].t if self.steps else 0.0

    def parameters(self) -> SimParameters:
        params = SimParameters()
        for name, value in self.plant:
            setattr(params, name, value)
        return params

    def attach(self, plant: SimPlant, clock: SimClock) -> Callable[[], float]:
        """Apply the steps due at the clock's start now, and each later one when its time comes (at
        the start of the clock's first step at or after it). Returns when the next step is due
        (``inf`` when none is left), so the plant at rest is never stepped across it.

        Attach before the plant, so a step takes effect in the same simulation step.
        """
        pending = list(self.steps)

        def play(_dt: float) -> None:
            while pending and pending[0].t <= clock.now() + 1e-9:
                pending.pop(0).apply(plant)

        play(0.0)
        clock.attach(play)
        return lambda: pending[0].t if pending else math.inf


@dataclass
class _Parser:
    source: str
    names: frozenset[str] = field(default_factory=SimParameters.field_names)

    def fail(self, where: str, message: str) -> ScenarioError:
        return ScenarioError(f"scenario {self.source}: {where}: {message}")

    def number(self, where: str, key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self.fail(where, f"{key} must be a finite number, got {value!r}")
        return float(value)

    def params(
        self, where: str, table: dict[str, Any], skip: frozenset[str]
    ) -> tuple[tuple[str, float], ...]:
        out = []
        for key, value in table.items():
            if key in skip:
                continue
            if key not in self.names:
                raise self.fail(where, f"unknown key {key!r}")
            number = self.number(where, key, value)
            if key == "soc" and not 0.0 <= number <= 1.0:
                raise self.fail(where, f"soc is a fraction 0..1, got {number}")
            if key in _MAY_BE_ZERO and number < 0:
                raise self.fail(where, f"{key} must not be negative, got {number}")
            if key not in _ANY_SIGN | _MAY_BE_ZERO and number <= 0:
                raise self.fail(where, f"{key} must be positive, got {number}")
            out.append((key, number))
        return tuple(out)

    def enum(self, where: str, key: str, value: Any, kind: type[Fault]) -> Fault:
        try:
            return kind(value)
        except (ValueError, TypeError):
            names = ", ".join(f.value for f in kind)
            raise self.fail(where, f"{key} must be one of {names}, got {value!r}") from None

    def step(self, index: int, raw: Any) -> ScenarioStep:
        where = f"[[at]] #{index + 1}"
        if not isinstance(raw, dict):
            raise self.fail(where, "must be a table")
        if "t" not in raw:
            raise self.fail(where, "needs t (seconds)")
        t = self.number(where, "t", raw["t"])
        if t < 0:
            raise self.fail(where, f"t must not be negative, got {t}")
        cp = None
        if "cp" in raw:
            if not isinstance(raw["cp"], str) or raw["cp"].upper() not in CpState.__members__:
                raise self.fail(where, f"cp must be one of A, B, C, D, E, F, got {raw['cp']!r}")
            cp = CpState[raw["cp"].upper()]
        estop = raw.get("estop")
        if estop is not None and not isinstance(estop, bool):
            raise self.fail(where, f"estop must be true or false, got {estop!r}")
        fault = self.enum(where, "fault", raw["fault"], Fault) if "fault" in raw else None
        poles = frozenset(Pole)
        if "poles" in raw:
            names = raw["poles"]
            if not isinstance(names, list) or not names or any(n not in Pole.__members__ for n in names):
                raise self.fail(where, f"poles must be a non-empty list of K1, K2, got {names!r}")
            poles = frozenset(Pole[n] for n in names)
        clear: Fault | str | None = None
        if "clear" in raw:
            clear = "all" if raw["clear"] == "all" else self.enum(where, "clear", raw["clear"], Fault)
        return ScenarioStep(t, cp, estop, fault, poles, clear, self.params(where, raw, _STEP_KEYS))


def parse_scenario(text: str, source: str) -> Scenario:
    """Parse a scenario; any problem is a one-line :class:`ScenarioError` naming *source*."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(f"scenario {source}: {exc}") from None
    return scenario_from_tables(raw, source)


def scenario_from_tables(raw: dict[str, Any], source: str) -> Scenario:
    """A scenario from its parsed TOML tables ``[plant]`` and ``[[at]]``."""
    parser = _Parser(source)
    unknown = set(raw) - {"plant", "at"}
    if unknown:
        raise parser.fail("top level", f"unknown key {sorted(unknown)[0]!r} (expected [plant] and [[at]])")
    plant_table = raw.get("plant", {})
    if not isinstance(plant_table, dict):
        raise parser.fail("[plant]", "must be a table")
    plant = parser.params("[plant]", plant_table, frozenset())
    steps_raw = raw.get("at", [])
    if not isinstance(steps_raw, list):
        raise parser.fail("at", "must be an array of tables [[at]]")
    steps = sorted((parser.step(i, s) for i, s in enumerate(steps_raw)), key=lambda s: s.t)
    return Scenario(plant, tuple(steps), source)


def load_scenario(path: Path) -> Scenario:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError(f"cannot read scenario {path}: {getattr(exc, 'strerror', None) or exc}") from None
    return parse_scenario(text, str(path))


def default_scenario() -> Scenario:
    """A vehicle plugged in and ready from the start (CP state C)."""
    return Scenario(steps=(ScenarioStep(0.0, cp=CpState.C),))


def plugged_in(scenario: Scenario) -> Scenario:
    """*scenario* with the vehicle plugged in and ready at the start (CP state C from t = 0, as in
    :func:`default_scenario`) unless it scripts the pilot at t = 0 itself (IEC 61851-1 Annex A
    states): a file that only unplugs at t = 30 has the vehicle there until then; one that starts
    without a vehicle says ``t = 0``, ``cp = "A"``."""
    if any(step.cp is not None and step.t == 0.0 for step in scenario.steps):
        return scenario
    return dataclasses.replace(scenario, steps=(ScenarioStep(0.0, cp=CpState.C), *scenario.steps))
