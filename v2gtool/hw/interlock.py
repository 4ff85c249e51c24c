"""The safety interlock: the one place that decides when the DC contactors may close or must open.

It is a sans-IO core (DESIGN.md rules 1 and 6): it takes observations with a clock reading
(``on_cp_state``, ``on_isolation_result``, ``on_emergency_stop``, ``on_session_stop``,
``on_measurement``), the pilot's readings (``on_pilot_reading``) and requests (``request_close``,
``request_energy_transfer``, ``reset``), and answers with :class:`Verdict` values, :data:`Command`
values for the hardware and typed events. :class:`v2gtool.hw.station.Station` carries the commands
out; the session engine and the commands drive the station. Nothing here sleeps or touches a device,
so every path is tested in simulated time.

The rules follow IEC 61851-23 Annex CC (cable check before energy transfer) rather than the
shorter "close only after a cable check" wording, since the cable check itself needs the contactors
closed (shared/spec/standards.md 7.1):

1. **Close** (for the cable check) only in CP state C or D, with no emergency stop, no
   "Contactor Stuck" latch, no isolation fault of this plug-in, the output below 60 V, and a
   passed CP diode check since the vehicle was plugged in (IEC 61851-1 Table A.4 note: at least
   once before the supply switch closes, standards.md 6.3). The diode check needs the PWM on, so
   it is judged on the pilot's readings (``on_pilot_reading``); where only the CP state is
   reported (``on_cp_state``: a state is invalid when its reading failed the check) there is
   none to judge.
2. **Energy transfer** (current beyond the cable-check limit of 2 A) only with the contactors
   closed, CP in C or D, a passed cable check in this C/D period, no emergency stop, and the DC
   link precharged to within tolerance of the battery voltage (standards.md 7.2, tolerance
   *unverified*, 20 V default).
3. **Open** on CP leaving C/D, an isolation fault, an emergency stop or a session stop: first the
   current is commanded to zero, and the coils are released once ``|I|`` is near zero or when the
   budget runs out, so the contacts are open within ``open_budget_s`` (100 ms after CP leaves C/D:
   IEC 61851-1 Table A.6, *unverified*, standards.md 6.3).
4. A feedback (mirror-contact) state that disagrees with the command once the contactor's
   operating time has passed, i.e. a weld, a contact stuck open or a broken feedback, raises
   "Contactor Stuck", opens what can be opened, and latches until :meth:`Interlock.reset`, which
   succeeds only when the feedback shows both contacts open.
5. On an isolation fault the configured stop action runs (:class:`RunStopAction`).

Contactors found closed at the first sample (left so by an earlier process) are opened like on a
session stop, so every process starts from the safe state; still closed after their opening time and
the feedback margin (a weld, or a broken feedback: rule 4), they latch "Contactor Stuck".
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

from v2gtool.hw.cp import CpReading, CpState
from v2gtool.hw.events import (
    ContactorsClosed,
    ContactorsClosing,
    ContactorsOpened,
    ContactorsOpening,
    ContactorStuck,
    EmergencyStopChanged,
    EnergyTransferEnabled,
    InterlockRefused,
    InterlockReset,
    InterlockTripped,
    IsolationFault,
    IsolationWarning,
)
from v2gtool.hw.interfaces import DcMeasurement, Pole
from v2gtool.hw.isolation import SAFE_OUTPUT_V, IsolationResult, IsolationVerdict
from v2gtool.session.events import Event


class Condition(enum.Enum):
    """An interlock rule: why a request is refused or why the contactors open."""

    CP_NOT_C_OR_D = "CP state is not C or D (IEC 61851-1 Table A.3)"
    DIODE_CHECK_NOT_PASSED = "no passed CP diode check before closing (IEC 61851-1 Table A.4 note)"
    EMERGENCY_STOP = "emergency stop pressed"
    CONTACTOR_STUCK = "Contactor Stuck latched (weld or feedback mismatch) until a deliberate reset"
    ISOLATION_FAULT = "isolation fault in this plug-in (IEC 61851-23 6.3.1.105)"
    OUTPUT_LIVE = "output not below 60 V before closing (IEC 61851-23 CC.4.1)"
    CABLE_CHECK_NOT_PASSED = "no passed cable check in this CP C/D period (IEC 61851-23 Annex CC)"
    PRECHARGE_MISMATCH = "DC link not precharged to within tolerance of the battery voltage"
    CONTACTORS_NOT_CLOSED = "contactors are not closed"
    CONTACTORS_BUSY = "contactors are switching"
    SESSION_STOP = "session stop"


class ContactorPhase(enum.Enum):
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"
    RAMPING_DOWN = "ramping down"  # tripped, waiting for zero current before releasing the coils
    OPENING = "opening"


@dataclass(frozen=True)
class ZeroCurrent:
    """Command: ramp the power module's current to zero and stop converting."""


