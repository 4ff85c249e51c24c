"""OCPP charging profiles as the grid request of a running ISO 15118-20 session.

A CSMS sends SetChargingProfile (OCPP 2.0.1 / 2.1 use cases K01, K03); the station answers the
Dynamic control mode's loop with the power the active profile asks for now
(:class:`ProfileSetpoint` is a :class:`~v2gtool.iso20.ports.GridRequest`).

Which profile is active (OCPP 2.0.1 K01 / 3.7 "Charging profile purposes" and "Stacking"):
per purpose, the valid profile with the highest ``stackLevel``; a TxProfile of the running
transaction wins over the TxDefaultProfile; ChargingStationMaxProfile and
ChargingStationExternalConstraints then bound it, each direction on its own (:func:`period_bounds`).

What a schedule period means, signed (+ charges the EV, - discharges it into the grid):

- OCPP 2.1 (ChargingSchedulePeriodType with ``operationMode``, Q01-Q09): ``Idle`` is 0;
  ``ChargingOnly`` charges up to ``limit``; ``CentralSetpoint`` follows ``setpoint`` (negative
  discharges), bounded by ``dischargeLimit`` (<= 0) and ``limit``. These are the modes this station
  supports (:data:`OPERATION_MODES`); a profile with any other mode (ExternalSetpoint,
  ExternalLimits, the frequency and load-balancing modes: they need local measurements or an
  external system this station has not) is refused as a whole (:class:`UnsupportedOperationMode`),
  so nothing it does not implement is ever applied.
- OCPP 2.0.1 has no discharge at all: ``limit`` is a "charging rate limit". Some CSMSs send a
  negative ``limit`` to ask for discharge, a non-standard workaround that 2.1 keeps only for
  backward compatibility. :class:`NegativeLimits` says what this station does with one:
  ``discharge`` (read -x as "discharge x"), ``reject`` (answer SetChargingProfile Rejected).

Rates in A are converted with the DC link's present voltage; W is what OCPP recommends for DC.

A limit beyond what the charger can do (``max_charge`` / ``max_discharge`` of
:class:`ProfileSetpoint`) is accepted and capped at the charger's own maximum, and the
SetChargingProfile answer says so (:meth:`ProfileSetpoint.capped`). OCPP 2.0.1 K01 makes a
profile's limit a maximum the CSMS allows, not a power the station must reach, and the station's
own limits always apply on top of the profiles (its composite schedule, K08, includes its local
limits): so a profile is refused only for what it means (malformed, a non-finite number, a negative
limit under ``reject``), never for asking more than the hardware has.
"""

from __future__ import annotations

import dataclasses
import enum
import itertools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from v2gtool.errors import V2GToolError
from v2gtool.ocpp.payloads import epoch

PURPOSE_ORDER = ("ChargingStationMaxProfile", "ChargingStationExternalConstraints", "TxDefaultProfile", "TxProfile")
KINDS = ("Absolute", "Recurring", "Relative")
RECURRENCE_S = {"Daily": 86_400, "Weekly": 7 * 86_400}
OPERATION_MODES = ("CentralSetpoint", "Idle", "ChargingOnly")  # the OCPP 2.1 operationModes supported


class ProfileRejected(V2GToolError):
    """A charging profile this station cannot apply (SetChargingProfile status Rejected); *code* is
    the answer's statusInfo reasonCode (one of the standardized reason codes: InvalidProfile unless
    the check names a more precise one)."""

    code = "InvalidProfile"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class UnsupportedOperationMode(ProfileRejected):
    """A period with an OCPP 2.1 operationMode outside :data:`OPERATION_MODES`."""

    code = "UnsupportedOpMode"  # statusInfo reasonCode is at most 20 characters


class NegativeLimits(enum.Enum):
    """What a negative OCPP 2.0.1 ``limit`` means here (a configurable, documented convention)."""

    DISCHARGE = "discharge"
    REJECT = "reject"


def parse_time(text: Any, where: str) -> float:
    """An OCPP dateTime as epoch seconds (:func:`v2gtool.ocpp.payloads.epoch`), or the rejection."""
    try:
        return epoch(text)
    except (ValueError, TypeError, AttributeError):
        raise ProfileRejected(f"{where}: invalid dateTime {text!r}") from None


