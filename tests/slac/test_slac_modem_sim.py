"""The simulated QCA7000: what it answers, what it bridges, when the link comes up."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from v2gtool.slac import mme
from v2gtool.slac.modem_sim import AttenuationModel, HubModemStandIn, SimModem, modem_mac_for
from v2gtool.slac.runner import ModemLink

HOST = "02:00:00:00:0e:01"
EV = "02:00:00:00:0e:02"


def ask(modem: SimModem, body: mme.MmeBody, now: float = 0.0) -> mme.MmeFrame:
    replies, bridged = modem.from_host(mme.encode_frame(mme.QCA_LOCAL_MAC, HOST, body), now)
    assert not bridged and len(replies) == 1
    reply = mme.decode_frame(replies[0])
    assert (reply.dst, reply.src) == (HOST, modem.modem_mac)
    return reply


def test_set_key_then_link_up_after_the_join_delay() -> None:
    modem = SimModem(HOST, join_delay=0.5)
    assert ask(modem, mme.VS_PL_LNK_STATUS_REQ()).body.link_status == 0
    cnf = ask(modem, mme.CM_SET_KEY_REQ(my_nonce=0xDEADBEEF, nid=b"N" * 7, new_key=b"K" * 16), now=1.0).body
    assert isinstance(cnf, mme.CM_SET_KEY_CNF) and cnf.your_nonce == 0xDEADBEEF and mme.set_key_succeeded(cnf)
    assert ask(modem, mme.VS_PL_LNK_STATUS_REQ(), now=1.4).body.link_status == 0
    assert ask(modem, mme.VS_PL_LNK_STATUS_REQ(), now=1.5).body.link_status == 1
    info = ask(modem, mme.VS_NW_INFO_REQ(), now=1.5).body
    assert info.num_avlns == 1 and info.networks[0].nid == b"N" * 7


def test_reset_drops_the_key_and_the_link() -> None:
    modem = SimModem(HOST, join_delay=0.0)
    ask(modem, mme.CM_SET_KEY_REQ(nid=b"N" * 7, new_key=b"K" * 16))
    assert ask(modem, mme.VS_RS_DEV_REQ()).body.mstatus == 0
    assert ask(modem, mme.VS_PL_LNK_STATUS_REQ(), now=5.0).body.link_status == 0
    assert ask(modem, mme.VS_NW_INFO_REQ(), now=5.0).body.num_avlns == 0


def test_software_version_reads_like_a_qca7000() -> None:
    cnf = ask(SimModem(HOST), mme.VS_SW_VER_REQ()).body
    assert cnf.version_text.startswith("QCA7000")


def test_link_on_a_cable_needs_a_peer_with_the_same_key() -> None:
    a, b = SimModem(HOST, join_delay=0.0), SimModem(EV, join_delay=0.0)
    a.peers = b.peers = [a, b]
    ask(a, mme.CM_SET_KEY_REQ(new_key=b"K" * 16))
    assert not a.link_up(1.0)
    b.from_host(mme.encode_frame(mme.QCA_LOCAL_MAC, EV, mme.CM_SET_KEY_REQ(new_key=b"X" * 16)), 2.0)
    assert not a.link_up(3.0)
    b.from_host(mme.encode_frame(mme.QCA_LOCAL_MAC, EV, mme.CM_SET_KEY_REQ(new_key=b"K" * 16)), 4.0)
    assert a.link_up(4.0) and b.link_up(4.0)


def test_host_frames_to_others_are_bridged_and_a_dead_modem_answers_nothing() -> None:
    modem = SimModem(HOST)
    assert modem.from_host(mme.encode_frame(EV, HOST, mme.CM_SLAC_PARM_REQ()), 0.0) == ([], True)
    modem.responsive = False
    assert modem.from_host(mme.encode_frame(mme.QCA_LOCAL_MAC, HOST, mme.CM_SET_KEY_REQ()), 0.0) == (
        [],
        False,
    )


def test_evse_modem_reports_each_sound_as_an_atten_profile() -> None:
    modem = SimModem(HOST, attenuation=AttenuationModel(base_db=25, slope_db=0, jitter_db=0))
    sound = mme.encode_frame(mme.BROADCAST_MAC, EV, mme.CM_MNBC_SOUND_IND(cnt=3))
    (report,) = modem.from_wire(sound, 0.0)
    profile = mme.decode_frame(report)
    assert isinstance(profile.body, mme.CM_ATTEN_PROFILE_IND)
    assert profile.body.pev_mac == EV and list(profile.body.aag) == [25] * 58
    assert SimModem(HOST).from_wire(sound, 0.0) == []  # no EVSE firmware: no report


@given(st.floats(0, 90), st.floats(0, 20), st.floats(0, 5), st.integers(0, 2**32))
def test_attenuation_model_stays_within_its_bounds(
    base: float, slope: float, jitter: float, seed: int
) -> None:
    profile = AttenuationModel(base, slope, jitter).profile(random.Random(seed))
    assert len(profile) == 58
    assert all(max(0, base - slope / 2 - jitter) - 1 <= a <= base + slope / 2 + jitter + 1 for a in profile)


def test_hub_stand_in_serves_every_host_and_reports_sounds_to_the_evse() -> None:
    standin = HubModemStandIn(AttenuationModel(base_db=20), set_key_result=1)
    (cnf,) = standin.on_frame(mme.encode_frame(mme.QCA_LOCAL_MAC, EV, mme.CM_SET_KEY_REQ()), 0.0)
    decoded = mme.decode_frame(cnf)
    assert decoded.dst == EV and decoded.src == modem_mac_for(EV) and decoded.body.result == 1
    sound = mme.encode_frame(mme.BROADCAST_MAC, EV, mme.CM_MNBC_SOUND_IND())
    assert standin.on_frame(sound, 0.1) == []  # no EVSE known yet
    standin.on_frame(mme.encode_frame(EV, HOST, mme.CM_SLAC_PARM_CNF()), 0.2)
    (report,) = standin.on_frame(sound, 0.3)
    assert mme.decode_frame(report).dst == HOST


class FakeWire:
    mac = HOST

    def __init__(self, inbound: list[bytes]) -> None:
        self.sent: list[bytes] = []
        self.inbound = inbound

    def send(self, frame: bytes) -> None:
        self.sent.append(frame)

    def recv(self, timeout: float) -> bytes | None:
        return self.inbound.pop(0) if self.inbound else None


def test_modem_link_answers_locally_and_bridges_the_rest() -> None:
    sound = mme.encode_frame(mme.BROADCAST_MAC, EV, mme.CM_MNBC_SOUND_IND())
    wire = FakeWire([sound])
    link = ModemLink(wire, SimModem(HOST, attenuation=AttenuationModel()), clock=lambda: 0.0)
    link.send(mme.encode_frame(mme.QCA_LOCAL_MAC, HOST, mme.CM_SET_KEY_REQ()))
    link.send(mme.encode_frame(EV, HOST, mme.CM_SLAC_PARM_CNF()))
    assert [mme.decode_frame(f).name for f in wire.sent] == ["CM_SLAC_PARM.CNF"]
    received = [link.recv(0.0) for _ in range(3)]
    assert [mme.decode_frame(f).name for f in received if f] == [
        "CM_SET_KEY.CNF",
        "CM_MNBC_SOUND.IND",
        "CM_ATTEN_PROFILE.IND",
    ]