@dataclass(frozen=True)
class DriveContactors:
    """Command: energise (``closed``) or release both contactor coils."""

    closed: bool


@dataclass(frozen=True)
class RunStopAction:
    """Command: run the configured stop action (isolation fault)."""

    condition: Condition


Command = ZeroCurrent | DriveContactors | RunStopAction


@dataclass(frozen=True)
class Verdict:
    """The answer to a request: allowed, or refused by the named :class:`Condition`."""

    allowed: bool
    condition: Condition | None = None
    detail: str = ""

    def __str__(self) -> str:
        if self.allowed:
            return "allowed"
        assert self.condition is not None
        return f"{self.condition.name}: {self.condition.value}" + (f" ({self.detail})" if self.detail else "")


ALLOWED = Verdict(True)


@dataclass(frozen=True)
class InterlockConfig:
    """Timing and thresholds of the interlock; the defaults suit the ``sim`` backend's relays."""

    #: Contacts open within this time after a trip (IEC 61851-1 Table A.6, 100 ms, unverified).
    open_budget_s: float = 0.100
    #: Worst-case opening time of the contactors (datasheet); the coils are released this early.
    contactor_open_time_s: float = 0.030
    #: Worst-case closing time of the contactors (datasheet).
    contactor_close_time_s: float = 0.050
    #: Allowance for the control-loop period and the coil's release delay within the budget.
    release_margin_s: float = 0.005
    #: Slack on the operating times before feedback that disagrees counts as "Contactor Stuck".
    feedback_margin_s: float = 0.050
    #: Current magnitude that counts as "zero" for opening (pyPLC SafeShutdownSequence practice).
    zero_current_a: float = 1.0
    #: |link - battery| allowed for energy transfer (standards.md 7.2, unverified).
    precharge_tolerance_v: float = 20.0
    #: Current limit while the cable check / precharge runs (EVerest uses 2 A, standards.md 7.1).
    cable_check_current_a: float = 2.0

    @property
    def release_deadline_s(self) -> float:
        """Latest time after a trip at which the coils must be released to meet the budget."""
        return max(0.0, self.open_budget_s - self.contactor_open_time_s - self.release_margin_s)