@dataclass(frozen=True)
class SchedulePeriod:
    """One ChargingSchedulePeriod: from ``start`` seconds into the schedule, a signed request."""

    start: int
    limit: float | None
    setpoint: float | None = None
    discharge_limit: float | None = None
    operation_mode: str | None = None


@dataclass(frozen=True)
class ChargingProfile:
    """A validated ChargingProfile (its first ChargingSchedule; W or A)."""

    id: int
    purpose: str
    stack_level: int
    kind: str
    unit: str
    periods: tuple[SchedulePeriod, ...]
    start_schedule: float | None = None
    duration: float | None = None
    recurrency: str | None = None
    valid_from: float | None = None
    valid_to: float | None = None
    transaction_id: str | None = None
    received_at: float = 0.0
    evse_id: int = 0  # the SetChargingProfile's EVSE (0: the station as a whole)

    @classmethod
    def from_ocpp(cls, data: Mapping[str, Any], received_at: float, negative: NegativeLimits) -> ChargingProfile:
        """Validate the snake_case form the ``ocpp`` package hands a SetChargingProfile handler."""
        if not isinstance(data, Mapping):
            raise ProfileRejected(f"charging profile: {type(data).__name__} is not an object")
        where = f"charging profile {data.get('id')!r}"
        schedules = data.get("charging_schedule")
        if isinstance(schedules, Mapping):  # one schedule object (a 1.6-style CSMS): accept it
            schedules = [schedules]
        if not schedules:
            raise ProfileRejected(f"{where}: no chargingSchedule")
        schedule = schedules[0] if isinstance(schedules, list) else None
        if not isinstance(schedule, Mapping):
            raise ProfileRejected(f"{where}: chargingSchedule is not a list of objects")
        unit = schedule.get("charging_rate_unit")
        if unit not in ("W", "A"):
            raise ProfileRejected(f"{where}: chargingRateUnit {unit!r} is not W or A")
        raw_periods = schedule.get("charging_schedule_period", [])
        if not isinstance(raw_periods, list) or not all(isinstance(raw, Mapping) for raw in raw_periods):
            raise ProfileRejected(f"{where}: chargingSchedulePeriod is not a list of objects")
        periods = []
        for raw in raw_periods:
            period = SchedulePeriod(
                start=_integer(raw.get("start_period"), where, "startPeriod"),
                limit=_number(raw.get("limit"), where, "limit"),
                setpoint=_number(raw.get("setpoint"), where, "setpoint"),
                discharge_limit=_number(raw.get("discharge_limit"), where, "dischargeLimit"),
                operation_mode=_text(raw.get("operation_mode"), where, "operationMode"),
            )
            if period.limit is not None and period.limit < 0 and negative is NegativeLimits.REJECT:
                raise ProfileRejected(
                    f"{where}: negative limit {period.limit:g} at startPeriod {period.start} "
                    "(OCPP 2.0.1 has no discharge; this station is set to reject negative limits)"
                )
            if period.operation_mode not in (None, *OPERATION_MODES):
                raise UnsupportedOperationMode(
                    f"{where}: operationMode {period.operation_mode!r} at startPeriod {period.start} is not "
                    f"supported by this station (it supports {', '.join(OPERATION_MODES)})"
                )
            if period.discharge_limit is not None and period.discharge_limit > 0:
                raise ProfileRejected(f"{where}: dischargeLimit {period.discharge_limit:g} must be <= 0")
            periods.append(period)
        if not periods or periods[0].start != 0 or any(a.start >= b.start for a, b in itertools.pairwise(periods)):
            raise ProfileRejected(f"{where}: chargingSchedulePeriod must start at 0 and increase")
        kind = data.get("charging_profile_kind", "Absolute")
        if kind not in KINDS:
            raise ProfileRejected(f"{where}: chargingProfileKind {kind!r} is not one of {', '.join(KINDS)}")
        start = schedule.get("start_schedule")
        if kind in ("Absolute", "Recurring") and start is None:
            raise ProfileRejected(f"{where}: a {kind} profile needs startSchedule")
        if kind == "Relative" and start is not None:  # K01.FR.41
            raise ProfileRejected(
                f"{where}: a Relative profile has no startSchedule (it starts with the transaction)",
                "InvalidSchedule",
            )
        recurrency = _text(data.get("recurrency_kind"), where, "recurrencyKind")
        if kind == "Recurring" and recurrency not in RECURRENCE_S:
            raise ProfileRejected(f"{where}: a Recurring profile needs recurrencyKind Daily or Weekly")
        purpose = str(data.get("charging_profile_purpose"))
        if purpose not in PURPOSE_ORDER:
            raise ProfileRejected(f"{where}: unsupported chargingProfilePurpose {purpose!r}")
        if purpose == "ChargingStationMaxProfile" and kind == "Relative":  # K01.FR.38
            raise ProfileRejected(f"{where}: a ChargingStationMaxProfile cannot be Relative", "InvalidValue")
        transaction_id = _text(data.get("transaction_id"), where, "transactionId")
        if purpose == "TxProfile" and transaction_id is None:  # K01.FR.03
            raise ProfileRejected(f"{where}: a TxProfile needs the transactionId it is for", "MissingParam")
        return cls(
            id=_integer(data.get("id"), where, "id"),
            purpose=purpose,
            stack_level=_integer(data.get("stack_level", 0), where, "stackLevel"),
            kind=kind,
            unit=unit,
            periods=tuple(periods),
            start_schedule=parse_time(start, where) if start is not None else None,
            duration=_number(schedule.get("duration"), where, "duration"),
            recurrency=recurrency,
            valid_from=parse_time(data["valid_from"], where) if data.get("valid_from") is not None else None,
            valid_to=parse_time(data["valid_to"], where) if data.get("valid_to") is not None else None,
            transaction_id=transaction_id,
            received_at=received_at,
        )

    def boundaries(self, transaction_start: float | None, after: float, until: float) -> list[float]:
        """The epoch times in (*after*, *until*) at which this profile's request may change."""
        if self.kind == "Relative":
            origin = transaction_start if transaction_start is not None else self.received_at
        else:
            assert self.start_schedule is not None
            origin = self.start_schedule
        times = [origin + p.start for p in self.periods]
        if self.duration is not None:
            times.append(origin + self.duration)
        if self.kind == "Recurring" and self.recurrency in RECURRENCE_S:
            cycle = RECURRENCE_S[self.recurrency]
            shift = math.floor((after - origin) / cycle) * cycle
            times = [t + shift + k * cycle for t in times for k in (0, 1)]
        times += [t for t in (self.valid_from, self.valid_to) if t is not None]
        return [t for t in times if after < t < until]

    def period_at(self, now: float, transaction_start: float | None) -> SchedulePeriod | None:
        """The period in force at epoch *now*, or None outside the schedule and validity."""
        if (self.valid_from is not None and now < self.valid_from) or (
            self.valid_to is not None and now >= self.valid_to
        ):
            return None
        if self.kind == "Relative":
            origin = transaction_start if transaction_start is not None else self.received_at
        else:
            assert self.start_schedule is not None
            origin = self.start_schedule
        elapsed = now - origin
        if self.kind == "Recurring" and self.recurrency in RECURRENCE_S:
            elapsed %= RECURRENCE_S[self.recurrency]
        if elapsed < 0 or (self.duration is not None and elapsed >= self.duration):
            return None
        current = None
        for period in self.periods:
            if period.start <= elapsed:
                current = period
        return current


