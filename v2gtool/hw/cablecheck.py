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

A check that ends early ends the same way: once the caller's *stop* predicate holds (a SIGINT or
SIGTERM the command remembered) it ramps down below 60 V and the contactors open through the
interlock at zero current (standards.md 7.1 and 7.3); an error on the way opens them too, best
effort (:func:`open_best_effort`), before it propagates. After a failed or faulty check the
contactors are open when :func:`run_cable_check` returns. :func:`open_contactors`,
:func:`ramp_down_and_open` and :func:`opened_on_error` serve the other commands that close them.
"""

from __future__ import annotations

import enum
import logging
import math
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TypeVar

from v2gtool.hw.errors import ContactorStuckError, HardwareError, InterlockRefusedError, InterlockTrippedError
from v2gtool.hw.interfaces import IsolationMonitor
from v2gtool.hw.interlock import ContactorPhase
from v2gtool.hw.isolation import (
    IMD_RESPONSE_TIME_S,
    SAFE_OUTPUT_V,
    IsolationProfile,
    IsolationResult,
    cable_check_voltage,
)
from v2gtool.hw.station import Station, Wait

T = TypeVar("T")

log = logging.getLogger(__name__)

#: Longest wait for the output to fall below 60 V (the ramp down, and the discharge before closing).
RAMP_TIMEOUT_S = 10.0
#: Longest wait for the interlock to open the contactors after a session stop: ten times its
#: 100 ms opening budget (IEC 61851-1 Table A.6, unverified), so a slow or stuck contact is seen.
OPEN_TIMEOUT_S = 1.0


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
    ramp_timeout_s: float = RAMP_TIMEOUT_S
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
    #: The caller's stop predicate ended the check (``failure`` is then "interrupted", unless the
    #: check had failed before it: a stop in the ramp down after a failure).
    interrupted: bool = False


class _Interrupted(Exception):
    """The caller's stop predicate held: the check ends at this tick."""


def never() -> bool:
    """The stop predicate of a run nothing interrupts."""
    return False


class _Tracer:
    def __init__(
        self, station: Station, report: CableCheckReport, interval: float, stop: Callable[[], bool]
    ) -> None:
        self.station, self.report, self.interval, self.stop = station, report, interval, stop
        self.phase = CablePhase.CLOSE
        self._next = station.clock.now()

    def __call__(self) -> bool:
        """Record a trace sample when one is due; abort when the interlock opened the contactors, or
        (once) when the caller's stop predicate holds. A stop during the ramp down lets it go on: that
        is what the stop asks for (below 60 V, then open: standards.md 7.1), and the check then ends
        interrupted."""
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
        if not self.report.interrupted and self.stop():
            self.report.interrupted = True
            if self.phase is not CablePhase.RAMP_DOWN:
                raise _Interrupted
            self.report.failure = self.report.failure or "interrupted"
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


#: A procedure of the station that waits: it yields each :class:`Wait` and is sent its outcome
#: (what :meth:`Station.wait_for` returns), so it runs at once (:func:`run_waits`) or in slices
#: of the caller's time (:class:`CableCheckRun`), tick for tick the same.
Waits = Generator[Wait, bool, T]


def run_waits(procedure: Waits[T]) -> T:
    """Run *procedure* to its end, each of its waits at once."""
    try:
        wait = next(procedure)
        while True:
            wait = _resume(procedure, wait, wait.run)
    except StopIteration as end:
        result: T = end.value
        return result


def _resume(procedure: Waits[T], wait: Wait, outcome: Callable[[], bool | None]) -> Wait:
    """Run *outcome* of the *procedure*'s *wait*: the same wait while it goes on (None), else the
    procedure's next wait, sent the outcome or thrown what the wait raised (a trip the trace saw,
    a device error), as if :meth:`Station.wait_for` had raised it there."""
    try:
        done = outcome()
    except BaseException as exc:
        return procedure.throw(exc)
    return wait if done is None else procedure.send(done)


def run_cable_check(
    station: Station, settings: CableCheckSettings, stop: Callable[[], bool] = never
) -> CableCheckReport:
    """Run the cable check on *station* and report the verdict to its interlock.

    Raises :class:`InterlockRefusedError` when the contactors may not close, :class:`InterlockTrippedError`
    when a rule opens them during the check, :class:`ContactorStuckError` on a stuck contactor; any
    error opens the contactors first, best effort (:func:`open_best_effort`). On success the
    contactors stay closed for precharge; the report holds the verdict and the trace. After a
    failure or a fault they are open (or "Contactor Stuck" latched) on return.

    *stop* is polled every tick: once it holds, the check ends there, the output ramps down below
    60 V (standards.md 7.1: nothing is reported while the test voltage is on) and the contactors
    open through the interlock at zero current (standards.md 7.3); the report is ``interrupted``.
    """
    return run_waits(_cable_check(station, settings, stop))


