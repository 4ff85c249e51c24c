"""The ``gpiod`` backend: contactor coils, their auxiliary contacts and the emergency stop on the Linux
GPIO character device, through the ``gpiod`` package (libgpiod v2 API, ``gpiod.request_lines``).

Configuration, ``[hw]`` table (a line is a name from the device tree / gpio-line-names, or an offset)::

    gpio_chip   = "/dev/gpiochip0"
    k1_coil     = "K1_COIL"        # outputs, active = coil energised
    k2_coil     = "K2_COIL"
    k1_feedback = "K1_AUX"         # inputs, active = main contact closed
    k2_feedback = "K2_AUX"
    estop       = "ESTOP"          # optional input, active = pressed
    active_low  = ["ESTOP"]        # lines above whose electrical level is inverted
    debounce_ms = 10               # inputs must be stable this long before a change counts

A string of digits is an offset (``"17"`` and ``17`` are the same line), in ``active_low`` too; an
``active_low`` entry that is none of the lines above is a configuration error.

Inputs are debounced in software on the station's clock (:class:`Debouncer`), so the same code is
tested in simulated time; the debounce time adds to the time the interlock needs to see a contact
change, which its feedback margin covers.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from v2gtool.config import Config
from v2gtool.errors import ConfigError
from v2gtool.hw.errors import HardwareError
from v2gtool.hw.interfaces import Clock, Hardware, Pole

Line = int | str


class Lines(Protocol):
    """The requested lines as booleans (active / inactive)."""

    def read(self, line: Line) -> bool: ...

    def write(self, line: Line, active: bool) -> None: ...


class Debouncer:
    """A digital input that changes only after the raw level held for ``period_s``."""

    def __init__(self, period_s: float, initial: bool) -> None:
        self.period_s = period_s
        self.stable = initial
        self._candidate = initial
        self._since = 0.0

    def update(self, now: float, raw: bool) -> bool:
        if raw != self._candidate:
            self._candidate, self._since = raw, now
        if self._candidate != self.stable and now - self._since >= self.period_s:
            self.stable = self._candidate
        return self.stable


@dataclass(frozen=True)
class GpioLines:
    """Which line does what (names or offsets)."""

    chip: str
    coils: Mapping[Pole, Line]
    feedback: Mapping[Pole, Line]
    estop: Line | None
    active_low: frozenset[Line]
    debounce_s: float

    @classmethod
    def from_config(cls, config: Config) -> GpioLines:
        def line(key: str, required: bool = True) -> Line | None:
            value = config.get("hw", key)
            if value is None:
                if required:
                    raise ConfigError(f"the gpiod backend needs [hw] {key} (a line name or offset)")
                return None
            found = _line(value)
            if found is None:
                raise config.invalid("hw", key, f"must be a line name or offset, got {value!r}")
            return found

        def required(key: str) -> Line:
            found = line(key)
            assert found is not None
            return found

        coils = {Pole.K1: required("k1_coil"), Pole.K2: required("k2_coil")}
        feedback = {Pole.K1: required("k1_feedback"), Pole.K2: required("k2_feedback")}
        estop = line("estop", required=False)
        configured = [*coils.values(), *feedback.values(), *((estop,) if estop is not None else ())]
        try:
            debounce_s = float(config.get("hw", "debounce_ms", 10)) / 1000.0
        except (TypeError, ValueError):
            raise config.invalid("hw", "debounce_ms", "must be a number") from None
        if debounce_s < 0:
            raise config.invalid("hw", "debounce_ms", "must not be negative")
        return cls(
            chip=str(config.get("hw", "gpio_chip", "/dev/gpiochip0")),
            coils=coils,
            feedback=feedback,
            estop=estop,
            active_low=_active_low(config, configured),
            debounce_s=debounce_s,
        )

    @property
    def inputs(self) -> tuple[Line, ...]:
        return (*self.feedback.values(), *((self.estop,) if self.estop is not None else ()))


def _line(value: Any) -> Line | None:
    """*value* as a line: an offset (an integer, or a string of digits) or a name; ``None`` if it is neither."""
    if isinstance(value, bool) or not isinstance(value, int | str) or value in ("", -1):
        return None
    return int(value) if isinstance(value, str) and value.isdigit() else value


def _active_low(config: Config, configured: list[Line]) -> frozenset[Line]:
    """``[hw] active_low``, each entry one of the *configured* lines (read as :func:`_line` reads them).

    An entry that is none of them would leave the line it means active-high: on an inverted relay
    driver the coil "released" at the request (``INACTIVE``) would then be energised."""
    entries = config.get("hw", "active_low", [])
    if not isinstance(entries, list):
        raise config.invalid("hw", "active_low", f"must be a list of lines, got {entries!r}")
    named = [_line(entry) for entry in entries]
    unknown = [entry for entry, line in zip(entries, named, strict=True) if line not in configured]
    if unknown:
        raise config.invalid(
            "hw",
            "active_low",
            f"names {', '.join(map(repr, unknown))}, not a configured line "
            f"(coils, feedback, estop: {', '.join(map(repr, configured))})",
        )
    return frozenset(line for line in configured if line in named)


class GpiodLines:
    """:class:`Lines` over a ``gpiod.LineRequest``."""

    def __init__(self, lines: GpioLines) -> None:
        try:
            gpiod: Any = importlib.import_module("gpiod")
        except ImportError:
            raise ConfigError(
                "the gpiod backend needs the gpiod package: pip install 'v2gtool[gpio]'"
            ) from None
        line_mod: Any = importlib.import_module("gpiod.line")
        self._value = line_mod.Value
        config: dict[Any, Any] = {}
        for output in lines.coils.values():
            config[output] = gpiod.LineSettings(
                direction=line_mod.Direction.OUTPUT,
                output_value=line_mod.Value.INACTIVE,  # coils released from the first instant
                active_low=output in lines.active_low,
            )
        for input_line in lines.inputs:
            config[input_line] = gpiod.LineSettings(
                direction=line_mod.Direction.INPUT, active_low=input_line in lines.active_low
            )
        try:
            self._request = gpiod.request_lines(lines.chip, config=config, consumer="v2gtool")
        except (OSError, ValueError) as exc:
            raise HardwareError(f"cannot request GPIO lines on {lines.chip}: {exc}") from None

    def read(self, line: Line) -> bool:
        return bool(self._request.get_value(line) == self._value.ACTIVE)

    def write(self, line: Line, active: bool) -> None:
        self._request.set_value(line, self._value.ACTIVE if active else self._value.INACTIVE)

    def release(self) -> None:
        """Give the lines back to the kernel (``LineRequest.release`` may be called again)."""
        self._request.release()


class GpiodContactors:
    """:class:`~v2gtool.hw.interfaces.Contactors` on GPIO lines with debounced auxiliary contacts."""

    def __init__(self, lines: Lines, config: GpioLines, clock: Clock) -> None:
        self._lines, self._config, self._clock = lines, config, clock
        self._debounce = {
            pole: Debouncer(config.debounce_s, lines.read(line)) for pole, line in config.feedback.items()
        }

    def drive(self, closed: bool) -> None:
        for line in self._config.coils.values():
            self._lines.write(line, closed)

    def feedback(self) -> dict[Pole, bool]:
        now = self._clock.now()
        return {
            pole: self._debounce[pole].update(now, self._lines.read(line))
            for pole, line in self._config.feedback.items()
        }


class GpiodEmergencyStop:
    """The emergency-stop input, debounced."""

    def __init__(self, lines: Lines, line: Line, debounce_s: float, clock: Clock) -> None:
        self._lines, self._line, self._clock = lines, line, clock
        self._debounce = Debouncer(debounce_s, lines.read(line))

    def pressed(self) -> bool:
        return self._debounce.update(self._clock.now(), self._lines.read(self._line))


def gpiod_hardware(config: Config, clock: Clock, lines: Lines | None = None) -> Hardware:
    """The ``gpiod`` backend's parts: contactors and, when configured, the emergency stop."""
    layout = GpioLines.from_config(config)
    io = lines if lines is not None else GpiodLines(layout)
    estop = (
        GpiodEmergencyStop(io, layout.estop, layout.debounce_s, clock) if layout.estop is not None else None
    )
    parts = Hardware(
        backend="gpiod", clock=clock, contactors=GpiodContactors(io, layout, clock), emergency_stop=estop
    )
    # The line request is released with the hardware; *lines* given by the caller stay the caller's.
    return dataclasses.replace(parts, release=io.release) if isinstance(io, GpiodLines) else parts