def period_power(period: SchedulePeriod, unit: str, voltage: float) -> float:
    """The signed power (W) one period asks for; see the module docstring for the rules."""
    scale = voltage if unit == "A" else 1.0
    limit = None if period.limit is None else period.limit * scale
    floor = None if period.discharge_limit is None else period.discharge_limit * scale
    mode = period.operation_mode
    if mode == "Idle":
        return 0.0
    if mode == "ChargingOnly":
        return max(limit or 0.0, 0.0)
    if period.setpoint is not None:
        power = period.setpoint * scale
        if floor is not None:
            power = max(power, floor)
        if limit is not None:
            power = min(power, limit)
        return power
    if limit is not None:
        return limit  # negative only under NegativeLimits.DISCHARGE (validated on receipt)
    return floor if floor is not None else 0.0


def period_bounds(period: SchedulePeriod, unit: str, voltage: float) -> tuple[float, float]:
    """How far a cap period (ChargingStationMaxProfile, ChargingStationExternalConstraints) lets the
    power go: (most W charged, most W discharged), both >= 0.

    OCPP 2.1 ChargingSchedulePeriodType bounds the two directions separately: ``limit`` the charging,
    ``dischargeLimit`` (<= 0) the discharging; ``Idle`` allows neither and ``ChargingOnly`` no
    discharging. A period without ``dischargeLimit`` and without an operationMode is read as OCPP
    2.0.1 has it (no discharge field; the same period cannot be told from a 2.1 one): its ``limit``
    bounds the magnitude both ways, a negative one (the backward-compatible discharge limit of
    2.1, :class:`NegativeLimits`) too. No ``limit``: charging is not bounded by this period."""
    scale = voltage if unit == "A" else 1.0
    if period.operation_mode == "Idle":
        return 0.0, 0.0
    charge = math.inf if period.limit is None else abs(period.limit) * scale
    if period.discharge_limit is not None:
        return charge, -period.discharge_limit * scale
    if period.operation_mode == "ChargingOnly":
        return charge, 0.0
    return charge, charge


