"""Session scenarios: a TOML file with the vehicle, the charger, the grid request and injected faults.

::

    [session]
    service = "DC_BPT"          # DC, DC_BPT (alias DC_V2G)
    control_mode = "scheduled"  # scheduled | dynamic
    direction = "discharge"     # charge | discharge
    duration = 600              # seconds of energy transfer (default: until the SoC target/floor)
    power = 11000               # W the EV asks for (Scheduled); the grid request in Dynamic mode
    target_soc = 80
    min_soc = 20                # the EV's own discharge floor (the station's is 20 %)
    sign_convention = "signed"  # signed: - is discharge on the wire; channel: magnitudes + BPT_ChannelSelection
    standby_at = 30             # the EV sends PowerDelivery Standby 30 s into the loop ...
    standby_for = 10            # ... and Start again 10 s later
    metering_confirmation_interval = 60  # the SECC asks the EV to confirm its meter reading every 60 s

    [vehicle]                   # BMS limits, W / A / V
    max_charge_power = 50000
    max_discharge_power = 11000
    ...

    [charger]
    bpt = true
    bpt_allowed_from = 40       # the operator allows DC_BPT from 40 s of simulated time on (DC only
                                # before): a session on DC is asked to renegotiate its service
    max_charge_power = 50000
    ...

    [plant]                     # the sim model (see v2gtool.hw.scenario): soc, insulation_ohm, ...
    soc = 0.6
    [[at]]                      # scripted events in simulated time: cp, fault, estop, any model constant
    t = 30.0
    cp = "A"
    [[at]]                      # ... and what the SECC asks of the EV from then on, at its next
    t = 45.0                    # DC_ChargeLoopRes: Pause, Terminate or (Scheduled mode)
    evse_notification = "Pause" # ScheduleRenegotiation

Every key is optional; errors name the file and key in one line.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from v2gtool.errors import ConfigError
from v2gtool.hw.scenario import Scenario, default_scenario, plugged_in, scenario_from_tables
from v2gtool.hw.sim import SimPlant
from v2gtool.iso20.evcc import Direction
from v2gtool.iso20.ports import ConstantGridRequest, GridRequest, PowerLimits
from v2gtool.iso20.timeouts import Timeouts
from v2gtool.iso20.values import DC_SERVICES, ControlMode, ServiceID, SignConvention, service_from_name

VEHICLE_LIMITS = PowerLimits(
    max_charge_power=50_000,
    min_charge_power=0,
    max_charge_current=125,
    min_charge_current=0,
    max_voltage=450,
    min_voltage=250,
    max_discharge_power=11_000,
    min_discharge_power=0,
    max_discharge_current=32,
    min_discharge_current=0,
)
CHARGER_LIMITS = PowerLimits(
    max_charge_power=60_000,
    min_charge_power=0,
    max_charge_current=150,
    min_charge_current=0,
    max_voltage=920,
    min_voltage=150,
    max_discharge_power=22_000,
    min_discharge_power=0,
    max_discharge_current=50,
    min_discharge_current=0,
)


@dataclass(frozen=True)
class SessionScenario:
    """Everything one simulated session needs."""

    service: ServiceID = ServiceID.DC_BPT
    control_mode: ControlMode = ControlMode.SCHEDULED
    direction: Direction = Direction.CHARGE
    duration: float | None = 60.0
    power: float | None = None
    target_soc: float = 80.0
    min_soc: float = 20.0
    standby_at: float | None = None
    standby_for: float = 5.0
    metering_confirmation_interval: float | None = None
    sign_convention: SignConvention = SignConvention.SIGNED
    bpt: bool = True
    bpt_allowed_from: float | None = None
    vehicle: PowerLimits = VEHICLE_LIMITS
    charger: PowerLimits = CHARGER_LIMITS
    plant: Scenario = field(default_factory=default_scenario)
    # [[at]] evse_notification: (simulated seconds, EVSENotification), in time order
    evse_notifications: tuple[tuple[float, str], ...] = ()
    source: str = "built-in"

    def grid_request(self) -> float | None:
        """The Dynamic mode's grid request, signed W (negative discharges); None in Scheduled mode."""
        if self.control_mode is not ControlMode.DYNAMIC:
            return None
        watts = self.power if self.power is not None else self.vehicle.max_charge_power
        return -watts if self.direction is Direction.DISCHARGE else watts

    def grid(self, clock: Callable[[], float]) -> GridRequest | None:
        """The SECC's grid request: the Dynamic mode's (:meth:`grid_request`), its schedule renewed
        at each ``[[at]]`` ``evse_notification = "ScheduleRenegotiation"`` on *clock* (simulated
        seconds), where the SECC asks a Scheduled session to renegotiate (EVSENotification
        ScheduleRenegotiation, the port an OCPP charging profile uses); None when there is neither."""
        renewed = tuple(t for t, name in self.evse_notifications if name == SCHEDULE_RENEGOTIATION)
        watts = self.grid_request()
        if watts is None and not renewed:
            return None
        return ConstantGridRequest(watts, renewed, clock)

    def stop_request(
        self, clock: Callable[[], float], station: Callable[[], str | None] | None = None
    ) -> Callable[[], str | None] | None:
        """The SECC's ``stop_request``: the station's own wish (*station*, e.g. an OCPP remote stop)
        first, else the last ``[[at]]`` ``evse_notification`` "Pause" or "Terminate" due on *clock*
        (simulated seconds), which the SECC sends the EV at its next DC_ChargeLoopRes; None when
        neither can ask anything."""
        stops = [(t, name) for t, name in self.evse_notifications if name != SCHEDULE_RENEGOTIATION]
        if not stops:
            return station

        def wanted() -> str | None:
            own = station() if station is not None else None
            if own is not None:
                return own
            now = clock()
            due = [name for t, name in stops if t <= now]
            return due[-1] if due else None

        return wanted

    @property
    def services(self) -> frozenset[ServiceID]:
        """The energy transfer services the charger has: DC, and DC_BPT unless ``bpt = false``."""
        return DC_SERVICES if self.bpt else frozenset({ServiceID.DC})

    def allowed_services(self, clock: Callable[[], float]) -> Callable[[], frozenset[ServiceID]] | None:
        """The SECC's ``allowed_services``: DC alone until ``bpt_allowed_from`` on *clock* (simulated
        seconds), DC and DC_BPT from then on; None when the scenario allows every service throughout."""
        start = self.bpt_allowed_from
        if start is None:
            return None
        return lambda: DC_SERVICES if clock() >= start else frozenset({ServiceID.DC})


