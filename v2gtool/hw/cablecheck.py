"""The IEC 61851-23 cable check (Annex CC): the insulation test before energy transfer.

Sequence (IEC 61851-23:2023 Annex CC as implemented by EVerest's EvseManager, standards.md 7.1):

1. the output is below 60 V (discharged first if a session before left it live); the contactors
   close through the interlock;
2. the IMD self-test (mandatory in the cable check since the 2023 edition);
3. ramp to the test voltage of Formula CC.1 with the current limited to 2 A;
4. a grace period for the ramp transients of the IMD (EVerest/EVerest#2498), lasting at least until
   the IMD's reading has settled (the station's IMD measuring time at a steady test voltage, within
   the IMD response time), then N samples; the verdict uses the lowest sample (the conservative
   reading of settled values);
5. ramp down below 60 V, and only then report the verdict to the interlock.

Every sample of the output voltage and the IMD reading is kept as the trace.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field

from v2gtool.hw.errors import ContactorStuckError, HardwareError, InterlockRefusedError, InterlockTrippedError
from v2gtool.hw.interlock import ContactorPhase
from v2gtool.hw.isolation import (
    IMD_RESPONSE_TIME_S,
    SAFE_OUTPUT_V,
    IsolationProfile,
    IsolationResult,
    cable_check_voltage,
)
from v2gtool.hw.station import Station


class CablePhase(enum.Enum):
    CLOSE = "close"
    SELF_TEST = "self-test"
    RAMP_UP = "ramp-up"
    SETTLE = "settle"
    SAMPLE = "sample"
    RAMP_DOWN = "ramp-down"


@dataclass(frozen=True)
class TraceSample:
    t: float
    phase: CablePhase
    voltage_v: float
    resistance_ohm: float | None
    sampled: bool = False


@dataclass(frozen=True)
class CableCheckSettings:
    ev_max_voltage_v: float
    evse_max_voltage_v: float
    samples: int = 10
    sample_interval_s: float = 1.0
    settle_s: float = 2.0
    trace_interval_s: float = 0.1
    self_test_timeout_s: float = 10.0
    ramp_timeout_s: float = 10.0
    #: The ramp is done when the output is within this fraction of the test voltage.
    ramp_tolerance: float = 0.02


@dataclass
class CableCheckReport:
    """What the cable check did and found."""

    profile: IsolationProfile
    test_voltage_v: float
    started_at: float
    self_test_passed: bool | None = None
    result: IsolationResult | None = None
    ramp_down_s: float | None = None
    finished_at: float | None = None
    trace: list[TraceSample] = field(default_factory=list)
    failure: str | None = None


class _Tracer:
    def __init__(self, station: Station, report: CableCheckReport, interval: float) -> None:
        self.station, self.report, self.interval = station, report, interval
        self.phase = CablePhase.CLOSE
        self._next = station.clock.now()

    def __call__(self) -> bool:
        """Record a trace sample when one is due; also abort when the interlock opened the contactors."""
        now = self.station.clock.now()
        if now >= self._next - 1e-9:
            self._next = now + self.interval
            self.record(sampled=False)
        if self.station.interlock.stuck is not None:
            raise ContactorStuckError(
                f"cable check aborted: Contactor Stuck on {self.station.interlock.stuck.pole.name}"
            )
        if self.phase is not CablePhase.CLOSE and self.station.interlock.phase is not ContactorPhase.CLOSED:
            condition = self.station.interlock.trip_condition
            raise InterlockTrippedError(
                f"cable check aborted in {self.phase.value}: {condition.name if condition else 'opened'}"
            )
        return False

    def record(self, *, sampled: bool) -> float | None:
        imd = self.station.hw.isolation_monitor
        resistance = imd.resistance_ohm() if imd is not None else None
        self.report.trace.append(
            TraceSample(
                self.station.clock.now(), self.phase, self.station.measurement.cable_v, resistance, sampled
            )
        )
        return resistance


def run_cable_check(station: Station, settings: CableCheckSettings) -> CableCheckReport:
    """Run the cable check on *station* and report the verdict to its interlock.

    Raises :class:`InterlockRefusedError` when the contactors may not close, :class:`InterlockTrippedError`
    when a rule opens them during the check, :class:`ContactorStuckError` on a stuck contactor. On
    success the contactors stay closed for precharge; the report holds the verdict and the trace.
    """
    imd = station.part(station.hw.isolation_monitor, "insulation monitoring device")
    station.part(station.hw.power_module, "DC power module")
    profile = station.config.isolation
    clock = station.clock
    report = CableCheckReport(
        profile, cable_check_voltage(settings.ev_max_voltage_v, settings.evse_max_voltage_v), clock.now()
    )
    trace = _Tracer(station, report, settings.trace_interval_s)
    station.cable_check_running = True
    try:
        # A session that just ended may have left the DC link charged: the interlock refuses to close
        # onto a live output, so discharge it first.
        if not _discharge(station, trace, lambda: station.measurement.link_v, settings.ramp_timeout_s):
            raise InterlockRefusedError(
                f"output did not fall below {SAFE_OUTPUT_V:.0f} V before closing "
                f"(link at {station.measurement.link_v:.1f} V after {settings.ramp_timeout_s:.0f} s)"
            )
        verdict = station.request_close()
        if not verdict.allowed:
            raise InterlockRefusedError(f"contactors may not close: {verdict}")
        closed = station.wait_for(
            lambda: trace() or station.interlock.phase is ContactorPhase.CLOSED, timeout=1.0
        )
        if not closed:
            raise HardwareError("contactors did not report closed within 1 s")

        trace.phase = CablePhase.SELF_TEST
        imd.start_self_test()
        station.wait_for(lambda: trace() or imd.self_test_result() is not None, settings.self_test_timeout_s)
        report.self_test_passed = imd.self_test_result()
        if not report.self_test_passed:
            report.failure = (
                "IMD self-test failed" if report.self_test_passed is False else "IMD self-test timed out"
            )
        else:
            _measure(station, settings, report, trace)
        trace.phase = CablePhase.RAMP_DOWN
        down_from = clock.now()
        if not _discharge(station, trace, lambda: station.measurement.cable_v, settings.ramp_timeout_s):
            report.failure = report.failure or f"output did not fall below {SAFE_OUTPUT_V:.0f} V"
        report.ramp_down_s = clock.now() - down_from
        trace.record(sampled=False)
    finally:
        station.cable_check_running = False
    report.finished_at = clock.now()
    if report.failure is not None:
        station.session_stop()
    elif report.result is not None:
        station.report_cable_check(report.result)
    return report


def _discharge(station: Station, trace: _Tracer, voltage: Callable[[], float], timeout: float) -> bool:
    """Power module off (active discharge) until *voltage* is below 60 V; False when *timeout* passed."""
    station.power_off()
    return station.wait_for(lambda: trace() or voltage() < SAFE_OUTPUT_V, timeout)


def _measure(
    station: Station, settings: CableCheckSettings, report: CableCheckReport, trace: _Tracer
) -> None:
    """Ramp up, let the IMD settle (the grace period, and its reading settled), take the samples and
    evaluate the lowest one."""
    trace.phase = CablePhase.RAMP_UP
    target = report.test_voltage_v
    station.regulate_voltage(target)
    reached = station.wait_for(
        lambda: trace() or abs(station.measurement.cable_v - target) <= settings.ramp_tolerance * target,
        settings.ramp_timeout_s,
    )
    if not reached:
        report.failure = f"output did not reach the test voltage {target:.0f} V"
        return
    trace.phase = CablePhase.SETTLE
    station.wait_for(trace, settings.settle_s)
    if not station.wait_for(lambda: trace() or station.imd_settled, IMD_RESPONSE_TIME_S):
        report.failure = f"the IMD reading did not settle within {IMD_RESPONSE_TIME_S:.0f} s"
        return
    trace.phase = CablePhase.SAMPLE
    readings: list[float] = []
    for index in range(settings.samples):
        if index:
            station.wait_for(trace, settings.sample_interval_s)
        resistance = trace.record(sampled=True)
        if resistance is not None:
            readings.append(resistance)
    if not readings:
        report.failure = "the IMD gave no valid reading"
        return
    report.result = station.config.isolation.evaluate(min(readings))
