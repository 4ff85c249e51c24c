"""The OCPP payloads a V2G station sends, built from the ISO 15118-20 session and read back by a CSMS.

Both directions live here so that what the bridge writes and what the aggregator reads can't
drift apart (and a property test runs them against each other). Payloads are the snake_case
dicts the ``ocpp`` package converts to the wire's camelCase.

NotifyEVChargingNeeds (OCPP 2.0.1 K15, 2.1 K15/Q01): 2.0.1 has no V2X parameters, so a DC_BPT
session's discharge limits travel in ``customData`` under :data:`VENDOR_ID` (the extension point
every 2.0.1 object has, 2.0.1 part 2 2.1.2 "CustomDataType"); 2.1 carries them in
``v2xChargingParameters``. Either way the discharge energy is ISO 15118-20's
EVMinimumV2XEnergyRequest: negative, what the EV may give before its minimum SoC.

Meter values (OCPP 2.0.1 part 2 appendix 2.31 Measurand): energy both ways as registers
(Energy.Active.Import.Register into the EV, Energy.Active.Export.Register back to the grid, Wh),
power as Power.Active.Import / Power.Active.Export (W, never negative), SoC, Voltage.

The station identity (:func:`check_station_identity`) is checked here too, by the bridge before it
connects and by the CSMS at the websocket handshake, so that one cannot accept what the other refuses.

What the CSMS reads is checked to be physically plausible (:data:`MAX_POWER_W`,
:data:`MAX_EV_ENERGY_WH`, :data:`MAX_REGISTER_WH`, SoC 0-100): a value of the wrong type raises
TypeError, one out of range :class:`ImplausibleValue` (the CSMS answers TypeConstraintViolation and
PropertyConstraintViolation, OCPP 2.0.1 part 4 4.3), so the fleet's sums stay finite.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from v2gtool.iso20.events import EVChargingNeeds
from v2gtool.iso20.metering import EnergyMeter

VENDOR_ID = "org.v2gtool"
OCPP201 = "ocpp2.0.1"
OCPP21 = "ocpp2.1"
MAX_POWER_W = 10e6  # 10 MW: above any vehicle or charger (MCS is specified up to 3.75 MW)
MAX_EV_ENERGY_WH = 10e6  # 10 MWh: above any vehicle battery
MAX_REGISTER_WH = 1e12  # 1 TWh: an energy register of decades of a busy station
MAX_IDENTITY = 48  # characters of a station identity (OCPP 2.0.1 part 4 3.2)
INT32_MAX = 2**31 - 1  # OCPP's integer is 32 bits, signed (OCPP 2.0.1 part 2 primitive datatypes)
LIMIT_CAPPED = "limitcapped"  # the bridge's SetChargingProfile reasonCode for a capped profile, folded
# "... capped at this charger's 5000 W": the first number after "capped at", with its unit W or kW
_CAPPED_AT = re.compile(r"capped at\D*?(\d+(?:\.\d*)?(?:e[+-]?\d+)?)\s*(k?w)\b", re.IGNORECASE)
# identifierString's punctuation (OCPP 2.0.1 part 2 primitive datatypes) but ':', which the HTTP Basic
# user-id of security profile 2 cannot hold (RFC 7617 2): refused always, see check_station_identity.
IDENTITY_PUNCTUATION = "*-_=+|@."


class ImplausibleValue(ValueError):
    """A value of the right type that no vehicle or meter can have (PropertyConstraintViolation)."""


def check_station_identity(identity: str) -> str:
    """*identity* when it can be a station identity; ValueError, one line naming the problem, when not.

    The identity is the last segment of the websocket URL (OCPP 2.0.1/2.1 part 4 3.2): an
    identifierString (part 2 primitive datatypes: a-z A-Z 0-9 and ``*-_=+|@.:``) of 1 to
    :data:`MAX_IDENTITY` characters. ``:`` is refused even where no password is in use: with security
    profile 2 the identity is the HTTP Basic user-id (part 2 A00, "Security Profile 2"), and a user-id
    cannot hold a ``:`` (RFC 7617 2, the first one ends it). Refusing it always keeps a station's
    identity valid whether or not it is later given a password, and the bridge and the CSMS agreed."""
    shown = identity.encode("unicode_escape").decode()[:60]  # one line, whatever it holds
    bad = sorted({c for c in identity if not (c.isascii() and (c.isalnum() or c in IDENTITY_PUNCTUATION))})
    if not identity:
        problem = "it is empty"
    elif len(identity) > MAX_IDENTITY:
        problem = f"{len(identity)} characters: at most {MAX_IDENTITY}"
    elif bad:
        problem = f"it has {' '.join(repr(c) for c in bad)[:40]}: only a-z A-Z 0-9 and {IDENTITY_PUNCTUATION}"
    else:
        return identity
    raise ValueError(f"'{shown}' is not an OCPP station identity ({problem})")


def read_number(value: object, name: str, low: float, high: float) -> float:
    """A JSON number within [*low*, *high*]: TypeError when it is no number (a bool is none),
    :class:`ImplausibleValue` when it is out of the range or not finite."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{name} is not a number")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not (math.isfinite(number) and low <= number <= high):
        raise ImplausibleValue(f"{name} {number:g} is outside {low:g}..{high:g}")
    return number


