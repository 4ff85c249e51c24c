"""The station: one control loop that binds a backend's hardware to the interlock and charge control.

Every tick :meth:`Station.step` samples the pilot, the emergency stop, the DC output and the mirror
contacts, feeds them to the :class:`~v2gtool.hw.interlock.Interlock`, carries out its commands and
applies the current setpoint through the interlock's limit, the thermal derating and the SoC
discharge floor, in that order. Nothing reaches the contactors or the power module any other way.
Time passes only in :meth:`Station.run` / :meth:`Station.wait_for` through the backend's clock, so
on ``sim`` the whole loop runs in simulated time.

This is the API the session engine drives from the ISO 15118-20 SECC::

    station.step() / station.run(seconds) / station.wait_for(predicate, timeout)
    Wait(station, predicate, timeout)             # wait_for in slices (poll / sleep)
    station.request_close() -> Verdict            # DC_CableCheck starts
    run_cable_check(station, ...)                 # v2gtool.hw.cablecheck
    station.regulate_voltage(v)                   # DC_PreCharge (2 A limit until transfer is enabled)
    station.request_energy_transfer(battery_v)    # PowerDelivery Start
    station.request_current(amps)                 # DC_ChargeLoop (+ charge / - discharge)
    station.session_stop()                        # PowerDelivery Stop / SessionStop
    station.finish() / station.close()            # end of the command: stop actions, devices
"""

from __future__ import annotations

import enum
import logging
import math
import shlex
import subprocess
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import TypeVar

from v2gtool.hw.control import EVSE_SHUTDOWN_REJECTED, SocFloor, ThermalDerating, apply_limit
from v2gtool.hw.cp import CpState
from v2gtool.hw.errors import BackendPartMissing, HardwareError
from v2gtool.hw.events import CpStateChanged, CurrentDerated, DischargeRefused, StopActionRun
from v2gtool.hw.interfaces import DcMeasurement, Hardware, Pole
from v2gtool.hw.interlock import (
    ContactorPhase,
    DriveContactors,
    Interlock,
    RunStopAction,
    Verdict,
    ZeroCurrent,
)
from v2gtool.hw.isolation import IsolationProfile, IsolationResult, IsolationVerdict
from v2gtool.session.events import Event

T = TypeVar("T")

log = logging.getLogger(__name__)

#: A derating change below this many amperes is not reported as an event.
_DERATING_REPORT_STEP_A = 5.0
#: How long :meth:`Station.finish` waits in all (real time) for stop actions still running.
STOP_ACTION_TIMEOUT_S = 10.0


class _Setpoint(enum.Enum):
    OFF = "off"
    VOLTAGE = "voltage"
    CURRENT = "current"


@dataclass
class StationConfig:
    """Loop timing and the charge-management options of one station."""

    isolation: IsolationProfile
    #: Control-loop period; 1 ms suits the 100 ms opening budget with margin.
    tick_s: float = 0.001
    #: Interval of the continuous insulation monitoring while the contactors are closed.
    monitor_interval_s: float = 0.1
    #: The IMD's measuring time: its reading is valid only once the output voltage has held within
    #: ``imd_steady_band_v`` for this long. While the voltage ramps, the Y-capacitance current
    #: C_Y dV/dt looks like leakage (the ramp transients of standards.md 7.1, EVerest#2498), and the
    #: reading needs this long to settle afterwards. Well inside the IMD response time
    #: (:data:`~v2gtool.hw.isolation.IMD_RESPONSE_TIME_S`), so a real fault still trips in time.
    imd_measuring_time_s: float = 3.0
    imd_steady_band_v: float = 5.0
    #: Extra command run on an isolation fault (``--on-fault-exec``), e.g. "systemctl stop evse-charging".
    on_fault_exec: str | None = None
    derating: ThermalDerating | None = None
    soc_floor: SocFloor = field(default_factory=SocFloor)


