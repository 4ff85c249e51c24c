"""A simulated QCA7000/7005 HomePlug Green PHY modem for the ``sim`` backend.

A real modem sits between its host's Ethernet (SPI on a QCA7000) and the powerline: it bridges
host frames onto the line and back, and answers the MMEs addressed to itself -- CM_SET_KEY.REQ,
the Qualcomm VS_* requests -- from its own address. A modem running EVSE firmware also reports
every M-Sound it hears as a CM_ATTEN_PROFILE.IND to its host (ISO 15118-3 Annex A). The link comes
up (VS_PL_LNK_STATUS 1, D-LINK_READY) once the key is set and the AVLN joined.

:class:`SimModem` is that model, sans-IO: :meth:`SimModem.from_host` and :meth:`SimModem.from_wire`
return only what the modem itself originates; the caller bridges everything else. Three ways to
use it:

* :class:`ModemLink` wraps a real link (a veth end) so a process sees a modem in front of it;
* :class:`~v2gtool.slac.cable.SimCable` joins several hosts and modems in one process;
* :class:`HubModemStandIn` stands in for the modems of hosts we did not write (pyslac,
  open-plc-utils) from a port of a hub-mode bridge.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from v2gtool.slac import mme

#: HomePlug GP attenuation groups (AAG) a QCA7000 reports: 58 (ISO 15118-3 Annex A).
NUM_GROUPS = 58
#: VS_SW_VER.CNF device id of a QCA7000 (Green PHY), as open-plc-utils lists it.
QCA7000_DEVICE_ID = 0x20
FIRMWARE_VERSION = "QCA7000-MAC-QCA7000-1.1.0.730-04-20140815-CS (v2gtool sim)"


@dataclass(frozen=True)
class AttenuationModel:
    """The attenuation (dB) between the EV and this EVSE modem, per group: ``base_db`` plus a
    tilt of ``slope_db`` across the band plus uniform noise of +-``jitter_db`` per sound."""

    base_db: float = 20.0
    slope_db: float = 6.0
    jitter_db: float = 1.0
    groups: int = NUM_GROUPS

    def profile(self, rng: random.Random) -> list[int]:
        """One sound's AAG list, clamped to an octet."""
        span = max(self.groups - 1, 1)
        return [
            max(
                0,
                min(
                    255,
                    round(
                        self.base_db + self.slope_db * (g / span - 0.5) + rng.uniform(-1, 1) * self.jitter_db
                    ),
                ),
            )
            for g in range(self.groups)
        ]


