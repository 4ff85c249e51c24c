"""The ISO 15118-20 engines' ports on the hardware layer: the SECC drives a :class:`Station` (every
request through the interlock), the EVCC drives the simulated vehicle of the same ``sim`` plant.

Simulated time advances only here: :meth:`StationCharger.advance` runs the station's loop up to the
requested time, and a cable check that the SECC started runs there too, in the same slices
(IEC 61851-23 CC.4.1), so the SECC answers each DC_CableCheckReq with EVSEProcessing=Ongoing at
once, as a real charger does, until the check is done. An idle station catches up coarsely
(:meth:`~v2gtool.hw.backends.SimSetup.fast_forward`), so the first request after minutes of quiet
is answered in time.
"""

from __future__ import annotations

from dataclasses import dataclass

from v2gtool.errors import V2GToolError
from v2gtool.hw.backends import SimSetup
from v2gtool.hw.cablecheck import CableCheckReport, CableCheckRun, CableCheckSettings
from v2gtool.hw.interlock import Condition
from v2gtool.hw.isolation import IsolationVerdict
from v2gtool.iso20.events import PhaseChanged, PowerFlow, SessionEnded
from v2gtool.iso20.ports import CableCheckStatus, PowerLimits
from v2gtool.iso20.states import State
from v2gtool.session.events import Event


@dataclass(frozen=True, kw_only=True)
class CableCheckFinished(Event):
    passed: bool
    test_voltage: float
    resistance_ohm: float | None
    failure: str | None


class StationCharger:
    """:class:`~v2gtool.iso20.ports.ChargerPort` over a ``sim`` :class:`~v2gtool.hw.station.Station`."""

    def __init__(self, setup: SimSetup, limits: PowerLimits, *, mirror_vehicle: bool = False) -> None:
        """*mirror_vehicle*: the EV is remote (``serve``), so the plant's own vehicle model closes and
        opens its contactors when the EV says it did (PowerDelivery Start / Stop)."""
        self.setup = setup
        self.station = setup.station
        self._limits = limits
        self._mirror = mirror_vehicle
        self._cable_check: CableCheckRun | None = None  # started by DC_CableCheckReq, not yet done
        self._transferring = False  # PowerDelivery Start accepted, no stop since
        self.cable_check_report: CableCheckReport | None = None
        self.events: list[Event] = []

    def limits(self) -> PowerLimits:
        return self._limits

    def present_limits(self) -> PowerLimits:
        """The declared limits with the current capped at the station's thermal derating now, as its
        current control holds the output (:meth:`~v2gtool.hw.station.Station.request_current`)."""
        return self._limits.within_current(self.station.derating_limit_a)

    def now(self) -> float:
        return self.station.clock.now()

    def advance(self, now: float) -> None:
        self._run_cable_check(now)
        remaining = now - self.station.clock.now()
        if remaining > 0:
            self.setup.fast_forward(remaining)

    def cable_check(self, ev_max_voltage: float) -> CableCheckStatus:
        report = self.cable_check_report
        if report is None:
            if self._cable_check is None:
                settings = CableCheckSettings(ev_max_voltage, self._limits.max_voltage)
                self._cable_check = CableCheckRun(self.station, settings)
            return CableCheckStatus.ONGOING
        return _cable_check_status(report)

    def _run_cable_check(self, until: float | None) -> None:
        """Run the cable check under way up to *until* (None: end it now, ramped down and open);
        once it is done, report it."""
        run = self._cable_check
        if run is None:
            return
        try:
            report = run.stop() if until is None else run.advance(until)
        except V2GToolError as exc:  # refused or tripped by the interlock: a failed cable check
            report = CableCheckReport(self.station.config.isolation, 0.0, self.now(), failure=str(exc))
        if report is None:
            return
        self._cable_check = None
        self.cable_check_report = report
        result = report.result
        self.events.append(
            CableCheckFinished(
                t=self.now(),
                passed=_cable_check_status(report) == CableCheckStatus.PASSED,
                test_voltage=report.test_voltage_v,
                resistance_ohm=result.resistance_ohm if result else None,
                failure=report.failure,
            )
        )

    def precharge(self, target_voltage: float) -> float:
        self.station.regulate_voltage(target_voltage)
        self.station.step()
        return self.station.measurement.link_v

    def start_energy_transfer(self, battery_voltage: float) -> str | None:
        if self._mirror:
            self.setup.vehicle.precharge_done()
        verdict = self.station.request_energy_transfer(battery_voltage)
        self._transferring = verdict.allowed
        return None if verdict.allowed else str(verdict)

    def regulate(self, current: float, voltage_limit: float) -> tuple[float, float]:
        self.station.request_current(current, voltage_limit)
        self.station.step()
        m = self.station.measurement
        return m.cable_v, m.current_a

    def stop(self) -> None:
        self._run_cable_check(None)  # a session that ends in its cable check ends the check
        self._cable_check = None
        self._transferring = False
        self.station.request_current(0.0)
        self.station.session_stop()
        # The next energy transfer needs a cable check of its own (IEC 61851-23 CC.4.1).
        self.cable_check_report = None
        if self._mirror:
            self.setup.vehicle.session_stopped()

    def present_voltage(self) -> float:
        self.station.step()
        return self.station.measurement.cable_v

    def fault(self) -> str | None:
        """The interlock's reason this session cannot go on: "Contactor Stuck" (latched until a
        reset), a trip whose condition still holds (:attr:`~v2gtool.hw.interlock.Interlock.live_trip`),
        or a trip that ended this session's energy transfer though its condition cleared since (an
        emergency stop pressed and released). A trip of an earlier session whose condition cleared
        is none, nor is a session stop."""
        interlock = self.station.interlock
        if interlock.stuck is not None:
            return f"Contactor Stuck: {interlock.stuck.pole.name}"
        condition = interlock.live_trip
        if condition is None and self._transferring and not interlock.energy_transfer:
            condition = interlock.trip_condition
        if condition is not None and condition is not Condition.SESSION_STOP:
            return f"interlock tripped: {condition.name} ({condition.value})"
        return None


