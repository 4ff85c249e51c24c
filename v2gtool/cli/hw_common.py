"""What the hardware commands (cp-duty, contactor, isolation-check) share: backend options,
building the station, rendering its events live (rich) or as JSON lines, and holding SIGINT /
SIGTERM off while the contactors may be closed."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TypeVar

import click

from v2gtool.cli.context import AppContext, app_context
from v2gtool.cli.output import emit_json, json_option, use_json
from v2gtool.cli.params import FiniteFloatRange
from v2gtool.errors import ConfigError
from v2gtool.hw.backends import BACKENDS, SimSetup, open_hardware, sim_station
from v2gtool.hw.control import SocFloor, ThermalDerating
from v2gtool.hw.errors import ContactorStuckError
from v2gtool.hw.isolation import Edition, IsolationProfile
from v2gtool.hw.scenario import load_scenario, plugged_in
from v2gtool.hw.station import Station, StationConfig
from v2gtool.session.events import Event, jsonable

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

SIM_TICK_S = 0.001
HW_TICK_S = 0.010
#: Rated output voltage of the EVSE when the config does not say ([hw] rated_voltage_v).
DEFAULT_RATED_V = 920.0
#: Longest time an option may ask a hardware command to run (--at, --hold, --session): one hour,
#: which the sim (1 ms steps) runs in well under a minute.
MAX_RUN_S = 3600.0


def run_seconds() -> FiniteFloatRange:
    """The option type of a time a hardware command runs for: 0 .. :data:`MAX_RUN_S` seconds."""
    return FiniteFloatRange(min=0.0, max=MAX_RUN_S)


def hw_options(func: F) -> F:
    """``--backend``, ``--scenario`` and ``--json`` for a hardware command."""
    func = json_option(func)
    func = click.option(
        "--scenario",
        type=click.Path(dir_okay=False, path_type=Path),
        help="sim: TOML fault scenario replayed in simulated time; without a CP step the vehicle is "
        "in CP state C from t=0 [default: vehicle in CP state C].",
    )(func)
    func = click.option(
        "--backend",
        type=click.Choice(BACKENDS),
        help="Hardware backend [default: [hw] backend from the config, else sim].",
    )(func)
    return func


def _number(app: AppContext, key: str, default: float) -> float:
    """``[hw] key``, a positive number; an error names where it was set (:meth:`Config.invalid`)."""
    value = app.config.get("hw", key, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise app.config.invalid("hw", key, f"must be a number, got {value!r}") from None
    if not number > 0:
        raise app.config.invalid("hw", key, f"must be positive, got {number}")
    return number


def rated_voltage(app: AppContext, fallback: float = DEFAULT_RATED_V) -> float:
    """``[hw] rated_voltage_v`` when it is set, else *fallback* (a session's charger maximum)."""
    return _number(app, "rated_voltage_v", fallback)


def configured_backend(app: AppContext, backend: str | None = None) -> str:
    """*backend* (``--backend``), else ``[hw] backend``, else ``sim``: one the hardware layer knows,
    or a config error naming where it was set (a typo is an error, not a setting ignored)."""
    chosen = backend or str(app.config.get("hw", "backend", "sim"))
    if chosen not in BACKENDS:
        raise app.config.invalid("hw", "backend", f"must be one of {', '.join(BACKENDS)}, got {chosen!r}")
    return chosen


class EventRenderer:
    """Prints each event as it happens: one JSON line, or a timestamped rich line.

    It is the station's listener, called from inside the control loop, so it never raises for its
    output: once the reader of stdout has gone (``| head``), stdout becomes /dev/null (as rich does)
    and the command goes on to its end, its contactors opened as they would be, with its own exit
    status; the safety path (:func:`v2gtool.hw.cablecheck.opened_on_error`) must not take the
    closed pipe for a hardware error."""

    def __init__(self, app: AppContext, json_out: bool) -> None:
        self.app, self.json = app, json_out

    def __call__(self, event: Event) -> None:
        if self.json:
            self._write(lambda: emit_json(event.to_json()))
            return
        fields = {k: v for k, v in jsonable(event).items() if k != "t"}
        details = "  ".join(f"{k}={_short(v)}" for k, v in fields.items())
        with self.app.console.capture() as line:  # written below, where a closed pipe is caught
            self.app.console.print(f"[dim]{event.t:10.3f} s[/]  [bold]{event.name}[/]  {details}", highlight=False)
        self._write(lambda: _write_out(line.get()))

    def record(self, kind: str, record: dict[str, Any]) -> None:
        """A command's own result: a JSON line ``{"result": kind, ...}`` or nothing (rich prints it)."""
        if self.json:
            self._write(lambda: emit_json({"result": kind, **jsonable(record)}))

    @staticmethod
    def _write(write: Callable[[], None]) -> None:
        try:
            write()
        except BrokenPipeError:  # the reader left: what is still written goes nowhere, without error
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)


def _write_out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


@dataclass
class HwSession:
    """One command's station, with the simulation when the backend is ``sim``."""

    app: AppContext
    json: bool
    station: Station
    sim: SimSetup | None
    render: EventRenderer

    @property
    def rated_voltage_v(self) -> float:
        return rated_voltage(self.app)


