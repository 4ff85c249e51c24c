"""The EVSE-side weld check of the DC contactors, with the coils released.

Two independent signs of a weld (standards.md 7.3): the auxiliary (mirror) contact of a pole still
reports closed (EVerest's board support defines "PowerOff" as "switched off and not welded, per the
mirror contacts"), and the cable side follows a safe test voltage on the link, which can only
happen when *both* poles conduct. The test voltage stays below 60 V (IEC 61851-23 CC.4.1) and the
vehicle's contactor must be open, as it is before a session or after DC_WeldingDetection.
"""

from __future__ import annotations

from dataclasses import dataclass

from v2gtool.hw.cablecheck import OPEN_TIMEOUT_S
from v2gtool.hw.errors import InterlockRefusedError
from v2gtool.hw.interfaces import Pole
from v2gtool.hw.interlock import Condition, ContactorPhase
from v2gtool.hw.isolation import SAFE_OUTPUT_V
from v2gtool.hw.station import Station

#: Link voltage for the voltage test; below 60 V so the check is safe to touch.
WELD_TEST_V = 48.0
#: A cable side above this before the test is live from the vehicle: the voltage test cannot tell.
_LIVE_CABLE_V = 10.0
#: The cable side counts as following the link above this fraction of the test voltage.
_FOLLOW_FRACTION = 0.5


@dataclass(frozen=True)
class WeldCheckReport:
    feedback_closed: tuple[Pole, ...]
    link_v: float | None
    cable_v: float | None

    @property
    def voltage_tested(self) -> bool:
        return self.link_v is not None

    @property
    def voltage_follows(self) -> bool:
        return (
            self.voltage_tested and self.cable_v is not None and self.cable_v > _FOLLOW_FRACTION * WELD_TEST_V
        )

    @property
    def welded(self) -> bool:
        return bool(self.feedback_closed) or self.voltage_follows


def settle_contactors(station: Station) -> None:
    """Step *station* until its interlock has no switching deadline left, at most
    :data:`OPEN_TIMEOUT_S`: what a fresh process says of its contactors before this is no answer. A
    contact found closed at the first sample (after a reboot, say) is released and, still closed
    after the contactor's opening time and the interlock's feedback margin, latches "Contactor
    Stuck" (interlock rule 4), as a weld or a broken feedback."""
    station.wait_for(lambda: station.interlock.next_deadline is None, OPEN_TIMEOUT_S)


def run_weld_check(
    station: Station, settle_s: float = 0.2, ramp_timeout_s: float = 2.0, discharge_timeout_s: float = 3.0
) -> WeldCheckReport:
    """Check with the coils released; refused while the interlock has the contactors closed."""
    station.part(station.hw.contactors, "contactors")
    settle_contactors(station)
    phase = station.interlock.phase
    if phase is not ContactorPhase.OPEN:
        raise InterlockRefusedError(
            f"weld check needs the contactors commanded open: {Condition.CONTACTORS_BUSY.name}"
        )
    station.run(settle_s)
    feedback_closed = tuple(pole for pole, closed in station.feedback.items() if closed)
    station.power_off()
    station.wait_for(lambda: station.measurement.cable_v < _LIVE_CABLE_V, discharge_timeout_s)
    if station.hw.power_module is None or station.measurement.cable_v >= _LIVE_CABLE_V:
        # No module to drive the link, or the cable is live from the vehicle side: no voltage test.
        return WeldCheckReport(feedback_closed, None, station.measurement.cable_v)
    station.regulate_voltage(WELD_TEST_V)
    station.wait_for(lambda: station.measurement.link_v >= 0.95 * WELD_TEST_V, ramp_timeout_s)
    station.run(settle_s)
    link_v, cable_v = station.measurement.link_v, station.measurement.cable_v
    station.power_off()
    station.wait_for(lambda: station.measurement.link_v < SAFE_OUTPUT_V / 10.0, ramp_timeout_s)
    return WeldCheckReport(feedback_closed, link_v, cable_v)