def _cable_check_status(report: CableCheckReport) -> CableCheckStatus:
    """A finished cable check as DC_CableCheckRes tells it: passed, or a fault (a failure too)."""
    if report.failure is None and report.result is not None and report.result.verdict != IsolationVerdict.FAULT:
        return CableCheckStatus.PASSED
    return CableCheckStatus.FAULT


class SimVehiclePort:
    """:class:`~v2gtool.iso20.ports.VehiclePort` of the simulated vehicle on the same plant."""

    def __init__(self, setup: SimSetup, limits: PowerLimits) -> None:
        self.setup = setup
        self._limits = limits

    def limits(self) -> PowerLimits:
        return self._limits

    def soc_percent(self) -> float:
        return self.setup.vehicle.soc_percent()

    def battery_voltage(self) -> float:
        return self.setup.vehicle.battery_voltage()

    def close_contactors(self) -> None:
        self.setup.vehicle.precharge_done()

    def open_contactors(self) -> None:
        self.setup.vehicle.session_stopped()


# The EVCC's phases in which the SECC's output current flows: the loop, and a schedule renegotiation
# during it up to the PowerDelivery Start that resumes the loop (8.3.4.3.8.2: energy transfer goes on
# while the new schedule is fetched).
_ENERGY_TRANSFER_PHASES = frozenset({State.CHARGE_LOOP.value, State.RENEGOTIATION.value, State.RENEGOTIATED.value})


class RemoteChargerVehicle(SimVehiclePort):
    """The EV's own ``sim`` plant when the charger is across the link (``connect``, ``session run
    --role ev``, ``--netns``): nothing in this process drives its power path, so its battery follows
    the current the SECC reports.

    The model: the signed EVSEPresentCurrent of each DC_ChargeLoopRes (the EVCC's :class:`PowerFlow`,
    + charges the EV) is held until the next one (zero-order hold, as the EVCC's own energy count)
    and counted into the battery (:meth:`SimPlant.count_charge`); it drops to zero when the EVCC
    leaves energy transfer (PowerDelivery Stop or Standby answered) or its session ends. The battery
    voltage the EV reports is its terminal voltage at that current (OCV + I * R_i), so SoC, battery
    voltage and the EV's target-SoC and SoC-floor stops behave as in ``--sim``. The SoC an EVCC
    handler reads lags the reported current by one loop response (about 250 ms).
    """

    def __init__(self, setup: SimSetup, limits: PowerLimits) -> None:
        super().__init__(setup, limits)
        self._held: tuple[float, float] | None = None  # (t, A) of the last DC_ChargeLoopRes

    def follow(self, event: Event) -> None:
        """Take one of the EVCC's events (feed this every event of the session, in order)."""
        if getattr(event, "role", None) != "EVCC":
            return
        if isinstance(event, PowerFlow):
            self._hold(event.t, event.current)
        elif (isinstance(event, PhaseChanged) and event.phase not in _ENERGY_TRANSFER_PHASES) or isinstance(
            event, SessionEnded
        ):
            self._hold(event.t, None)

    def _hold(self, t: float, amps: float | None) -> None:
        plant = self.setup.plant
        if self._held is not None:
            since, held = self._held
            plant.count_charge(held, t - since)
        self._held = None if amps is None else (t, amps)
        plant.current_a = amps or 0.0