class Station:
    """The hardware of one EVSE under its interlock; see the module docstring for the API."""

    def __init__(
        self,
        hw: Hardware,
        config: StationConfig,
        interlock: Interlock | None = None,
        listener: Callable[[Event], None] | None = None,
        soc_percent: Callable[[], float] | None = None,
    ) -> None:
        self.hw = hw
        self.clock = hw.clock
        self.config = config
        self.interlock = interlock or Interlock()
        self.events: list[Event] = []
        self.session_stopped = False
        self.cable_check_running = False
        self._listener = listener
        self._soc_percent = soc_percent
        self._cp_state: CpState | None = None
        self._cp_seen = False
        self._setpoint = _Setpoint.OFF
        self._setpoint_value = 0.0
        self._applied_current = 0.0
        self._voltage_ceiling = math.inf
        self._next_monitor = 0.0
        self._monitor_verdict: IsolationVerdict | None = None
        self._output_v: deque[tuple[float, float]] = deque()  # (t, V) over the IMD's measuring time
        self._derating_limit = config.derating.rated_current_a if config.derating else float("inf")
        self._reported_limit = self._derating_limit
        self._discharge_refused = False
        self._last_step: float | None = None
        self._stop_procs: list[tuple[subprocess.Popen[bytes], str]] = []
        self.measurement = DcMeasurement(0.0, 0.0, 0.0)
        self.feedback: dict[Pole, bool] = {pole: False for pole in Pole}

    # -- parts -------------------------------------------------------------------------------------

    def part(self, part: T | None, name: str) -> T:
        """*part*, or a one-line error naming the part the backend lacks."""
        if part is None:
            raise BackendPartMissing(f"the {self.hw.backend} backend has no {name}")
        return part

    @property
    def cp_state(self) -> CpState | None:
        return self._cp_state

    @property
    def applied_current_a(self) -> float:
        """The current setpoint after every limit, as last sent to the power module."""
        return self._applied_current

    @property
    def derating_limit_a(self) -> float:
        """The current magnitude the thermal derating allows now (inf without a derating): what
        the current control holds a setpoint to, whichever its sign."""
        return self._derating_limit

    @property
    def discharge_refused(self) -> bool:
        """The SoC floor holds discharging off (EVSE_Shutdown_Rejected) since the SoC last fell to it."""
        return self._discharge_refused

    @property
    def idle(self) -> bool:
        """Nothing of the station's own is under way: contactors open (no interlock deadline), no
        cable check, no voltage setpoint. What happens next comes from outside (a request, the
        pilot, the emergency stop)."""
        return (
            self.interlock.phase is ContactorPhase.OPEN
            and not self.cable_check_running
            and self._setpoint is not _Setpoint.VOLTAGE
        )

    @property
    def stop_actions_running(self) -> bool:
        """A stop action (``on_fault_exec``) has not exited yet; :meth:`step` reports it once it has."""
        return any(proc.poll() is None for proc, _command in self._stop_procs)

    @property
    def imd_settled(self) -> bool:
        """The IMD's reading is valid: the output voltage held within ``imd_steady_band_v`` over the
        whole measuring time (IEC 61851-23 6.3.1.105 / CC.4.1: judge the settled reading, not a
        ramp transient)."""
        window = self._output_v
        if not window or window[-1][0] - window[0][0] < self.config.imd_measuring_time_s - 1e-9:
            return False
        volts = [v for _, v in window]
        return max(volts) - min(volts) <= self.config.imd_steady_band_v

    # -- requests (all through the interlock) --------------------------------------------------------

    def request_close(self) -> Verdict:
        self.step()
        return self._after(self.interlock.request_close(self.clock.now()))

    def request_energy_transfer(self, battery_v: float) -> Verdict:
        self.step()
        return self._after(self.interlock.request_energy_transfer(self.clock.now(), battery_v))

    def reset(self) -> Verdict:
        self.step()
        return self._after(self.interlock.reset(self.clock.now()))

    def report_cable_check(self, result: IsolationResult) -> None:
        """The verdict of a finished cable check (a fault trips and runs the stop action)."""
        self.interlock.on_isolation_result(self.clock.now(), result, cable_check=True)
        self._after(None)

    def session_stop(self) -> None:
        self.interlock.on_session_stop(self.clock.now())
        self._after(None)

    def regulate_voltage(self, volts: float) -> None:
        """Voltage control (cable check, precharge, weld check) within the interlock's current limit."""
        self._setpoint, self._setpoint_value = _Setpoint.VOLTAGE, volts

    def request_current(self, amps: float, max_voltage: float = math.inf) -> None:
        """Current control: + charges, - discharges; limited by interlock, derating and SoC floor,
        and a charge by *max_voltage* at the output (the vehicle's maximum, ISO 15118-20
        EVMaximumVoltage, within the station's)."""
        self._setpoint, self._setpoint_value = _Setpoint.CURRENT, amps
        self._voltage_ceiling = max_voltage

    def power_off(self) -> None:
        self._setpoint, self._setpoint_value = _Setpoint.OFF, 0.0

    # -- the loop ------------------------------------------------------------------------------------

    def step(self) -> None:
        """One tick: sample, decide, act."""
        now = self.clock.now()
        dt = 0.0 if self._last_step is None else now - self._last_step
        self._last_step = now
        interlock = self.interlock
        if self.hw.control_pilot is not None:
            reading = self.hw.control_pilot.read()
            state = reading.state
            if state != self._cp_state or not self._cp_seen:
                self._emit(
                    CpStateChanged(
                        t=now,
                        state=state,
                        previous=self._cp_state,
                        high_v=reading.high_v,
                        low_v=reading.low_v,
                        duty_percent=reading.duty_percent,
                    )
                )
                self._cp_state, self._cp_seen = state, True
                interlock.on_cp_state(now, state)
        if self.hw.emergency_stop is not None:
            interlock.on_emergency_stop(now, self.hw.emergency_stop.pressed())
        if self.hw.power_module is not None:
            self.measurement = self.hw.power_module.measure()
        if self.hw.contactors is not None:
            self.feedback = self.hw.contactors.feedback()
        interlock.on_measurement(now, self.measurement, self.feedback)
        self._monitor_insulation(now)
        self._carry_out()
        self._update_derating(now, dt)
        self._apply_setpoint(now)
        self._reap_stop_actions(now)

    def run(self, seconds: float) -> None:
        """Run the loop for *seconds* of (simulated or real) time."""
        self.wait_for(lambda: False, seconds)

    def wait_for(self, predicate: Callable[[], bool], timeout: float) -> bool:
        """Step until *predicate* holds (``True``) or *timeout* seconds pass (``False``)."""
        return Wait(self, predicate, timeout).run()

    def finish(self, timeout: float = STOP_ACTION_TIMEOUT_S) -> None:
        """Wait for the stop actions still running, *timeout* seconds of real time in all, kill
        those left, and report each (:class:`StopActionRun`). Safe to call more than once."""
        deadline = time.monotonic() + timeout
        killed = set()
        for proc, _command in self._stop_procs:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                killed.add(proc.pid)
        self._reap_stop_actions(self.clock.now(), killed=frozenset(killed))

    def close(self) -> None:
        """The end of the command: :meth:`finish`, then release the backend's devices (the GPIO
        line request, the serial port). Safe to call more than once; step no more after it."""
        self.finish()
        self.hw.release()

    def __enter__(self) -> Station:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- internals -------------------------------------------------------------------------------------

    def _after(self, verdict: T) -> T:
        self._carry_out()
        return verdict

    def _emit(self, event: Event) -> None:
        self.events.append(event)
        if self._listener is not None:
            self._listener(event)

    def _carry_out(self) -> None:
        for event in self.interlock.take_events():
            self._emit(event)
        for command in self.interlock.take_commands():
            if isinstance(command, ZeroCurrent):
                self.power_off()
                self._apply_setpoint(self.clock.now())
            elif isinstance(command, DriveContactors):
                self.part(self.hw.contactors, "contactors").drive(command.closed)
            elif isinstance(command, RunStopAction):
                self._run_stop_action()

    def _run_stop_action(self) -> None:
        """Rule 5: stop the charging session, and run ``on_fault_exec`` without blocking the loop."""
        self.session_stopped = True
        command = self.config.on_fault_exec
        if not command:
            self._emit(
                StopActionRun(t=self.clock.now(), command="", returncode=None, detail="session stopped")
            )
            return
        try:
            # What it prints goes to our stderr (descriptor 2, whatever sys.stderr is): our stdout
            # carries the command's --json lines.
            proc = subprocess.Popen(shlex.split(command), stdin=subprocess.DEVNULL, stdout=2)
        except (OSError, ValueError) as exc:
            self._emit(
                StopActionRun(t=self.clock.now(), command=command, returncode=None, detail=f"not run: {exc}")
            )
            return
        self._stop_procs.append((proc, command))

    def _reap_stop_actions(self, now: float, *, killed: frozenset[int] = frozenset()) -> None:
        """Report the stop actions that exited, and the ones :meth:`finish` *killed* (process ids)."""
        running = []
        for proc, command in self._stop_procs:
            rc = proc.poll()
            if rc is None:
                running.append((proc, command))
            else:
                detail = "killed: still running at the end of the command" if proc.pid in killed else "session stopped"
                self._emit(StopActionRun(t=now, command=command, returncode=rc, detail=detail))
        self._stop_procs = running

    def _monitor_insulation(self, now: float) -> None:
        """Continuous insulation monitoring while closed (IEC 61851-23 6.3.1.105), not during the check.

        Every interval the output voltage joins the IMD's measuring window; the reading is judged
        only when it is settled (:attr:`imd_settled`), and the last verdict holds meanwhile.
        """
        imd = self.hw.isolation_monitor
        if imd is None or now < self._next_monitor - 1e-9:
            return
        self._next_monitor = now + self.config.monitor_interval_s
        window = self._output_v
        window.append((now, self.measurement.cable_v))
        while len(window) > 2 and window[1][0] <= now - self.config.imd_measuring_time_s + 1e-9:
            window.popleft()
        if self.cable_check_running or self.interlock.phase is not ContactorPhase.CLOSED:
            self._monitor_verdict = None
            return
        if not self.imd_settled:
            return
        resistance = imd.resistance_ohm()
        if resistance is None:
            return
        result = self.config.isolation.evaluate(resistance)
        if result.verdict is not self._monitor_verdict:
            self._monitor_verdict = result.verdict
            self.interlock.on_isolation_result(now, result, cable_check=False)

    def _update_derating(self, now: float, dt: float) -> None:
        derating, sensor = self.config.derating, self.hw.inlet_temperature
        if derating is None or dt <= 0:
            return
        if sensor is None:
            raise BackendPartMissing(
                f"the {self.hw.backend} backend has no inlet temperature sensor for derating"
            )
        hottest = max(sensor.temperatures_c())
        self._derating_limit = derating.update(hottest, dt)
        if abs(self._derating_limit - self._reported_limit) >= _DERATING_REPORT_STEP_A:
            self._reported_limit = self._derating_limit
            self._emit(CurrentDerated(t=now, limit_a=self._derating_limit, inlet_c=hottest))

    def _apply_setpoint(self, now: float) -> None:
        module = self.hw.power_module
        if module is None:
            return
        limit = self.interlock.current_limit_a()
        if self._setpoint is _Setpoint.OFF:
            module.off()
            self._applied_current = 0.0
        elif self._setpoint is _Setpoint.VOLTAGE:
            # Cable check, precharge and weld check all run at the cable-check limit; while the
            # contactors switch, nothing may flow.
            switching = self.interlock.phase not in (ContactorPhase.OPEN, ContactorPhase.CLOSED)
            cable_check_a = self.interlock.config.cable_check_current_a
            module.regulate_voltage(self._setpoint_value, 0.0 if switching else cable_check_a)
        else:
            amps = apply_limit(apply_limit(self._setpoint_value, limit), self._derating_limit)
            if amps < 0 and not self._discharge_allowed(now):
                amps = 0.0
            self._applied_current = amps
            module.regulate_current(amps, self._voltage_ceiling)

    def _discharge_allowed(self, now: float) -> bool:
        """The SoC floor's verdict; a refusal is reported once per fall to the floor, and re-armed
        when the SoC is above it again (the vehicle charged in between)."""
        if self._soc_percent is None:
            raise HardwareError("discharge needs the vehicle's state of charge, and none is known")
        soc = self._soc_percent()
        if self.config.soc_floor.allows_discharge(soc):
            self._discharge_refused = False
            return True
        if self._discharge_refused:
            return False
        self._discharge_refused = True
        log.warning(
            "%s: discharge refused at SoC %.1f %% (floor %.1f %%)",
            EVSE_SHUTDOWN_REJECTED,
            soc,
            self.config.soc_floor.floor_percent,
        )
        self._emit(
            DischargeRefused(
                t=now,
                code=EVSE_SHUTDOWN_REJECTED,
                soc_percent=soc,
                floor_percent=self.config.soc_floor.floor_percent,
            )
        )
        return False


