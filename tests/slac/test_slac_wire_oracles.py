"""Oracles we did not write: Wireshark's HomePlug AV dissector (tshark) reads every frame we emit
without a malformed field, and the public SLAC captures decode without error."""

from __future__ import annotations

import shutil
import subprocess
from collections import Counter
from pathlib import Path

import pytest
from scapy.utils import RawPcapNgReader

from v2gtool.net.pcapwriter import LINKTYPE_ETHERNET, PcapWriter
from v2gtool.slac import mme
from v2gtool.slac.cable import SimCable
from v2gtool.slac.ev import EvSlac
from v2gtool.slac.evse import EvseSlac
from v2gtool.slac.modem_sim import AttenuationModel, SimModem
from v2gtool.slac.timers import SlacTimers

PCAPS = Path(__file__).resolve().parents[3] / "shared" / "testdata" / "pcaps" / "dsV2Gshark"
if not PCAPS.is_dir():
    PCAPS = Path("/work/shared/testdata/pcaps/dsV2Gshark")


def _session_frames() -> list[bytes]:
    """Every frame both hosts and both modems put on a simulated cable in one matching (with
    VALIDATE), plus the vendor MMEs the modem answers."""
    frames: list[bytes] = []
    cable = SimCable()
    ev = EvSlac("02:00:00:00:0e:02", SlacTimers(), validate=True)
    evse = EvseSlac("02:00:00:00:0e:01", SlacTimers())
    cable.add(ev, SimModem(ev.mac, modem_mac="00:b0:52:00:00:e2"))
    cable.add(evse, SimModem(evse.mac, modem_mac="00:b0:52:00:00:e1", attenuation=AttenuationModel()))
    results = cable.run(on_frame=lambda _i, _t, frame, _sent: frames.append(frame))
    assert all(r.matched for r in results)
    modem = SimModem("02:00:00:00:0e:01")
    for req in (
        mme.VS_SW_VER_REQ(),
        mme.VS_NW_INFO_REQ(),
        mme.VS_RS_DEV_REQ(),
        mme.CM_AMP_MAP_REQ(amdata=b"\x12\x34"),
    ):
        frame = mme.encode_frame(mme.QCA_LOCAL_MAC, modem.host_mac, req)
        frames.append(frame)
        frames.extend(modem.from_host(frame, 0.0)[0])
    return frames