def read_datetime(text: object, name: str) -> float:
    """An OCPP dateTime field (RFC 3339) as epoch seconds; TypeError when it is not one (the schemas
    say ``"format": "date-time"``, which their validation does not check)."""
    try:
        return epoch(str(text))
    except (ValueError, OverflowError):
        raise TypeError(f"{name} {str(text)[:40]!r} is not an RFC 3339 dateTime") from None


def timestamp(epoch: float) -> str:
    """An OCPP dateTime (UTC, RFC 3339, milliseconds)."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch(text: str) -> float:
    """An OCPP dateTime (RFC 3339) as epoch seconds; one without a UTC offset is read as UTC (what
    OCPP asks for), never as this host's local time. ValueError when it is not a dateTime."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()


@dataclass(frozen=True)
class VehicleNeeds:
    """What a CSMS learns of one vehicle from NotifyEVChargingNeeds (W, Wh, epoch seconds)."""

    bpt: bool
    max_charge_power: float
    max_discharge_power: float
    departure: float | None
    target_soc: int | None
    min_soc: int | None
    dischargeable_wh: float  # >= 0: energy it may give before its minimum SoC
    control_mode: str | None = None


def charging_needs(event: EVChargingNeeds, subprotocol: str, now: float, evse_id: int = 1) -> dict[str, Any]:
    """The NotifyEVChargingNeedsRequest for *event*, in the negotiated OCPP version."""
    lim = event.limits
    bpt = event.service == "DC_BPT"
    departure = timestamp(now + event.departure_time) if event.departure_time is not None else None
    dc: dict[str, Any] = {
        "ev_max_current": lim.max_charge_current,
        "ev_max_voltage": lim.max_voltage,
        "ev_max_power": lim.max_charge_power,
    }
    if event.target_energy is not None:
        dc["energy_amount"] = event.target_energy
    if event.target_soc is not None:
        dc["full_soc"] = event.target_soc
    if subprotocol != OCPP21:  # 2.0.1 DCChargingParametersType has integer A, V, W and Wh
        dc = {k: round(v) for k, v in dc.items()}
    needs: dict[str, Any] = {"dc_charging_parameters": dc}
    if departure is not None:
        needs["departure_time"] = departure
    v2x = {
        "max_charge_power": lim.max_charge_power,
        "min_charge_power": lim.min_charge_power,
        "max_charge_current": lim.max_charge_current,
        "max_discharge_power": lim.max_discharge_power,
        "min_discharge_power": lim.min_discharge_power,
        "max_discharge_current": lim.max_discharge_current,
        "max_voltage": lim.max_voltage,
        "min_voltage": lim.min_voltage,
        "ev_min_v2x_energy_request": event.min_v2x_energy,
        "ev_max_v2x_energy_request": event.max_v2x_energy,
        "target_soc": event.target_soc,
    }
    v2x = {k: v for k, v in v2x.items() if v is not None}
    if subprotocol == OCPP21:
        needs["requested_energy_transfer"] = "DC_BPT" if bpt else "DC"
        needs["control_mode"] = "DynamicControl" if event.control_mode == "DYNAMIC" else "ScheduledControl"
        if bpt:
            needs["v2x_charging_parameters"] = v2x
            if event.min_soc is not None:  # 2.1 has no minimum SoC field either
                needs["custom_data"] = {"vendor_id": VENDOR_ID, "min_soc": event.min_soc}
    else:
        needs["requested_energy_transfer"] = "DC"
        if bpt:
            extension = {"vendor_id": VENDOR_ID, "bpt": True, "min_soc": event.min_soc, **v2x}
            needs["custom_data"] = {k: v for k, v in extension.items() if v is not None}
    return {"evse_id": evse_id, "charging_needs": needs}