class Interlock:
    """The interlock state machine. Feed it observations, carry out :meth:`take_commands`."""

    def __init__(self, config: InterlockConfig | None = None) -> None:
        self.config = config or InterlockConfig()
        self.phase = ContactorPhase.OPEN
        self.cp_state: CpState | None = None
        self.emergency_stop = False
        self.stuck: ContactorStuck | None = None
        self.isolation_fault = False
        self.cable_check_passed = False
        self.energy_transfer = False
        #: Why the contactors last opened on a trip: kept as the record after the condition
        #: cleared (:attr:`live_trip` says whether it still holds).
        self.trip_condition: Condition | None = None
        #: The last pilot reading that checked the vehicle's diode since it was plugged in (rule 1).
        self.diode_reading: CpReading | None = None
        self._pilot_readings = False  # the pilot's readings are reported, not only its state
        self._cp_reported = False
        self._measurement: DcMeasurement | None = None
        self._feedback: dict[Pole, bool] = {}
        self._phase_since = 0.0
        self._trip_at = 0.0
        self._events: list[Event] = []
        self._commands: list[Command] = []

    # -- outputs ---------------------------------------------------------------------------------

    def take_events(self) -> list[Event]:
        """The events since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    def take_commands(self) -> list[Command]:
        """The commands the station must carry out now, in order."""
        commands, self._commands = self._commands, []
        return commands

    @property
    def next_deadline(self) -> float | None:
        """When :meth:`on_measurement` must be called at the latest, or ``None``."""
        if self.phase is ContactorPhase.RAMPING_DOWN:
            return self._trip_at + self.config.release_deadline_s
        if self.phase is ContactorPhase.CLOSING:
            return self._phase_since + self.config.contactor_close_time_s + self.config.feedback_margin_s
        if self.phase is ContactorPhase.OPENING:
            return self._phase_since + self.config.contactor_open_time_s + self.config.feedback_margin_s
        return None

    @property
    def live_trip(self) -> Condition | None:
        """The condition of the last trip while it still holds, else None: the emergency stop still
        pressed, the pilot still out of C/D, the isolation fault of this plug-in (rule 1: until CP
        A or B), "Contactor Stuck" latched until :meth:`reset` (rule 4). A session stop is none."""
        condition = self.trip_condition
        holds = {
            Condition.EMERGENCY_STOP: self.emergency_stop,
            Condition.CP_NOT_C_OR_D: self.cp_state is None or not self.cp_state.energy_transfer_allowed,
            Condition.ISOLATION_FAULT: self.isolation_fault,
            Condition.CONTACTOR_STUCK: self.stuck is not None,
        }
        return condition if condition is not None and holds.get(condition, False) else None

    def current_limit_a(self) -> float:
        """The largest current magnitude the power module may carry now."""
        if self.phase is not ContactorPhase.CLOSED:
            return 0.0
        if not self.energy_transfer:
            return self.config.cable_check_current_a
        return math.inf

    def blocking_close(self, link_v: float) -> Verdict:
        """The first rule that would refuse :meth:`request_close` now, or :data:`ALLOWED`."""
        blocked = self._safety_block()
        if blocked is not None:
            return blocked
        if self.phase is not ContactorPhase.OPEN:
            return Verdict(False, Condition.CONTACTORS_BUSY, self.phase.value)
        diode = self._diode_failed()
        if diode is not None:
            return diode
        if self._pilot_readings and self.diode_reading is None:
            return Verdict(
                False, Condition.DIODE_CHECK_NOT_PASSED, "no pilot reading with the PWM on since the plug-in"
            )
        if link_v >= SAFE_OUTPUT_V:
            return Verdict(False, Condition.OUTPUT_LIVE, f"link at {link_v:.1f} V")
        return ALLOWED

    def blocking_energy_transfer(self, link_v: float, battery_v: float) -> Verdict:
        """The first rule that would refuse :meth:`request_energy_transfer` now, or :data:`ALLOWED`."""
        blocked = self._safety_block()
        if blocked is not None:
            return blocked
        if self.phase is not ContactorPhase.CLOSED:
            return Verdict(False, Condition.CONTACTORS_NOT_CLOSED, self.phase.value)
        if not self.cable_check_passed:
            return Verdict(False, Condition.CABLE_CHECK_NOT_PASSED)
        if abs(link_v - battery_v) > self.config.precharge_tolerance_v:
            return Verdict(
                False,
                Condition.PRECHARGE_MISMATCH,
                f"link {link_v:.1f} V vs battery {battery_v:.1f} V, "
                f"tolerance {self.config.precharge_tolerance_v:.0f} V",
            )
        return ALLOWED

    def _safety_block(self) -> Verdict | None:
        """The rules common to closing and to energy transfer."""
        if self.stuck is not None:
            return Verdict(
                False, Condition.CONTACTOR_STUCK, f"{self.stuck.pole.name} ({self.stuck.pole.value})"
            )
        if self.emergency_stop:
            return Verdict(False, Condition.EMERGENCY_STOP)
        if self.cp_state is None and self._cp_reported:
            # An invalid state: a failed diode check says why (CpReading.state).
            return self._diode_failed() or Verdict(False, Condition.CP_NOT_C_OR_D, "CP is invalid")
        if self.cp_state is None:
            return Verdict(False, Condition.CP_NOT_C_OR_D, "no CP state reported: the station has no Control Pilot")
        if not self.cp_state.energy_transfer_allowed:
            return Verdict(False, Condition.CP_NOT_C_OR_D, f"CP is {self.cp_state.name}")
        if self.isolation_fault:
            return Verdict(False, Condition.ISOLATION_FAULT)
        return None

    def _diode_failed(self) -> Verdict | None:
        """Rule 1's refusal when the last diode check failed, else None."""
        reading = self.diode_reading
        if reading is None or reading.diode_ok:
            return None
        return Verdict(
            False,
            Condition.DIODE_CHECK_NOT_PASSED,
            f"negative plateau at {reading.low_v:.1f} V, not -12 V: the vehicle's diode is missing or CP "
            "is shorted to PE",
        )

    # -- requests ----------------------------------------------------------------------------------

    def request_close(self, now: float) -> Verdict:
        """Close the contactors (for the cable check). Refused unless rule 1 holds."""
        link_v = self._measurement.link_v if self._measurement else 0.0
        verdict = self.blocking_close(link_v)
        if not verdict.allowed:
            return self._refuse(now, "close", verdict)
        self._enter(now, ContactorPhase.CLOSING)
        self._commands.append(DriveContactors(True))
        self._events.append(ContactorsClosing(t=now))
        return verdict

    def request_energy_transfer(self, now: float, battery_v: float) -> Verdict:
        """Allow current beyond the cable-check limit (rule 2); *battery_v* as the vehicle reports it."""
        link_v = self._measurement.link_v if self._measurement else 0.0
        verdict = self.blocking_energy_transfer(link_v, battery_v)
        if not verdict.allowed:
            return self._refuse(now, "energy transfer", verdict)
        self.energy_transfer = True
        self._events.append(EnergyTransferEnabled(t=now, link_v=link_v, battery_v=battery_v))
        return verdict

    def reset(self, now: float) -> Verdict:
        """Clear the "Contactor Stuck" latch: only once the feedback shows both contacts open."""
        if self.stuck is None:
            return ALLOWED
        closed = [pole.name for pole, is_closed in self._feedback.items() if is_closed]
        if closed:
            return self._refuse(
                now,
                "reset",
                Verdict(
                    False, Condition.CONTACTOR_STUCK, f"feedback still reports {', '.join(closed)} closed"
                ),
            )
        self.stuck = None
        self._events.append(InterlockReset(t=now))
        return ALLOWED

    # -- observations ------------------------------------------------------------------------------

    def on_cp_state(self, now: float, state: CpState | None) -> None:
        """The CP state changed; leaving C/D ends the cable-check validity and trips (rule 3)."""
        previous, self.cp_state = self.cp_state, state
        self._cp_reported = True
        in_cd = state is not None and state.energy_transfer_allowed
        was_cd = previous is not None and previous.energy_transfer_allowed
        if was_cd and not in_cd:
            self.cable_check_passed = False  # also when open: the cable check was for this C/D period
            self._trip(now, Condition.CP_NOT_C_OR_D)
        if state in (CpState.A, CpState.B):
            self.isolation_fault = False  # a new plug-in / session gets a new cable check
        if state is CpState.A:
            self.diode_reading = None  # unplugged: the next vehicle's diode is checked anew

    def on_pilot_reading(self, reading: CpReading) -> None:
        """A reading of the pilot's levels. With the PWM on and a vehicle on the line it is the diode
        check of rule 1 (:attr:`CpReading.diode_check`); otherwise it checks nothing and the last
        check stands. Its CP state still comes through :meth:`on_cp_state`."""
        self._pilot_readings = True
        if reading.diode_check is not None:
            self.diode_reading = reading

    def on_isolation_result(self, now: float, result: IsolationResult, *, cable_check: bool) -> None:
        """An insulation verdict: of a cable check (*cable_check*) or of the monitoring while closed.

        A fault trips and runs the stop action (rule 5); only a cable check's pass or warning makes
        the cable check count as passed.
        """
        if result.verdict is IsolationVerdict.FAULT:
            self._events.append(
                IsolationFault(
                    t=now, resistance_ohm=result.resistance_ohm, threshold_ohm=result.fault_threshold_ohm
                )
            )
            self.isolation_fault = True
            self.cable_check_passed = False
            self._commands.append(RunStopAction(Condition.ISOLATION_FAULT))
            self._trip(now, Condition.ISOLATION_FAULT)
            return
        if result.verdict is IsolationVerdict.WARNING:
            assert result.warning_threshold_ohm is not None
            self._events.append(
                IsolationWarning(
                    t=now, resistance_ohm=result.resistance_ohm, threshold_ohm=result.warning_threshold_ohm
                )
            )
        cp_ok = self.cp_state is not None and self.cp_state.energy_transfer_allowed
        if cable_check and cp_ok and not self.isolation_fault:
            self.cable_check_passed = True

    def on_emergency_stop(self, now: float, pressed: bool) -> None:
        if pressed != self.emergency_stop:
            self._events.append(EmergencyStopChanged(t=now, pressed=pressed))
        self.emergency_stop = pressed
        if pressed:
            self._trip(now, Condition.EMERGENCY_STOP)

    def on_session_stop(self, now: float) -> None:
        """The session ends normally (PowerDelivery Stop / SessionStop): open at zero current."""
        self._trip(now, Condition.SESSION_STOP)

    def on_measurement(self, now: float, measurement: DcMeasurement, feedback: dict[Pole, bool]) -> None:
        """The periodic sample of the DC output and the mirror contacts; runs the contactor sequence."""
        first_sample = self._measurement is None
        self._measurement = measurement
        self._feedback = dict(feedback)
        config = self.config
        if first_sample and self.phase is ContactorPhase.OPEN and any(feedback.values()):
            # Found closed at start: open like on a session stop (module docstring).
            self.phase = ContactorPhase.CLOSED
            self._trip(now, Condition.SESSION_STOP)
        if self.phase is ContactorPhase.CLOSING:
            if all(feedback.values()):
                self._events.append(ContactorsClosed(t=now, duration_s=now - self._phase_since))
                self._enter(now, ContactorPhase.CLOSED)
            elif now >= self._deadline:
                self._latch_stuck(now, commanded_closed=True)
        elif self.phase is ContactorPhase.RAMPING_DOWN:
            near_zero = abs(measurement.current_a) <= config.zero_current_a
            late = now >= self._trip_at + config.release_deadline_s
            if near_zero or late:
                self._commands.append(DriveContactors(False))
                self._events.append(
                    ContactorsOpening(t=now, current_a=measurement.current_a, forced=not near_zero)
                )
                self._enter(now, ContactorPhase.OPENING)
        elif self.phase is ContactorPhase.OPENING:
            if not any(feedback.values()):
                self._enter(now, ContactorPhase.OPEN)
                self._events.append(ContactorsOpened(t=now, since_trip_s=now - self._trip_at))
            elif now >= self._deadline:
                self._latch_stuck(now, commanded_closed=False)
        elif self.phase is ContactorPhase.CLOSED and not all(feedback.values()) and self.stuck is None:
            self._latch_stuck(now, commanded_closed=True)
        elif self.phase is ContactorPhase.OPEN and any(feedback.values()) and self.stuck is None:
            self._latch_stuck(now, commanded_closed=False)

    # -- internals -----------------------------------------------------------------------------------

    @property
    def _deadline(self) -> float:
        deadline = self.next_deadline
        return math.inf if deadline is None else deadline

    def _enter(self, now: float, phase: ContactorPhase) -> None:
        self.phase = phase
        self._phase_since = now
        if phase is not ContactorPhase.CLOSED:
            self.energy_transfer = False

    def _refuse(self, now: float, request: str, verdict: Verdict) -> Verdict:
        assert verdict.condition is not None
        self._events.append(
            InterlockRefused(t=now, request=request, condition=verdict.condition.name, detail=str(verdict))
        )
        return verdict

    def _trip(self, now: float, condition: Condition) -> None:
        """Rule 3: start opening (current to zero first) if the contactors are closed or closing."""
        if self.phase not in (ContactorPhase.CLOSED, ContactorPhase.CLOSING):
            return
        self.trip_condition = condition
        self.cable_check_passed = False  # the session is over: a new one needs a new cable check
        self._trip_at = now
        self._events.append(InterlockTripped(t=now, condition=condition.name))
        self._commands.append(ZeroCurrent())
        self._enter(now, ContactorPhase.RAMPING_DOWN)

    def _latch_stuck(self, now: float, *, commanded_closed: bool) -> None:
        """Rule 4: latch "Contactor Stuck" for the first pole whose feedback disagrees, then open."""
        pole = next(p for p, closed in self._feedback.items() if closed != commanded_closed)
        self.stuck = ContactorStuck(
            t=now, pole=pole, commanded_closed=commanded_closed, feedback_closed=self._feedback[pole]
        )
        self._events.append(self.stuck)
        if self.phase is ContactorPhase.CLOSED:
            self._trip(now, Condition.CONTACTOR_STUCK)  # current may flow: ramp down, then release
        elif self.phase is ContactorPhase.CLOSING:
            self._commands.append(DriveContactors(False))  # no current flows before CLOSED
            self._enter(now, ContactorPhase.OPEN)
        else:
            self._enter(now, ContactorPhase.OPEN)