@dataclass
class SimModem:
    """One station's modem. ``attenuation`` set = EVSE firmware (reports M-Sounds)."""

    host_mac: str
    modem_mac: str = "00:b0:52:00:00:02"
    attenuation: AttenuationModel | None = None
    #: Time from CM_SET_KEY until the AVLN is joined (link up).
    join_delay: float = 0.05
    #: CM_SET_KEY.CNF Result: 0 per HomePlug AV; QCA/open-plc-utils read 1 as success.
    set_key_result: int = 0
    #: False models a dead modem/driver: nothing is answered.
    responsive: bool = True
    seed: int = 0
    nid: bytes | None = None
    nmk: bytes | None = None
    key_set_at: float | None = None
    #: The other modems on the same line, when known (an in-process cable): then the link needs
    #: a peer holding the same NMK. Unknown (a real veth): the key alone brings the link up.
    peers: list[SimModem] | None = None
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.host_mac = self.host_mac.lower()
        self.rng = random.Random(self.seed)

    def is_for_modem(self, frame: mme.MmeFrame) -> bool:
        """Host frames the modem consumes instead of bridging onto the line."""
        return frame.dst in (mme.QCA_LOCAL_MAC, self.modem_mac)

    def link_up(self, now: float) -> bool:
        """Whether the AVLN is joined: key set ``join_delay`` ago (by this modem and a peer)."""
        if self.key_set_at is None:
            return False
        if self.peers is None:
            return now >= self.key_set_at + self.join_delay
        return any(
            peer.nmk == self.nmk
            and peer.key_set_at is not None
            and now >= max(self.key_set_at, peer.key_set_at) + self.join_delay
            for peer in self.peers
            if peer is not self
        )

    def from_host(self, frame: bytes, now: float) -> tuple[list[bytes], bool]:
        """A frame from the host: ``(replies to the host, whether to bridge it onto the line)``."""
        try:
            decoded = mme.decode_frame(frame)
        except mme.MmeDecodeError:
            return [], True  # not ours to judge: bridged like any Ethernet frame
        if not self.is_for_modem(decoded):
            return [], True
        if not self.responsive or decoded.body is None:
            return [], False
        reply = self._answer(decoded.body, now)
        return ([mme.encode_frame(decoded.src, self.modem_mac, reply)] if reply is not None else []), False

    def from_wire(self, frame: bytes, now: float) -> list[bytes]:
        """A frame heard on the line: what the modem itself sends to its host because of it."""
        if self.attenuation is None or not self.responsive:
            return []
        try:
            decoded = mme.decode_frame(frame)
        except mme.MmeDecodeError:
            return []
        if not isinstance(decoded.body, mme.CM_MNBC_SOUND_IND):
            return []
        profile = mme.CM_ATTEN_PROFILE_IND(pev_mac=decoded.src, aag=self.attenuation.profile(self.rng))
        return [mme.encode_frame(self.host_mac, self.modem_mac, profile)]

    def _answer(self, body: mme.MmeBody, now: float) -> mme.MmeBody | None:
        match body:
            case mme.CM_SET_KEY_REQ():
                self.nid, self.nmk, self.key_set_at = bytes(body.nid), bytes(body.new_key), now
                return mme.CM_SET_KEY_CNF(
                    result=self.set_key_result,
                    my_nonce=self.rng.getrandbits(32),
                    your_nonce=body.my_nonce,
                    pid=body.pid,
                    prn=body.prn,
                    pmn=body.pmn,
                    cco_capability=body.cco_capability,
                )
            case mme.VS_PL_LNK_STATUS_REQ():
                return mme.VS_PL_LNK_STATUS_CNF(mstatus=0, link_status=int(self.link_up(now)))
            case mme.VS_SW_VER_REQ():
                version = FIRMWARE_VERSION.encode()
                return mme.VS_SW_VER_CNF(
                    device_id=QCA7000_DEVICE_ID, version_len=len(version), version=version
                )
            case mme.VS_NW_INFO_REQ():
                if not self.link_up(now) or self.nid is None:
                    return mme.VS_NW_INFO_CNF()
                return mme.VS_NW_INFO_CNF(
                    networks=[mme.NetworkInfo(nid=self.nid, tei=1, cco_mac=self.modem_mac)]
                )
            case mme.VS_RS_DEV_REQ():
                self.nid = self.nmk = self.key_set_at = None
                return mme.VS_RS_DEV_CNF(mstatus=0)
            case mme.CM_AMP_MAP_REQ():
                return mme.CM_AMP_MAP_CNF(res_type=0)
        return None


def modem_mac_for(host_mac: str) -> str:
    """A Qualcomm-OUI address for the simulated modem of *host_mac* (its last three octets)."""
    return "00:b0:52:" + host_mac.lower()[-8:]


class HubModemStandIn:
    """The modems of every host on a hub-mode bridge, seen from one bridge port.

    For hosts we did not write (pyslac, open-plc-utils ``evse``/``pev``) that expect a modem on
    their interface: answers any host's MMEs to the local-modem address (CM_SET_KEY, VS_*), learns
    which hosts are EVSEs from their CM_SLAC_PARM.CNF, and reports every M-Sound to each EVSE
    host as its modem's CM_ATTEN_PROFILE.IND.
    """

    def __init__(self, attenuation: AttenuationModel, set_key_result: int = 0, seed: int = 0) -> None:
        self.attenuation = attenuation
        self.set_key_result = set_key_result
        self.seed = seed
        self.modems: dict[str, SimModem] = {}
        self.evse_hosts: set[str] = set()

    def _modem(self, host: str) -> SimModem:
        if host not in self.modems:
            self.modems[host] = SimModem(
                host,
                modem_mac=modem_mac_for(host),
                set_key_result=self.set_key_result,
                seed=self.seed + len(self.modems),
            )
        return self.modems[host]

    def on_frame(self, frame: bytes, now: float) -> list[bytes]:
        """A frame seen on the hub: the frames the stand-in modems send because of it."""
        try:
            decoded = mme.decode_frame(frame)
        except mme.MmeDecodeError:
            return []
        if decoded.src in {m.modem_mac for m in self.modems.values()}:
            return []
        if decoded.dst == mme.QCA_LOCAL_MAC or decoded.dst == modem_mac_for(decoded.src):
            replies, _ = self._modem(decoded.src).from_host(frame, now)
            return replies
        if isinstance(decoded.body, mme.CM_SLAC_PARM_CNF):
            self.evse_hosts.add(decoded.src)
            self._modem(decoded.src).attenuation = self.attenuation
        if isinstance(decoded.body, mme.CM_MNBC_SOUND_IND):
            return [
                out for host in sorted(self.evse_hosts) for out in self._modem(host).from_wire(frame, now)
            ]
        return []