def read_charging_needs(needs: dict[str, Any]) -> VehicleNeeds:
    """What :func:`charging_needs` wrote (either version), as the aggregator uses it; a plain 2.0.1
    station without our extension reads as a charge-only vehicle. Powers are 0..:data:`MAX_POWER_W`,
    the V2X energy request within :data:`MAX_EV_ENERGY_WH` either way, SoCs integers 0-100 (TypeError
    or :class:`ImplausibleValue` otherwise, see the module)."""
    custom = needs.get("custom_data") or {}
    if custom.get("vendor_id") != VENDOR_ID:
        custom = {}
    v2x = needs.get("v2x_charging_parameters") or custom
    dc = needs.get("dc_charging_parameters") or {}
    bpt = needs.get("requested_energy_transfer") == "DC_BPT" or bool(custom.get("bpt"))
    departure = needs.get("departure_time")
    min_v2x = v2x.get("ev_min_v2x_energy_request")
    max_charge = v2x.get("max_charge_power", dc.get("ev_max_power", 0.0))
    return VehicleNeeds(
        bpt=bpt,
        max_charge_power=read_number(max_charge, "maxChargePower", 0.0, MAX_POWER_W),
        max_discharge_power=read_number(v2x.get("max_discharge_power", 0.0), "maxDischargePower", 0.0, MAX_POWER_W)
        if bpt
        else 0.0,
        departure=read_datetime(departure, "departureTime") if departure else None,
        target_soc=_soc(v2x.get("target_soc", dc.get("full_soc")), "targetSoC"),
        min_soc=_soc(custom.get("min_soc"), "minSoC"),
        dischargeable_wh=max(0.0, -read_number(min_v2x, "evMinV2XEnergyRequest", -MAX_EV_ENERGY_WH, MAX_EV_ENERGY_WH))
        if (bpt and min_v2x is not None)
        else 0.0,
        control_mode=needs.get("control_mode"),
    )


def _soc(value: object, name: str) -> int | None:
    """A state of charge (an integer percentage, OCPP 2.1 V2XChargingParametersType targetSoC)."""
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} is not an integer")
    if not 0 <= value <= 100:
        raise ImplausibleValue(f"{name} {value} is outside 0..100")
    return value


class Meter(EnergyMeter):
    """The station's meter (:class:`~v2gtool.iso20.metering.EnergyMeter`) as OCPP reports it."""

    def meter_value(self, epoch: float, context: str = "Sample.Periodic") -> dict[str, Any]:
        """One MeterValueType with both registers, both power directions, SoC and voltage."""

        def sv(measurand: str, value: float, unit: str) -> dict[str, Any]:
            return {
                "measurand": measurand,
                "value": round(value, 3),
                "context": context,
                "location": "Outlet",
                "unit_of_measure": {"unit": unit},
            }

        values = [
            sv("Energy.Active.Import.Register", self.imported_wh, "Wh"),
            sv("Energy.Active.Export.Register", self.exported_wh, "Wh"),
            sv("Power.Active.Import", max(self.power, 0.0), "W"),
            sv("Power.Active.Export", max(-self.power, 0.0), "W"),
            sv("Voltage", self.voltage, "V"),
        ]
        if self.soc is not None:
            values.append({**sv("SoC", self.soc, "Percent"), "location": "EV"})
        return {"timestamp": timestamp(epoch), "sampled_value": values}


@dataclass(frozen=True)
class Reading:
    """What a CSMS reads from one MeterValueType."""

    at: float
    imported_wh: float | None
    exported_wh: float | None
    power: float | None  # signed: + into the EV
    soc: float | None


# What a CSMS reads of a MeterValueType: per measurand, the units it may come in with their factor
# to the first (OCPP 2.0.1 part 2 appendix "Standardized units of measurements") and its plausible range.
MEASURANDS: dict[str, tuple[dict[str, float], float, float]] = {
    "Energy.Active.Import.Register": ({"Wh": 1.0, "kWh": 1e3}, 0.0, MAX_REGISTER_WH),
    "Energy.Active.Export.Register": ({"Wh": 1.0, "kWh": 1e3}, 0.0, MAX_REGISTER_WH),
    "Power.Active.Import": ({"W": 1.0, "kW": 1e3}, -MAX_POWER_W, MAX_POWER_W),
    "Power.Active.Export": ({"W": 1.0, "kW": 1e3}, -MAX_POWER_W, MAX_POWER_W),
    "SoC": ({"Percent": 1.0}, 0.0, 100.0),
}