class CableCheckRun:
    """:func:`run_cable_check` in slices of the caller's time: the SECC starts it on the first
    DC_CableCheckReq and answers the EV's polls with EVSEProcessing Ongoing while it runs
    (IEC 61851-23 CC.4.1; the EV polls within V2G_EVCC_CableCheck_Timeout, standards.md 4.4), and
    the check's simulated seconds pass with the EV's, not at once."""

    def __init__(self, station: Station, settings: CableCheckSettings, stop: Callable[[], bool] = never) -> None:
        self._clock = station.clock
        self._stopping = False
        self._procedure = _cable_check(station, settings, lambda: self._stopping or stop())
        self._wait: Wait | None = None
        self.report: CableCheckReport | None = None

    @property
    def started(self) -> bool:
        return self._wait is not None or self.report is not None

    def advance(self, until: float) -> CableCheckReport | None:
        """Run the check up to the time *until* (its last tick may end up to one tick later); the
        report once it is done. Errors are raised as :func:`run_cable_check` raises them."""
        try:
            if self._wait is None:
                self._wait = next(self._procedure)
            while self.report is None and self._clock.now() < until - 1e-9:
                self._wait = _resume(self._procedure, self._wait, self._wait.tick)
        except StopIteration as end:
            self.report = end.value
        return self.report

    def stop(self) -> CableCheckReport | None:
        """End a started check now as its *stop* would (ramp down below 60 V, open at zero current)."""
        if not self.started:
            return None
        self._stopping = True
        return self.advance(math.inf)


def _cable_check(
    station: Station, settings: CableCheckSettings, stop: Callable[[], bool]
) -> Waits[CableCheckReport]:
    """:func:`run_cable_check` as a procedure of waits."""
    imd = station.part(station.hw.isolation_monitor, "insulation monitoring device")
    station.part(station.hw.power_module, "DC power module")
    profile = station.config.isolation
    clock = station.clock
    report = CableCheckReport(
        profile, cable_check_voltage(settings.ev_max_voltage_v, settings.evse_max_voltage_v), clock.now()
    )
    trace = _Tracer(station, report, settings.trace_interval_s, stop)
    station.cable_check_running = True
    try:
        with opened_on_error(station, settings.ramp_timeout_s):
            try:
                yield from _close_and_measure(station, imd, settings, report, trace)
            except _Interrupted:
                report.failure = "interrupted"
            if trace.phase is not CablePhase.CLOSE:  # closed: the station may have a voltage applied
                trace.phase = CablePhase.RAMP_DOWN
                down_from = clock.now()
                ramp_down = _discharging(station, trace, lambda: station.measurement.cable_v, settings.ramp_timeout_s)
                if not (yield from ramp_down):
                    report.failure = report.failure or f"output did not fall below {SAFE_OUTPUT_V:.0f} V"
                report.ramp_down_s = clock.now() - down_from
                trace.record(sampled=False)
    finally:
        station.cable_check_running = False
    report.finished_at = clock.now()
    if report.failure is None and report.result is not None:
        station.report_cable_check(report.result)  # a fault trips and runs the stop action (rule 5)
    if report.failure is not None or station.interlock.phase is not ContactorPhase.CLOSED:
        yield from _opening(station, OPEN_TIMEOUT_S)
    return report


def _close_and_measure(
    station: Station,
    imd: IsolationMonitor,
    settings: CableCheckSettings,
    report: CableCheckReport,
    trace: _Tracer,
) -> Waits[None]:
    """Steps 1 to 4: discharge, close, IMD self-test, then :func:`_measure`."""
    # A session that just ended may have left the DC link charged: the interlock refuses to close
    # onto a live output, so discharge it first.
    if not (yield from _discharging(station, trace, lambda: station.measurement.link_v, settings.ramp_timeout_s)):
        raise InterlockRefusedError(
            f"output did not fall below {SAFE_OUTPUT_V:.0f} V before closing "
            f"(link at {station.measurement.link_v:.1f} V after {settings.ramp_timeout_s:.0f} s)"
        )
    verdict = station.request_close()
    if not verdict.allowed:
        raise InterlockRefusedError(f"contactors may not close: {verdict}")
    closed = yield Wait(station, lambda: trace() or station.interlock.phase is ContactorPhase.CLOSED, 1.0)
    if not closed:
        raise HardwareError("contactors did not report closed within 1 s")

    trace.phase = CablePhase.SELF_TEST
    imd.start_self_test()
    yield Wait(station, lambda: trace() or imd.self_test_result() is not None, settings.self_test_timeout_s)
    report.self_test_passed = imd.self_test_result()
    if not report.self_test_passed:
        report.failure = "IMD self-test failed" if report.self_test_passed is False else "IMD self-test timed out"
    else:
        yield from _measure(station, settings, report, trace)


