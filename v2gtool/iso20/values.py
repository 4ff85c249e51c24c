"""Values of ISO 15118-20 messages: rational numbers, headers, services and their parameters."""

from __future__ import annotations

import enum
import time

from v2gtool.messages import iso20_cm as cm
from v2gtool.messages import iso20_ct as ct

SHORT_MIN, SHORT_MAX = -32768, 32767


def rational(x: float) -> ct.RationalNumberType:
    """Encode *x* as RationalNumberType (Value x 10^Exponent, Value a short), keeping 3 significant
    decimals where the short allows it (ISO 15118-20 8.3.5.3.8)."""
    if x == 0:
        return ct.RationalNumberType(Exponent=0, Value=0)
    exponent = -3
    while not SHORT_MIN <= round(x * 10**-exponent) <= SHORT_MAX:
        exponent += 1
    value = round(x * 10**-exponent)
    while exponent < 0 and value % 10 == 0:  # shortest exact form
        value //= 10
        exponent += 1
    return ct.RationalNumberType(Exponent=exponent, Value=value)


def to_float(r: ct.RationalNumberType | None, default: float = 0.0) -> float:
    return default if r is None else r.Value * 10.0**r.Exponent


def header(session_id: bytes, unix_time: float | None = None) -> ct.MessageHeaderType:
    """MessageHeader with the session ID and a Unix TimeStamp (ISO 15118-20 8.3.5.3.1): *unix_time*
    (an engine's :class:`WallClock` reading), else the wall clock's now."""
    return ct.MessageHeaderType(SessionID=session_id, TimeStamp=int(time.time() if unix_time is None else unix_time))


class WallClock:
    """Unix time for TimeStamp, TimeAnchor and MeterTimestamp (Unix seconds, ISO 15118-20 8.3.5.3.1).

    The engines' timers run on their own clock (a plant's simulated seconds, or ``serve --speed N``'s
    clock, which runs N times as fast as real time and which simulated work such as a cable check
    moves ahead), which is not Unix time. On a real link (``serve``, ``connect``) a message goes out
    when it is made, so it carries the wall clock's present time: *epoch* None. A simulation, whose
    frames exist only in its trace, gives *epoch*, the Unix time of clock reading 0: the trace places
    a frame at ``epoch + t`` (:class:`v2gtool.session.trace.SessionTrace`), so with the trace's epoch
    a message's TimeStamp is its frame's capture time, to the whole second."""

    def __init__(self, epoch: float | None) -> None:
        self.epoch = epoch

    def unix(self, now: float) -> int:
        """Whole Unix seconds at clock reading *now*: the wall clock's now without an epoch."""
        return int(time.time() if self.epoch is None else self.epoch + now)


class ServiceID(enum.IntEnum):
    """Energy transfer and value-added services (ISO 15118-20 Table 204)."""

    AC = 1
    DC = 2
    WPT = 3
    DC_ACDP = 4
    AC_BPT = 5
    DC_BPT = 6
    DC_ACDP_BPT = 7
    INTERNET = 65
    PARKING_STATUS = 66


def service_name(service_id: int) -> str:
    """The name of a ServiceID of Table 204, or its number when it names none."""
    try:
        return ServiceID(service_id).name
    except ValueError:
        return str(service_id)


# The DC energy transfer services the engines implement (a charger without BPT has DC alone).
DC_SERVICES = frozenset({ServiceID.DC, ServiceID.DC_BPT})

# "DC_V2G" is a popular name for bidirectional DC; the standard's service is DC_BPT.
SERVICE_ALIASES = {"DC_V2G": ServiceID.DC_BPT, "V2G": ServiceID.DC_BPT, "BPT": ServiceID.DC_BPT}


def service_from_name(name: str) -> ServiceID:
    """DC, DC_BPT (or its alias DC_V2G) ... by name, case-insensitively."""
    key = name.strip().upper()
    if key in SERVICE_ALIASES:
        return SERVICE_ALIASES[key]
    return ServiceID[key]


class SignConvention(enum.Enum):
    """How a discharge (DC_BPT) is written in EVTargetCurrent and EVSEPresentCurrent.

    ``signed`` (default): negative values flow from the vehicle to the grid. ``channel``: the wire
    carries magnitudes and PowerDelivery's BPT_ChannelSelection (Charge/Discharge) gives the
    direction, as some implementations do. Inside v2gtool current is always signed. The SECC reads an
    EV's EVTargetCurrent in the direction of the channel it selected under either convention
    ([V2G20-2123]: :meth:`v2gtool.iso20.secc.Secc._loop_target`).
    """

    SIGNED = "signed"
    CHANNEL = "channel"

    def to_wire(self, current: float) -> float:
        return abs(current) if self is SignConvention.CHANNEL else current

    def from_wire(self, value: float, discharging: bool) -> float:
        if self is SignConvention.CHANNEL:
            return -abs(value) if discharging else abs(value)
        return value


class ControlMode(enum.IntEnum):
    """ServiceDetail parameter ControlMode (ISO 15118-20 Table 205)."""

    SCHEDULED = 1
    DYNAMIC = 2


class MobilityNeedsMode(enum.IntEnum):
    PROVIDED_BY_EVCC = 1
    PROVIDED_BY_SECC = 2


def parameter(name: str, value: int) -> cm.ParameterType:
    return cm.ParameterType(Name=name, intValue=value)


def dc_parameter_sets(service: ServiceID, modes: list[ControlMode]) -> tuple[cm.ParameterSetType, ...]:
    """One ParameterSet per control mode for DC or DC_BPT (ISO 15118-20 Tables 207 and 209)."""
    sets = []
    for mode in modes:
        params = [
            parameter("Connector", 2),
            parameter("ControlMode", int(mode)),
            parameter("MobilityNeedsMode", int(MobilityNeedsMode.PROVIDED_BY_EVCC)),
            parameter("Pricing", 2),  # price levels: the Scheduled mode's schedules carry one
        ]
        if service == ServiceID.DC_BPT:
            params += [parameter("BPTChannel", 1), parameter("GeneratorMode", 1)]
        sets.append(cm.ParameterSetType(ParameterSetID=int(mode), Parameter=tuple(params)))
    return tuple(sets)


def parameter_value(pset: cm.ParameterSetType, name: str) -> int | None:
    for p in pset.Parameter:
        if p.Name == name:
            return p.intValue if p.intValue is not None else (p.byteValue or p.shortValue)
    return None


def clamp(x: float, low: float, high: float) -> float:
    return max(low, min(high, x))
