"""An EVCC and an SECC joined back to back, without sockets, on a toy plant with a virtual clock.

The plant is one battery (open-circuit voltage plus internal resistance) behind a charger whose
current flows at once; the vehicle reports the battery's open-circuit voltage, so the charger's
output voltage is above it by I x R while charging (as the drop from the battery to the inlet is).
A charging current falls back where the output would exceed the voltage limit it was given (CC/CV).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from v2gtool import v2gtp
from v2gtool.iso20 import messages
from v2gtool.iso20.evcc import Evcc
from v2gtool.iso20.events import PowerFlow
from v2gtool.iso20.ports import CableCheckStatus, PowerLimits
from v2gtool.iso20.secc import Secc
from v2gtool.session.events import Event


@dataclass
class Plant:
    """The charger's (:class:`ChargerPort`) side; :attr:`vehicle` is the :class:`VehiclePort`."""

    charger_limits: PowerLimits
    vehicle_limits: PowerLimits
    ocv: float = 375.0
    resistance: float = 0.05
    current: float = 0.0
    cable_check_voltages: list[float] = field(default_factory=list)
    voltage_limits: list[float] = field(default_factory=list)

    @property
    def vehicle(self) -> Vehicle:
        return Vehicle(self)

    def output_voltage(self) -> float:
        return self.ocv + self.current * self.resistance

    def limits(self) -> PowerLimits:
        return self.charger_limits

    def present_limits(self) -> PowerLimits:
        return self.charger_limits  # no derating on this plant

    def advance(self, now: float) -> None:
        pass

    def cable_check(self, ev_max_voltage: float) -> CableCheckStatus:
        self.cable_check_voltages.append(ev_max_voltage)
        return CableCheckStatus.PASSED

    def precharge(self, target_voltage: float) -> float:
        return target_voltage

    def start_energy_transfer(self, battery_voltage: float) -> str | None:
        return None

    def regulate(self, current: float, voltage_limit: float) -> tuple[float, float]:
        if current > 0 and self.ocv + current * self.resistance > voltage_limit:  # constant voltage
            current = max(0.0, (voltage_limit - self.ocv) / self.resistance)
        self.current = current
        self.voltage_limits.append(voltage_limit)
        return self.output_voltage(), current

    def stop(self) -> None:
        self.current = 0.0

    def present_voltage(self) -> float:
        return self.output_voltage()

    def fault(self) -> str | None:
        return None


@dataclass
class Vehicle:
    plant: Plant

    def limits(self) -> PowerLimits:
        return self.plant.vehicle_limits

    def soc_percent(self) -> float:
        return 50.0

    def battery_voltage(self) -> float:
        return self.plant.ocv

    def close_contactors(self) -> None:
        pass

    def open_contactors(self) -> None:
        pass


@dataclass
class Exchange:
    """What one session produced: the events, and every message (name, body) with its clock reading."""

    events: list[Event] = field(default_factory=list)
    messages: list[tuple[float, str, Any]] = field(default_factory=list)

    def flows(self, role: str) -> list[PowerFlow]:
        return [e for e in self.events if isinstance(e, PowerFlow) and e.role == role]


# A peer's deviation: takes a message's name and body as sent, returns the body the other side receives.
Rewrite = Callable[[str, Any], Any]


def run(evcc: Evcc, secc: Secc, limit: int = 2000, start: float = 0.0, rewrite: Rewrite | None = None) -> Exchange:
    """Drive the session from clock reading *start* until one side ends it or a side sends nothing
    more (at most *limit* requests). *rewrite* changes messages on the way (the messages recorded
    are those received)."""
    out = Exchange()
    t = start
    outputs = evcc.start(t)
    for _ in range(limit):
        request = _split(outputs, out, t, rewrite)
        if request is None:
            break
        t += evcc.pace
        evcc.sent(t)
        response = _split(secc.receive(request, t), out, t, rewrite)
        if response is None:
            break
        outputs = evcc.receive(response, t)
    return out


def _split(outputs: list[Any], out: Exchange, t: float, rewrite: Rewrite | None) -> v2gtp.V2GTPFrame | None:
    frame = None
    for o in outputs:
        if isinstance(o, bytes):
            frame = v2gtp.decode_frame(o)
            message = messages.decode(frame)
            body = message.body
            if rewrite is not None:
                body = rewrite(message.name, body)
                frame = v2gtp.decode_frame(messages.encode(message.name, body))
            out.messages.append((t, message.name, body))
        else:
            out.events.append(o)
    return frame