def load(path: Path | None, **overrides: Any) -> SessionScenario:
    """Read a scenario file (or the built-in defaults) and apply command-line *overrides* (not None)."""
    scenario = SessionScenario()
    if path is not None:
        try:
            raw = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"cannot read scenario {path}: {getattr(exc, 'strerror', None) or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"scenario {path}: {exc}") from None
        scenario = _from_tables(raw, str(path))
    changes = {k: v for k, v in overrides.items() if v is not None}
    for key in changes.keys() & _NUMBERS.keys():  # the command line's options (--power, --duration)
        _number(changes[key], key, f"--{key.replace('_', '-')}")
    scenario = dataclasses.replace(scenario, **changes)
    where = f"scenario {path}: " if path is not None else ""
    if scenario.direction is Direction.DISCHARGE and scenario.service is not ServiceID.DC_BPT:
        raise ConfigError(f"{where}a discharge needs the DC_BPT service, not {scenario.service.name}")
    renegotiations = [t for t, name in scenario.evse_notifications if name == SCHEDULE_RENEGOTIATION]
    if renegotiations and scenario.control_mode is not ControlMode.SCHEDULED:
        # The Dynamic mode has no schedule: the SECC sets the targets at every loop (standards digest 4.2 item 7).
        raise ConfigError(f"{where}[[at]] t = {renegotiations[0]:g} evse_notification {SCHEDULE_RENEGOTIATION!r} "
                          f"needs the Scheduled control mode, not {scenario.control_mode.name}")
    return scenario


# What a scenario's [[at]] evse_notification may ask of the EV (EVSEStatus.EVSENotification, standards
# digest section 4.2): end the session with SessionStop Pause or Terminate, or fetch a new schedule.
SCHEDULE_RENEGOTIATION = "ScheduleRenegotiation"
EVSE_NOTIFICATIONS = ("Pause", SCHEDULE_RENEGOTIATION, "Terminate")

# Plausibility ceilings of the [vehicle] and [charger] limits and of [session] power, by unit (the key's
# suffix): W, A, V. They are no limit of ISO 15118-20 but lie far above any DC charging system (the
# Megawatt Charging System goes to 1250 V and 3000 A), so a value beyond one is a typo; and far inside
# what the RationalNumber that carries a limit on the wire can hold (Value an xs:short, Exponent an
# xs:byte: up to 32767 x 10^127, V2G_CI_CommonTypes.xsd RationalNumberType), so a value such as 1e308
# is refused here instead of failing the session when DC_ChargeParameterDiscovery is encoded.
CEILINGS: dict[str, tuple[float, str]] = {
    "power": (10e6, "W"),
    "current": (10e3, "A"),
    "voltage": (2000.0, "V"),
}