def station_config(
    app: AppContext,
    *,
    sim: bool = True,
    edition: Edition | None = None,
    on_fault_exec: str | None = None,
    rated_v: float | None = None,
) -> StationConfig:
    """The station's settings from ``[hw]``: the isolation profile (IEC 61851-23 edition, *edition*
    or ``isolation_edition``; at *rated_v* or ``rated_voltage_v``), the stop action, the discharge
    SoC floor (``soc_floor_percent``) and the inlet's thermal derating (``rated_current_a``,
    ``inlet_limit_c``). One place for every command that runs a station: the hardware commands and
    ``session run`` / ``serve``, whose *rated_v* (the charger's maximum) applies only where
    ``rated_voltage_v`` is not set. *sim*: the ``sim`` backend's control-loop period, else a polled
    device's."""
    config_edition = str(app.config.get("hw", "isolation_edition", Edition.IEC_61851_23_2023.value))
    try:
        profile_edition = edition or Edition(config_edition)
    except ValueError:
        raise app.config.invalid("hw", "isolation_edition", f"must be 2014 or 2023, got {config_edition!r}") from None
    floor_percent = _number(app, "soc_floor_percent", 20.0)
    rated_current_a = _number(app, "rated_current_a", 300.0)
    inlet_limit_c = _number(app, "inlet_limit_c", 90.0)
    return StationConfig(
        IsolationProfile(profile_edition, rated_voltage(app, rated_v or DEFAULT_RATED_V)),
        # Real devices are polled; 10 ms still leaves most of the 100 ms opening budget.
        tick_s=SIM_TICK_S if sim else HW_TICK_S,
        on_fault_exec=on_fault_exec or app.config.get("hw", "on_fault_exec"),
        soc_floor=_built(app, "soc_floor_percent", lambda: SocFloor(floor_percent)),
        # rated_current_a is positive (_number): only the limit can fail the derating's own checks.
        derating=_built(app, "inlet_limit_c", lambda: ThermalDerating(rated_current_a, limit_c=inlet_limit_c)),
    )


def _built(app: AppContext, key: str, build: Callable[[], T]) -> T:
    """*build* () from ``[hw] key``; a ConfigError of its own checks names the key and where it was set."""
    try:
        return build()
    except ConfigError as exc:
        raise app.config.invalid("hw", key, f"is not valid: {exc}") from None


def open_session(
    ctx: click.Context,
    backend: str | None,
    scenario: Path | None,
    json_flag: bool,
    *,
    edition: Edition | None = None,
    on_fault_exec: str | None = None,
    only: tuple[type[Event], ...] | None = None,
) -> HwSession:
    """Build the station on the chosen backend; its events (of the types in *only*, or all) are
    rendered as they happen. The station is closed (:meth:`Station.close`) when the command ends."""
    app = app_context(ctx)
    json_out = use_json(ctx, json_flag)
    render = EventRenderer(app, json_out)
    chosen = configured_backend(app, backend)
    config = station_config(app, sim=chosen == "sim", edition=edition, on_fault_exec=on_fault_exec)

    def listener(event: Event) -> None:
        if only is None or isinstance(event, only):
            render(event)

    if chosen == "sim":
        setup = sim_station(config, plugged_in(load_scenario(scenario)) if scenario else None, listener=listener)
        station, sim = setup.station, setup
    else:
        if scenario is not None:
            raise click.UsageError("--scenario only applies to the sim backend")
        hardware = open_hardware(chosen, app.config)
        if hardware.inlet_temperature is None:
            config.derating = None  # nothing to derate on
        station, sim = Station(hardware, config, listener=listener), None
    # However the command ends: its stop actions ([hw] on_fault_exec) waited for and reported, its
    # devices released.
    ctx.call_on_close(station.close)
    return HwSession(app, json_out, station, sim, render)


class Interrupts:
    """SIGINT and SIGTERM while the contactors may be closed: remembered, not raised.

    Python raises KeyboardInterrupt at any bytecode, e.g. between the interlock handing out its
    "open the coils" command and the station driving it, which would leave the coils energised
    (and SIGTERM's default action ends the process with no clean-up at all). The hold and the
    cable check poll this instead, so they end at a tick boundary and the contactors are opened
    through the interlock (standards.md 7.3: only at zero current; 7.1: a test voltage ramped
    below 60 V first) before the command exits 130 (4 if a contact stuck, :func:`check_not_stuck`).
    A command that runs until a signal (``cp-duty watch``) polls it too, so SIGTERM ends it with 130 as
    SIGINT does.
    """

    _SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.received = False
        self._previous: dict[int, Any] = {}

    def __call__(self) -> bool:
        return self.received

    def _handle(self, _signum: int, _frame: FrameType | None) -> None:
        self.received = True

    def __enter__(self) -> Interrupts:
        for signum in self._SIGNALS:
            self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def check_not_stuck(station: Station) -> None:
    """Exit 4 (:class:`ContactorStuckError`) when the interlock latched "Contactor Stuck" (rule 4)."""
    stuck = station.interlock.stuck
    if stuck is not None:
        raise ContactorStuckError(
            f"Contactor Stuck on {stuck.pole.name} ({stuck.pole.value}): commanded "
            f"{'closed' if stuck.commanded_closed else 'open'}, "
            f"feedback {'closed' if stuck.feedback_closed else 'open'}"
        )
