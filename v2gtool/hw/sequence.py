"""The power-up of a DC session on the station: CP C/D -> diode check -> cable check -> precharge ->
energy transfer.

This is the hardware side of ISO 15118-20 DC_CableCheck, DC_PreCharge and PowerDelivery Start;
the session engine runs the same steps from the SECC, with the vehicle's values from its requests.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from v2gtool.hw.cablecheck import CableCheckReport, CableCheckSettings, never, run_cable_check
from v2gtool.hw.cp import DIGITAL_COMMUNICATION_DUTY
from v2gtool.hw.errors import HardwareError, InterlockRefusedError, IsolationFaultError
from v2gtool.hw.interlock import Condition
from v2gtool.hw.isolation import IsolationVerdict
from v2gtool.hw.station import Station

#: The precharge is done when the output is this close to the battery voltage.
_PRECHARGE_DONE_V = 2.0


class Vehicle(Protocol):
    """What the EVSE learns from the vehicle (over ISO 15118-20 in a real session)."""

    def battery_voltage(self) -> float:
        """EVPresentVoltage: the battery voltage the vehicle reports."""

    def max_voltage(self) -> float:
        """EVMaximumVoltage, for the cable-check test voltage (Formula CC.1)."""

    def soc_percent(self) -> float:
        """PresentSOC."""

    def precharge_done(self) -> None:
        """The vehicle closes its own contactor once the precharge matches (it decides, not the EVSE)."""

    def session_stopped(self) -> None:
        """After PowerDelivery Stop the vehicle opens its contactor (before DC_WeldingDetection)."""


@dataclass(frozen=True)
class PowerUpReport:
    cable_check: CableCheckReport


def check_diode(station: Station) -> None:
    """The CP diode check the interlock needs before the contactors close (IEC 61851-1 Table A.4 note,
    standards.md 6.3). It needs the PWM on, so the pilot runs as in a DC session: 5 %, digital
    communication required (Table A.7, standards.md 6.2); its reading goes to the interlock, which
    refuses the close when the check failed. A backend without a Control Pilot is refused here: its
    interlock never sees CP state C or D, so it can never allow a close."""
    pilot = station.hw.control_pilot
    if pilot is None:
        raise InterlockRefusedError(
            f"contactors may not close: {Condition.CP_NOT_C_OR_D.name}: the {station.hw.backend} backend has "
            "no Control Pilot to check (CP state C or D, the vehicle's diode), so the interlock can never "
            "allow a close on it"
        )
    pilot.set_duty(DIGITAL_COMMUNICATION_DUTY)
    station.interlock.on_pilot_reading(pilot.read())


def power_up(
    station: Station,
    vehicle: Vehicle,
    evse_max_voltage_v: float,
    *,
    cp_timeout_s: float = 5.0,
    precharge_timeout_s: float = 10.0,
    cable_check: CableCheckSettings | None = None,
    stop: Callable[[], bool] = never,
) -> PowerUpReport | None:
    """Bring the station from idle to energy transfer, or raise the error that says why not. The
    diode check (:func:`check_diode`) follows CP C/D: the vehicle may come to C after the start.

    The precharge timeout is V2G_EVCC_PreCharge_Timeout of ISO 15118-20 (10 s, standards.md 4.4).
    *stop* (SIGINT/SIGTERM) is polled through the cable check: once it holds, the check ramps down and
    opens the contactors (:func:`run_cable_check`) and None is returned, no energy transfer begun.
    """
    interlock = station.interlock
    if not station.wait_for(
        lambda: station.cp_state is not None and station.cp_state.energy_transfer_allowed, cp_timeout_s
    ):
        raise InterlockRefusedError(
            f"contactors may not close: {interlock.blocking_close(station.measurement.link_v)}"
        )
    check_diode(station)
    settings = cable_check or CableCheckSettings(vehicle.max_voltage(), evse_max_voltage_v)
    report = run_cable_check(station, settings, stop)
    if report.interrupted:
        return None
    if report.failure is not None:
        raise IsolationFaultError(f"cable check failed: {report.failure}")
    assert report.result is not None
    if report.result.verdict is IsolationVerdict.FAULT:
        raise IsolationFaultError(
            f"cable check: insulation {report.result.resistance_ohm:.0f} Ohm below "
            f"{report.result.fault_threshold_ohm:.0f} Ohm ({station.config.isolation.edition.value} edition)"
        )
    battery_v = vehicle.battery_voltage()
    station.regulate_voltage(battery_v)
    tolerance = min(_PRECHARGE_DONE_V, interlock.config.precharge_tolerance_v)
    if not station.wait_for(
        lambda: abs(station.measurement.link_v - battery_v) <= tolerance, precharge_timeout_s
    ):
        station.session_stop()
        raise HardwareError(
            f"precharge to {battery_v:.0f} V timed out after {precharge_timeout_s:.0f} s "
            f"at {station.measurement.link_v:.0f} V"
        )
    vehicle.precharge_done()
    verdict = station.request_energy_transfer(vehicle.battery_voltage())
    if not verdict.allowed:
        raise InterlockRefusedError(f"energy transfer refused: {verdict}")
    return PowerUpReport(report)