@dataclass
class ProfileSetpoint:
    """The station's installed charging profiles, read as the Dynamic mode's grid request.

    *fallback* is the request when no profile is in force (None: the EV's own maximum, as without
    OCPP). *clock* is wall-clock epoch seconds: OCPP schedules are anchored in real time, not in
    the session's (possibly simulated) clock. *voltage* is the DC link voltage, for profiles in A.
    """

    fallback: float | None = None
    clock: Callable[[], float] = time.time
    voltage: Callable[[], float] = lambda: 400.0
    negative: NegativeLimits = NegativeLimits.DISCHARGE
    max_charge: float = math.inf  # W the charger can charge with, and discharge (magnitude)
    max_discharge: float = math.inf
    transaction_id: str | None = None
    transaction_start: float | None = None
    profiles: dict[int, ChargingProfile] = field(default_factory=dict)
    revision: int = 0  # counts installs and clears: a Scheduled session renegotiates on a change

    def install(self, data: Mapping[str, Any], evse_id: int = 0) -> ChargingProfile:
        """Validate and install a profile set on *evse_id*, replacing one with the same id (K01.FR.05)
        or with the same purpose and stack level. A TxProfile is for the running transaction
        (TxNotFound otherwise), and one that has the stack level of another TxProfile of that
        transaction under another id is refused, not swapped in for it (K01.FR.39:
        InvalidStackLevel; the CSMS replaces a TxProfile by sending its id again)."""
        profile = dataclasses.replace(ChargingProfile.from_ocpp(data, self.clock(), self.negative), evse_id=evse_id)
        where = f"charging profile {profile.id}"
        if profile.purpose == "TxProfile":
            if self.transaction_id is None:
                raise ProfileRejected(
                    f"{where}: TxProfile for transaction {profile.transaction_id!r}, none running", "TxNotFound"
                )
            if profile.transaction_id != self.transaction_id:
                raise ProfileRejected(
                    f"{where}: TxProfile for transaction {profile.transaction_id!r}, running: {self.transaction_id!r}",
                    "TxNotFound",
                )
            for other in self.profiles.values():
                if (other.purpose, other.stack_level) == ("TxProfile", profile.stack_level) and other.id != profile.id:
                    raise ProfileRejected(
                        f"{where}: TxProfile {other.id} of transaction {profile.transaction_id!r} has stackLevel "
                        f"{profile.stack_level} already (send id {other.id} to replace it)",
                        "InvalidStackLevel",
                    )
        for other in list(self.profiles.values()):
            if other.id == profile.id or (other.purpose, other.stack_level) == (profile.purpose, profile.stack_level):
                del self.profiles[other.id]
        self.profiles[profile.id] = profile
        self.revision += 1
        return profile

    def capped(self, profile: ChargingProfile) -> str:
        """Why *profile* asks more than the charger can do (its periods' requests at the present
        voltage capped at ``max_charge`` / ``max_discharge``), or "" when it does not."""
        voltage = self.voltage()
        asked = [period_power(period, profile.unit, voltage) for period in profile.periods]
        if max(asked) > self.max_charge:
            return f"charging limit {max(asked):g} W capped at this charger's {self.max_charge:g} W"
        if min(asked) < -self.max_discharge:
            return f"discharging limit {-min(asked):g} W capped at this charger's {self.max_discharge:g} W"
        return ""

    def clear(
        self,
        profile_id: int | None = None,
        purpose: str | None = None,
        stack_level: int | None = None,
        evse_id: int | None = None,
    ) -> int:
        """ClearChargingProfile (OCPP 2.0.1 K10): remove the profiles that match every criterion given
        (a chargingProfileId, or chargingProfileCriteria's chargingProfilePurpose, stackLevel and
        evseId, K10.FR.02/03; none given: all); how many went (none: the answer is Unknown)."""
        wanted = {"id": profile_id, "purpose": purpose, "stack_level": stack_level, "evse_id": evse_id}
        gone = [
            p.id
            for p in self.profiles.values()
            if all(value is None or getattr(p, name) == value for name, value in wanted.items())
        ]
        for pid in gone:
            del self.profiles[pid]
        self.revision += bool(gone)
        return len(gone)

    def end_transaction(self) -> None:
        """A TxProfile lives as long as its transaction (K01.FR.05)."""
        for pid in [p.id for p in self.profiles.values() if p.purpose == "TxProfile"]:
            del self.profiles[pid]
        self.transaction_id = None
        self.transaction_start = None

    def power(self, now: float) -> float | None:
        """:class:`~v2gtool.iso20.ports.GridRequest`: the signed W in force (the session's *now* is
        not used: the schedule runs on :attr:`clock`)."""
        return self._power_at(self.clock())

    def schedule(self, now: float, horizon: float) -> list[tuple[float, float | None]]:
        """:class:`~v2gtool.iso20.ports.GridRequest`: (seconds, signed W) from now over *horizon*
        seconds, one entry per change of the request (the Scheduled mode's ScheduleExchange)."""
        wall = self.clock()
        edges = {wall + horizon}
        for profile in self.profiles.values():
            edges.update(profile.boundaries(self.transaction_start, wall, wall + horizon))
        out: list[tuple[float, float | None]] = []
        start = wall
        for edge in sorted(edges):
            watts = self._power_at(start)
            if out and out[-1][1] == watts:
                out[-1] = (out[-1][0] + edge - start, watts)
            else:
                out.append((edge - start, watts))
            start = edge
        return out

    def _power_at(self, wall: float) -> float | None:
        voltage = self.voltage()
        chosen: dict[str, tuple[SchedulePeriod, str]] = {}  # purpose: (period in force, its profile's unit)
        for purpose in PURPOSE_ORDER:
            candidates = sorted(
                (p for p in self.profiles.values() if p.purpose == purpose), key=lambda p: -p.stack_level
            )
            for profile in candidates:
                period = profile.period_at(wall, self.transaction_start)
                if period is not None:
                    chosen[purpose] = (period, profile.unit)
                    break
        own = chosen.get("TxProfile", chosen.get("TxDefaultProfile"))
        request = self.fallback if own is None else period_power(*own, voltage)
        for cap_purpose in PURPOSE_ORDER[:2]:
            if cap_purpose in chosen:
                cap, unit = chosen[cap_purpose]
                if request is None:  # no request of its own: the cap is the request
                    request = period_power(cap, unit, voltage)
                charge, discharge = period_bounds(cap, unit, voltage)
                request = max(-discharge, min(charge, request))
        return None if request is None else max(-self.max_discharge, min(self.max_charge, request))


def _number(value: Any, where: str, name: str) -> float | None:
    """An optional JSON number (finite; not a boolean)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ProfileRejected(f"{where}: {name} {value!r} is not a finite number")
    return float(value)


def _integer(value: Any, where: str, name: str) -> int:
    """A required JSON integer."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProfileRejected(f"{where}: {name} {value!r} is not an integer")
    return value


def _text(value: Any, where: str, name: str) -> str | None:
    """An optional JSON string."""
    if value is not None and not isinstance(value, str):
        raise ProfileRejected(f"{where}: {name} {value!r} is not a string")
    return value
