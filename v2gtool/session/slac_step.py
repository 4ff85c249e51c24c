"""The first steps of the chain on the simulated cable: CP to 5 % (IEC 61851-1: digital
communication required) and ISO 15118-3 SLAC between the EV and the EVSE, each behind its
simulated QCA7000 modem (:mod:`v2gtool.slac.cable`)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from v2gtool.hw.backends import SimSetup
from v2gtool.hw.cp import DIGITAL_COMMUNICATION_DUTY as DIGITAL_COMMUNICATION_DUTY  # link_chain imports it here
from v2gtool.session.events import Event
from v2gtool.slac.cable import SimCable
from v2gtool.slac.ev import EvSlac
from v2gtool.slac.events import SlacMatched
from v2gtool.slac.evse import EvseSlac
from v2gtool.slac.machine import SlacResult
from v2gtool.slac.modem_sim import AttenuationModel, SimModem

EV_MAC = "02:00:00:00:0e:02"
EVSE_MAC = "02:00:00:00:0e:01"
EVSE_MODEM_MAC = "00:b0:52:00:00:e1"
#: Attenuation of the simulated charging cable as the EVSE's modem measures the EV's sounds (dB).
CABLE_ATTENUATION_DB = 20.0


@dataclass(frozen=True, kw_only=True)
class SlacLinkReady(Event):
    """SLAC matched and both modems joined the logical network (the key itself is not reported)."""

    evse_mac: str
    ev_mac: str
    nid: bytes
    attenuation_db: float | None
    duration: float


def redacted(event: Event) -> Event:
    """SlacMatched without its network membership key, for logs and JSON lines."""
    if isinstance(event, SlacMatched):
        return dataclasses.replace(event, nmk=b"")
    return event


def run_slac(
    setup: SimSetup,
    emit: Callable[[Event], None],
    seed: int = 1,
    on_frame: Callable[[float, bytes], None] | None = None,
) -> SlacResult:
    """CP to 5 %, then SLAC on the simulated cable; the plant's clock advances by the time it took.
    Returns the EV's result (matched, or the diagnosis of what failed)."""
    pilot = setup.station.hw.control_pilot
    assert pilot is not None  # the sim backend has every part
    pilot.set_duty(DIGITAL_COMMUNICATION_DUTY)
    start = setup.station.clock.now()
    cable = SimCable()
    cable.add(EvSlac(EV_MAC), SimModem(EV_MAC, seed=seed), plug=0)
    cable.add(
        EvseSlac(EVSE_MAC),
        SimModem(
            EVSE_MAC,
            modem_mac=EVSE_MODEM_MAC,
            seed=seed + 1,
            attenuation=AttenuationModel(base_db=CABLE_ATTENUATION_DB),
        ),
        plug=0,
    )

    def forward(_index: int, event: Any) -> None:
        emit(dataclasses.replace(redacted(event), t=start + event.t))

    # The EV decides the match (it chose this EVSE and received CM_SLAC_MATCH.CNF).
    def frame(index: int, t: float, data: bytes, sent: bool) -> None:
        if sent and on_frame is not None:  # each frame once, as it leaves its host
            on_frame(start + t, data)

    (result,) = cable.run(on_event=forward, on_frame=frame, wait_for=[0])
    setup.station.run(cable.now)
    if result.matched and result.nid is not None:
        emit(
            SlacLinkReady(
                t=setup.station.clock.now(),
                evse_mac=EVSE_MAC,
                ev_mac=EV_MAC,
                nid=result.nid,
                attenuation_db=result.attenuation_db.get(EVSE_MAC),
                duration=cable.now,
            )
        )
    return result