# [session] keys that are numbers: (lowest, highest, what the range comes from). The wire bounds are
# ISO 15118-20's: Duration is an xs:unsignedInt (V2G_CI_CommonMessages.xsd PowerScheduleEntryType),
# TargetSOC and MinimumSOC a percentValueType 0..100 (V2G_CI_CommonTypes.xsd).
_NUMBERS: dict[str, tuple[float, float, str]] = {
    "duration": (0.0, 2.0**32 - 1, "seconds, an xs:unsignedInt on the wire"),
    "power": (0.0, CEILINGS["power"][0], "W, the direction gives the sign; at most 10 MW"),
    "target_soc": (0.0, 100.0, "%"),
    "min_soc": (0.0, 100.0, "%"),
    "standby_at": (0.0, math.inf, "seconds into the loop"),
    "standby_for": (0.0, math.inf, "seconds"),  # and below V2G_SECC_Sequence_Timeout (_session)
    "metering_confirmation_interval": (1e-3, math.inf, "seconds"),
}
# [session] keys that name something: how a name becomes the value.
_NAMES: dict[str, Callable[[str], Any]] = {
    "service": service_from_name,
    "control_mode": lambda name: ControlMode[name.upper()],
    "direction": lambda name: Direction(name.lower()),
    "sign_convention": lambda name: SignConvention(name.lower()),
}


def _number(value: Any, key: str, where: str) -> float:
    """*value* of the [session] number *key*: a TOML integer or float within its range."""
    low, high, unit = _NUMBERS[key]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{where}: expected a number, got {value!r}")
    if not low <= value <= high:
        bounds = f">= {low:.15g}" if high == math.inf else f"within {low:.15g} .. {high:.15g}"
        raise ConfigError(f"{where}: {value!r} is not {bounds} ({unit})")
    return float(value)


def _session(session: dict[str, Any], source: str) -> dict[str, Any]:
    changes: dict[str, Any] = {}
    for key, value in session.items():
        where = f"scenario {source}: [session] {key}"
        if key in _NUMBERS:
            changes[key] = _number(value, key, where)
        elif key in _NAMES:
            try:
                if not isinstance(value, str):
                    raise TypeError(value)
                changes[key] = _NAMES[key](value)
            except (KeyError, ValueError, TypeError):
                raise ConfigError(f"{where}: invalid value {value!r}") from None
        else:
            raise ConfigError(f"{where}: unknown key")
    if changes.get("service", ServiceID.DC) not in DC_SERVICES:
        raise ConfigError(f"scenario {source}: [session] service: {session['service']!r} is not DC or DC_BPT")
    # Against the effective values: a key left out keeps its default (target 80 %, floor 20 %).
    soc = {key: f"{changes[key]:g}" if key in changes else f"{getattr(SessionScenario, key):g} (the default)"
           for key in ("min_soc", "target_soc")}
    if changes.get("min_soc", SessionScenario.min_soc) > changes.get("target_soc", SessionScenario.target_soc):
        raise ConfigError(f"scenario {source}: [session] min_soc {soc['min_soc']} is above target_soc "
                          f"{soc['target_soc']}")
    # The EV is silent while in standby; the SECC ends a session whose next request comes later than
    # V2G_SECC_Sequence_Timeout after its last response (ISO 15118-20 Table 215).
    if changes.get("standby_for", 0.0) >= Timeouts.sequence:
        raise ConfigError(f"scenario {source}: [session] standby_for {changes['standby_for']:g} s is not below the "
                          f"SECC's V2G_SECC_Sequence_Timeout ({Timeouts.sequence:g} s): the SECC would end the session")
    return changes