def read_meter_value(meter_value: dict[str, Any]) -> Reading:
    """The registers, signed power and SoC of one MeterValueType (absent measurands are None).

    Only totals count: a sampled value with a ``phase`` (L1, L2, L3, N, L1-N...) is one phase's and
    is skipped. Each value is scaled by its UnitOfMeasureType (OCPP 2.0.1 part 2 UnitOfMeasureType:
    *value* * 10^multiplier in *unit*; without one, in the measurand's own unit) to Wh, W or %; a unit not of
    the measurand or a value out of its range is :class:`ImplausibleValue`."""
    values: dict[str, float] = {}
    for sv in meter_value.get("sampled_value", []):
        measurand = sv.get("measurand", "Energy.Active.Import.Register")
        if measurand in MEASURANDS and "phase" not in sv:
            values[measurand] = _scaled(measurand, sv)
    power = None
    if "Power.Active.Import" in values or "Power.Active.Export" in values:
        power = values.get("Power.Active.Import", 0.0) - values.get("Power.Active.Export", 0.0)
    return Reading(
        at=read_datetime(meter_value["timestamp"], "timestamp"),
        imported_wh=values.get("Energy.Active.Import.Register"),
        exported_wh=values.get("Energy.Active.Export.Register"),
        power=power,
        soc=values.get("SoC"),
    )


def _scaled(measurand: str, sampled_value: dict[str, Any]) -> float:
    """One SampledValueType's value in the measurand's own unit, checked against its range."""
    units, low, high = MEASURANDS[measurand]
    unit_of_measure = sampled_value.get("unit_of_measure") or {}
    unit = unit_of_measure.get("unit", next(iter(units)))
    if unit not in units:
        raise ImplausibleValue(f"{measurand} in {str(unit)[:20]!r}, not in {' or '.join(units)}")
    value = read_number(sampled_value["value"], measurand, -math.inf, math.inf) * units[unit]
    try:
        value *= 10.0 ** int(unit_of_measure.get("multiplier", 0))
    except OverflowError:
        value = math.inf
    return read_number(value, f"{measurand} ({next(iter(units))})", low, high)


def wrap_int32(number: int) -> int:
    """A counter kept within OCPP's integer (1..:data:`INT32_MAX`): past the top it starts at 1 again."""
    return (number - 1) % INT32_MAX + 1


def limit_capped(status_info: object) -> float | None:
    """The W at which a SetChargingProfile answer's statusInfo says the station runs the profile,
    capped at its charger's maximum: ``math.inf`` when it says nothing of the kind (no statusInfo, or
    a reasonCode other than LimitCapped), None when it says LimitCapped but not at what (no finite
    number with a W or kW unit after "capped at" in its additionalInfo).

    LimitCapped (any case) is the reasonCode of this bridge's Accepted answer to a profile beyond its
    charger (:meth:`v2gtool.ocpp.profile.ProfileSetpoint.capped` writes "discharging limit 10000 W
    capped at this charger's 5000 W"); OCPP leaves reasonCode and additionalInfo free text (2.0.1
    part 2 StatusInfoType), so anything else is read as not capped."""
    if not isinstance(status_info, dict) or str(status_info.get("reason_code", "")).lower() != LIMIT_CAPPED:
        return math.inf
    found = _CAPPED_AT.search(str(status_info.get("additional_info", "")))
    if found is None:
        return None
    watts = float(found[1]) * (1000.0 if found[2].lower() == "kw" else 1.0)
    return watts if math.isfinite(watts) else None


def dispatch_profile(
    subprotocol: str, profile_id: int, transaction_id: str, watts: float, start: float, duration: float
) -> dict[str, Any]:
    """The TxProfile that asks one transaction for *watts* (signed, - discharges) from *start* for
    *duration* s: OCPP 2.1 says it with ``operationMode`` CentralSetpoint and a ``setpoint`` (or
    Idle at 0 W); OCPP 2.0.1 has only ``limit``, negative for discharge under the convention of
    :class:`v2gtool.ocpp.profile.NegativeLimits`. The duration is whole seconds, 1..:data:`INT32_MAX`
    (*profile_id* is within OCPP's integer too, :func:`wrap_int32`)."""
    if subprotocol == OCPP21:
        period: dict[str, Any] = {"start_period": 0, "operation_mode": "CentralSetpoint", "setpoint": round(watts, 1)}
        if watts == 0:
            period = {"start_period": 0, "operation_mode": "Idle"}
    else:
        period = {"start_period": 0, "limit": round(watts, 1)}
    return {
        "id": profile_id,
        "stack_level": 0,
        "charging_profile_purpose": "TxProfile",
        "charging_profile_kind": "Absolute",
        "transaction_id": transaction_id,
        "charging_schedule": [
            {
                "id": profile_id,
                "start_schedule": timestamp(start),
                "duration": min(INT32_MAX, max(1, round(duration))),
                "charging_rate_unit": "W",
                "charging_schedule_period": [period],
            }
        ],
    }