class Wait:
    """One :meth:`Station.wait_for` that its caller can run in slices, tick for tick the same loop:
    :meth:`poll` runs one tick (a :meth:`Station.step`) and says whether the wait is over,
    :meth:`sleep` lets the tick's time pass, :meth:`tick` does both. A cable check runs so across the EV's
    DC_CableCheckReq polls (:class:`v2gtool.hw.cablecheck.CableCheckRun`)."""

    def __init__(self, station: Station, predicate: Callable[[], bool], timeout: float) -> None:
        self.station = station
        self.predicate = predicate
        self.deadline = station.clock.now() + timeout

    def poll(self) -> bool | None:
        """Step once: ``True`` when the predicate holds, ``False`` when the timeout passed, else None."""
        self.station.step()
        if self.predicate():
            return True
        if self.station.clock.now() >= self.deadline - 1e-9:
            return False
        return None

    def sleep(self) -> None:
        """Let one control tick pass (less at the deadline)."""
        clock = self.station.clock
        clock.sleep(min(self.station.config.tick_s, self.deadline - clock.now()))

    def tick(self) -> bool | None:
        """:meth:`poll`, then :meth:`sleep` unless the wait is over."""
        done = self.poll()
        if done is None:
            self.sleep()
        return done

    def run(self) -> bool:
        """The whole wait at once: what :meth:`Station.wait_for` returns."""
        while (done := self.tick()) is None:
            pass
        return done