@pytest.mark.interop
def test_tshark_decodes_every_frame_we_emit_without_malformed_fields(tmp_path: Path) -> None:
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark not installed (apt-get install -y tshark)")
    frames = _session_frames()
    pcap = tmp_path / "slac.pcap"
    with PcapWriter(pcap, LINKTYPE_ETHERNET) as writer:
        for i, frame in enumerate(frames):
            writer.write(1_700_000_000 + i / 1000, frame)
    out = subprocess.run(
        [
            tshark,
            "-n",
            "-r",
            str(pcap),
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "homeplug_av.mmhdr.mmtype",
            "-e",
            "homeplug_av.mmhdr.mmtype.qualcomm",
            "-e",
            "_ws.malformed",
            "-e",
            "_ws.expert.severity",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.splitlines()
    assert len(out) == len(frames)
    for frame, line in zip(frames, out, strict=True):
        std, vendor, malformed, severity = line.split("|")
        ours = mme.decode_frame(frame)
        assert int(std or vendor, 16) == ours.mmtype, ours.name
        assert not malformed and "error" not in severity.lower(), f"tshark: {ours.name} malformed"
    assert {mme.mmtype_name(t) for t in mme.MMType} <= {mme.decode_frame(f).name for f in frames}


def _hpav_frames(path: Path) -> list[bytes]:
    return [bytes(data) for data, _meta in RawPcapNgReader(str(path))]


@pytest.mark.skipif(not PCAPS.is_dir(), reason="shared captures not present (../shared/testdata/pcaps)")
@pytest.mark.parametrize("name", sorted(p.name for p in PCAPS.glob("*.pcapng")) if PCAPS.is_dir() else [])
def test_public_captures_slac_frames_decode(name: str) -> None:
    counts: Counter[str] = Counter()
    for frame in _hpav_frames(PCAPS / name):
        try:
            decoded = mme.decode_frame(frame)
        except mme.MmeDecodeError as exc:
            assert "is not HomePlug AV" in exc.reason  # IPv6/SDP/V2GTP frames of the same capture
            continue
        counts[decoded.name] += 1
    assert counts  # every capture has HomePlug frames
    if counts["CM_SLAC_PARM.REQ"]:
        for name_ in ("CM_SLAC_PARM.CNF", "CM_ATTEN_CHAR.IND", "CM_SLAC_MATCH.REQ", "CM_SLAC_MATCH.CNF"):
            assert counts[name_] >= 1, name_


@pytest.mark.skipif(not PCAPS.is_dir(), reason="shared captures not present (../shared/testdata/pcaps)")
def test_multi_evse_capture_shows_two_evses_and_the_ev_picks_the_lower_attenuation() -> None:
    frames = [
        mme.decode_frame(f)
        for f in _hpav_frames(PCAPS / "ISO-2_DC_multi_EVSE_SLAC_DS5366_Josev.pcapng")
        if f[12:14] == b"\x88\xe1" or f[16:18] == b"\x88\xe1"
    ]
    cnf_sources = {f.src for f in frames if isinstance(f.body, mme.CM_SLAC_PARM_CNF)}
    assert len(cnf_sources) == 2
    averages = {
        f.src: sum(f.body.aag) / len(f.body.aag) for f in frames if isinstance(f.body, mme.CM_ATTEN_CHAR_IND)
    }
    assert averages.keys() == cnf_sources
    matched = {f.dst for f in frames if isinstance(f.body, mme.CM_SLAC_MATCH_REQ)}
    assert matched == {min(averages, key=averages.__getitem__)}


def _timed_frames(name: str) -> list[tuple[float, bytes, mme.MmeFrame]]:
    """The capture's decodable SLAC frames with times relative to the first one."""
    out: list[tuple[float, bytes, mme.MmeFrame]] = []
    for data, meta in RawPcapNgReader(str(PCAPS / name)):
        try:
            decoded = mme.decode_frame(bytes(data))
        except mme.MmeDecodeError:
            continue
        if decoded.body is not None:
            out.append(((meta.tshigh << 32 | meta.tslow) / 1e6, bytes(data), decoded))
    t0 = out[0][0]
    return [(t - t0, data, decoded) for t, data, decoded in out]


MULTI = "ISO-2_DC_multi_EVSE_SLAC_DS5366_Josev.pcapng"
VLAN_OF_EVSE_0E = b"\x81\x00\x00\x02"  # the capture's port towards EVSE 64:4d:70:01:06:0e


@pytest.mark.skipif(not PCAPS.is_dir(), reason="shared captures not present (../shared/testdata/pcaps)")
def test_our_ev_replayed_against_the_captured_evses_chooses_like_the_real_ev() -> None:
    frames = _timed_frames(MULTI)
    req = next(d for _, _, d in frames if isinstance(d.body, mme.CM_SLAC_PARM_REQ))
    run_id = bytes(req.body.run_id)
    ev = EvSlac(req.src, SlacTimers(), random_bytes=lambda n: run_id if n == 8 else bytes(n))
    ev.start(0.0)
    inbound = [(t, data) for t, data, d in frames if d.dst == req.src and d.src != req.src]
    events = []
    while ev.state.value != "WAIT_SLAC_MATCH_CNF" and not ev.done:
        deadline = ev.next_deadline
        if inbound and (deadline is None or inbound[0][0] <= deadline):
            t, data = inbound.pop(0)
            ev.receive(data, t)
        else:
            assert deadline is not None
            ev.handle_timer(deadline)
        events.extend(ev.take_events())
    chosen = [e for e in events if type(e).__name__ == "EvseChosen"]
    real_choice = next(d.dst for _, _, d in frames if isinstance(d.body, mme.CM_SLAC_MATCH_REQ))
    assert len(chosen) == 1 and chosen[0].evse_mac == real_choice  # type: ignore[attr-defined]
    assert set(chosen[0].candidates) == {"64:4d:70:01:06:0e", "64:4d:70:01:06:10"}  # type: ignore[attr-defined]


@pytest.mark.skipif(not PCAPS.is_dir(), reason="shared captures not present (../shared/testdata/pcaps)")
def test_our_evse_averages_the_captured_profiles_like_the_real_evse() -> None:
    """Feed the real EV's frames and the real modem's CM_ATTEN_PROFILE.IND (broadcast) seen on one
    EVSE's port to our EVSE; its CM_ATTEN_CHAR.IND must carry the real EVSE's averages."""
    frames = [(t, data, d) for t, data, d in _timed_frames(MULTI) if data[12:16] == VLAN_OF_EVSE_0E]
    evse_mac = "64:4d:70:01:06:0e"
    evse = EvseSlac(evse_mac, SlacTimers())
    evse.start(-1.0)
    # The capture starts after the key was set: the modem that reports the sounds confirms it.
    modem = next(d.src for _, _, d in frames if isinstance(d.body, mme.CM_ATTEN_PROFILE_IND))
    evse.receive(mme.encode_frame(evse_mac, modem, mme.CM_SET_KEY_CNF(result=0)), -0.9)
    sent: list[mme.MmeFrame] = []
    for t, data, decoded in frames:
        if decoded.src == evse_mac:
            continue  # the real EVSE's own answers: what ours must reproduce
        evse.handle_timer(t)
        evse.receive(data, t)
        sent.extend(mme.decode_frame(f) for f in evse.take_frames())
    ours = next(f.body for f in sent if isinstance(f.body, mme.CM_ATTEN_CHAR_IND))
    real = next(d.body for _, _, d in frames if isinstance(d.body, mme.CM_ATTEN_CHAR_IND))
    assert ours.num_sounds == real.num_sounds == 10
    # That EVSE reports floor(mean) - 3 dB (an attenuation adjustment, as EVerest's
    # sounding_attenuation_adjustment); ours reports the rounded mean, unadjusted.
    assert {a - b for a, b in zip(ours.aag, real.aag, strict=True)} <= {3, 4}
    assert any(isinstance(f.body, mme.CM_SLAC_MATCH_CNF) for f in sent)