def _discharging(
    station: Station, watch: Callable[[], bool], voltage: Callable[[], float], timeout: float
) -> Waits[bool]:
    """Power module off (active discharge) until *voltage* is below 60 V; False when *timeout* passed
    first, or *watch* (polled every tick, e.g. the trace) ended the wait."""
    station.power_off()
    ended = yield Wait(station, lambda: watch() or voltage() < SAFE_OUTPUT_V, timeout)
    return ended and voltage() < SAFE_OUTPUT_V


def _opening(station: Station, timeout_s: float) -> Waits[bool]:
    """:func:`open_contactors` as a procedure of waits."""
    interlock = station.interlock
    station.session_stop()
    yield Wait(station, lambda: interlock.phase is ContactorPhase.OPEN or interlock.stuck is not None, timeout_s)
    return interlock.phase is ContactorPhase.OPEN


def open_contactors(station: Station, timeout_s: float = OPEN_TIMEOUT_S) -> bool:
    """Open K1/K2 through the interlock: a session stop (rule 3: the current to zero, then the coils
    released, standards.md 7.3), then step until they are open or "Contactor Stuck" latched.

    Nothing happens when they are open already; a trip already under way keeps its condition.
    True when they are open.
    """
    return run_waits(_opening(station, timeout_s))


def ramp_down_and_open(station: Station, ramp_timeout_s: float = RAMP_TIMEOUT_S) -> bool:
    """:func:`open_contactors`, first ramping the output below 60 V where the station applies the
    voltage itself (contactors closed, no energy transfer: the cable check or the precharge;
    standards.md 7.1), for at most *ramp_timeout_s*. With energy transfer the battery holds the
    voltage: only the current goes to zero (standards.md 7.3). True when the contactors are open."""
    interlock = station.interlock
    if interlock.phase is ContactorPhase.CLOSED and not interlock.energy_transfer:
        run_waits(
            _discharging(
                station,
                lambda: interlock.phase is not ContactorPhase.CLOSED,
                lambda: station.measurement.cable_v,
                ramp_timeout_s,
            )
        )
    return open_contactors(station)


def open_best_effort(station: Station, ramp_timeout_s: float = RAMP_TIMEOUT_S) -> bool:
    """:func:`ramp_down_and_open` after an error, as far as the hardware lets it: never raises.

    An error on the way (a device that failed once may answer again) is logged and the attempt
    repeated every control tick until *ramp_timeout_s* plus :data:`OPEN_TIMEOUT_S` have passed.
    Still through the interlock (DESIGN.md rule 6): the coils are never driven around it.
    True when the contactors are open.
    """
    clock = station.clock
    deadline = clock.now() + ramp_timeout_s + OPEN_TIMEOUT_S
    while True:
        try:
            return ramp_down_and_open(station, max(0.0, deadline - OPEN_TIMEOUT_S - clock.now()))
        except Exception as exc:  # best effort: whatever failed, keep trying to open
            log.warning("opening the contactors after an error: %s", exc)
        if clock.now() >= deadline - 1e-9:
            return False
        clock.sleep(station.config.tick_s)


@contextmanager
def opened_on_error(station: Station, ramp_timeout_s: float = RAMP_TIMEOUT_S) -> Iterator[None]:
    """An error inside leaves with the contactors opened first (:func:`open_best_effort`), so a
    failing device or a refused step does not end the process with K1/K2 closed."""
    try:
        yield
    except Exception:
        open_best_effort(station, ramp_timeout_s)
        raise


def _measure(
    station: Station, settings: CableCheckSettings, report: CableCheckReport, trace: _Tracer
) -> Waits[None]:
    """Ramp up, let the IMD settle (the grace period, and its reading settled), take the samples and
    evaluate the lowest one."""
    trace.phase = CablePhase.RAMP_UP
    target = report.test_voltage_v
    station.regulate_voltage(target)
    reached = yield Wait(
        station,
        lambda: trace() or abs(station.measurement.cable_v - target) <= settings.ramp_tolerance * target,
        settings.ramp_timeout_s,
    )
    if not reached:
        report.failure = f"output did not reach the test voltage {target:.0f} V"
        return
    trace.phase = CablePhase.SETTLE
    yield Wait(station, trace, settings.settle_s)
    if not (yield Wait(station, lambda: trace() or station.imd_settled, IMD_RESPONSE_TIME_S)):
        report.failure = f"the IMD reading did not settle within {IMD_RESPONSE_TIME_S:.0f} s"
        return
    trace.phase = CablePhase.SAMPLE
    readings: list[float] = []
    for index in range(settings.samples):
        if index:
            yield Wait(station, trace, settings.sample_interval_s)
        resistance = trace.record(sampled=True)
        if resistance is not None:
            readings.append(resistance)
    if not readings:
        report.failure = "the IMD gave no valid reading"
        return
    report.result = station.config.isolation.evaluate(min(readings))
