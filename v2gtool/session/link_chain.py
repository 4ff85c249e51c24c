"""The chain on a real link, one role per process: CP 5 %, SLAC on raw Ethernet (AF_PACKET, behind
the simulated QCA7000 modem unless ``--modem hw``), then SDP, TCP (TLS 1.3 unless ``--no-tls``) and
the ISO 15118-20 session — exactly what a charger and a car do on a charging cable."""

from __future__ import annotations

import time
from collections.abc import Callable

from v2gtool.net.rawsock import RawSocketLink
from v2gtool.session.events import Event
from v2gtool.session.slac_step import CABLE_ATTENUATION_DB, DIGITAL_COMMUNICATION_DUTY, redacted
from v2gtool.slac import mme
from v2gtool.slac.machine import SlacResult
from v2gtool.slac.modem_sim import AttenuationModel, SimModem
from v2gtool.slac.runner import ModemLink, SlacLink, run_slac
from v2gtool.slac.states import Role


def slac_on_link(role: Role, iface: str, simulated_modem: bool, emit: Callable[[Event], None],
                 set_duty: Callable[[float], None] | None = None) -> SlacResult:
    """Match over *iface*. The EVSE first sets the CP duty to 5 % (IEC 61851-1: digital communication)."""
    if set_duty is not None:
        set_duty(DIGITAL_COMMUNICATION_DUTY)
    with RawSocketLink(iface, mme.ETHERTYPE_HOMEPLUG_AV) as raw:
        link: SlacLink = raw
        if simulated_modem:
            attenuation = AttenuationModel(base_db=CABLE_ATTENUATION_DB) if role is Role.EVSE else None
            link = ModemLink(raw, SimModem(raw.mac, attenuation=attenuation))
        return run_slac(role, link, clock=time.monotonic, on_event=lambda e: emit(redacted(e)))