def _from_tables(raw: dict[str, Any], source: str) -> SessionScenario:
    unknown = set(raw) - {"session", "vehicle", "charger", "plant", "at"}
    if unknown:
        raise ConfigError(f"scenario {source}: unknown table [{sorted(unknown)[0]}]")
    changes = _session(_table(raw, "session", source), source)
    charger = dict(_table(raw, "charger", source))
    if "bpt" in charger:
        bpt = charger.pop("bpt")
        if not isinstance(bpt, bool):
            raise ConfigError(f"scenario {source}: [charger] bpt: expected true or false, got {bpt!r}")
        changes["bpt"] = bpt
    if "bpt_allowed_from" in charger:
        start = charger.pop("bpt_allowed_from")
        if isinstance(start, bool) or not isinstance(start, int | float) or not 0 <= start < math.inf:
            raise ConfigError(f"scenario {source}: [charger] bpt_allowed_from: expected seconds >= 0, got {start!r}")
        changes["bpt_allowed_from"] = float(start)
    changes["vehicle"] = _limits(VEHICLE_LIMITS, _table(raw, "vehicle", source), f"scenario {source}: [vehicle]")
    changes["charger"] = _limits(CHARGER_LIMITS, charger, f"scenario {source}: [charger]")
    plant_tables: dict[str, Any] = {k: raw[k] for k in ("plant", "at") if k in raw}
    plant_tables["at"], notifications = _split_notifications(raw.get("at", []), source)
    changes["plant"] = plugged_in(scenario_from_tables(plant_tables, source))
    # after the plant's parser checked each step's t
    changes["evse_notifications"] = tuple(sorted((float(t), name) for t, name in notifications))
    params = changes["plant"].parameters()
    if params.ocv_full_v <= params.ocv_empty_v:  # the battery's voltage rises with its charge
        raise ConfigError(f"scenario {source}: [plant] ocv_full_v {params.ocv_full_v:g} is not above ocv_empty_v "
                          f"{params.ocv_empty_v:g}")
    _check_battery_in_range(changes["vehicle"], SimPlant(params=params), source)
    return dataclasses.replace(SessionScenario(source=source), **changes)


def _split_notifications(steps: Any, source: str) -> tuple[Any, list[tuple[Any, str]]]:
    """The ``[[at]]`` steps without their ``evse_notification`` (the plant's parser checks the rest, t
    included; a step left with only its t does nothing there), and the notifications (t, name)."""
    if not isinstance(steps, list):
        return steps, []  # the plant's parser says what is wrong
    plant_steps: list[Any] = []
    notifications: list[tuple[Any, str]] = []
    for index, step in enumerate(steps):
        if isinstance(step, dict) and "evse_notification" in step:
            step = dict(step)
            name = step.pop("evse_notification")
            if name not in EVSE_NOTIFICATIONS:
                raise ConfigError(f"scenario {source}: [[at]] #{index + 1}: evse_notification must be one of "
                                  f"{', '.join(EVSE_NOTIFICATIONS)}, got {name!r}")
            notifications.append((step.get("t"), name))
        plant_steps.append(step)
    return plant_steps, notifications


def _check_battery_in_range(vehicle: PowerLimits, plant: SimPlant, source: str) -> None:
    """The vehicle's battery starts within the voltage range the vehicle declares (EVMinimumVoltage ..
    EVMaximumVoltage of DC_ChargeParameterDiscoveryReq): the EV asks to precharge to its battery's
    voltage (standards digest section 4.2 item 9), which must not lie outside its own range."""
    battery, p = plant.ocv_v, plant.params
    start = (f"the battery's {battery:g} V at the start ([plant] soc {p.soc:g} between ocv_empty_v {p.ocv_empty_v:g} "
             f"and ocv_full_v {p.ocv_full_v:g})")
    if battery > vehicle.max_voltage:
        raise ConfigError(f"scenario {source}: [vehicle] max_voltage {vehicle.max_voltage:g} is below {start}: the EV "
                          "would precharge above its own maximum")
    if battery < vehicle.min_voltage:
        raise ConfigError(f"scenario {source}: [vehicle] min_voltage {vehicle.min_voltage:g} is above {start}: the EV "
                          "would precharge below its own minimum")


def _table(raw: dict[str, Any], name: str, source: str) -> dict[str, Any]:
    value = raw.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"scenario {source}: [{name}] must be a table")
    return value


def _limits(base: PowerLimits, table: dict[str, Any], where: str) -> PowerLimits:
    """*base* with the limits *table* sets; each minimum must not exceed its maximum."""
    names = {f.name for f in dataclasses.fields(PowerLimits)}
    changes: dict[str, float] = {}
    for key, value in table.items():
        if key not in names:
            raise ConfigError(f"{where}: unknown key {key!r} (one of {', '.join(sorted(names))})")
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < math.inf:
            raise ConfigError(f"{where} {key}: expected a non-negative number, got {value!r}")
        if key.startswith("max_") and value == 0:  # 0 would read as "no limit" downstream
            raise ConfigError(f"{where} {key}: a maximum must be positive, got {value!r}")
        ceiling, unit = CEILINGS[key.rpartition("_")[2]]
        if value > ceiling:
            raise ConfigError(f"{where} {key}: {value:g} {unit} is above {ceiling:.15g} {unit}, more than any DC "
                              "charging system")
        changes[key] = float(value)
    limits = dataclasses.replace(base, **changes)
    for name in sorted(names):
        if name.startswith("min_"):
            low, high = getattr(limits, name), getattr(limits, "max_" + name[4:])
            if low > high:
                raise ConfigError(f"{where}: {name} {low:g} is above max_{name[4:]} {high:g}")
    return limits
