"""SLAC benchmark: time from CM_SLAC_PARM.REQ to link ready against the floor the ISO 15118-3
timers allow, and how many frames per second the MME parser sustains on a large capture.

    .venv/bin/python benchmarks/slac_bench.py [--frames 200000] [--veth]

``--veth`` (root) also runs both roles as processes over AF_PACKET on a veth pair between two
network namespaces it creates and removes.

The timer floor: the EV collects CM_SLAC_PARM.CNF for TT_match_response, then sends
C_EV_start_atten_char_inds + C_EV_match_MNBC messages TP_EV_batch_msg_interval apart; everything
else (ATTEN_CHAR, SLAC_MATCH, SET_KEY, link status) is frame round trips and the modem's join.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scapy.utils import RawPcapReader

from v2gtool.net.pcapwriter import LINKTYPE_ETHERNET, PcapWriter
from v2gtool.slac import mme
from v2gtool.slac.cable import SimCable
from v2gtool.slac.ev import EvSlac
from v2gtool.slac.evse import EvseSlac
from v2gtool.slac.modem_sim import AttenuationModel, SimModem
from v2gtool.slac.timers import SlacTimers

TP_MIN = 0.020  # TP_EV_batch_msg_interval, lower end of Table A.1's 20 ms .. 50 ms


def timer_floor(timers: SlacTimers) -> float:
    messages = timers.C_EV_start_atten_char_inds + timers.C_EV_match_MNBC
    return timers.TT_match_response + (messages - 1) * timers.TP_EV_batch_msg_interval


def sim_matching(timers: SlacTimers) -> tuple[float, list[bytes]]:
    """One matching on the simulated cable: (PARM.REQ -> link ready in virtual s, frames seen)."""
    frames: list[bytes] = []
    cable = SimCable()
    ev = EvSlac("02:00:00:00:0e:02", timers)
    cable.add(ev, SimModem(ev.mac, modem_mac="00:b0:52:00:00:e2", join_delay=0.0))
    evse = EvseSlac("02:00:00:00:0e:01", timers)
    cable.add(
        evse,
        SimModem(evse.mac, modem_mac="00:b0:52:00:00:e1", join_delay=0.0, attenuation=AttenuationModel()),
    )
    ev_result, _ = cable.run(on_frame=lambda _i, _t, frame, sent: frames.append(frame) if sent else None)
    assert ev_result.t_link_ready is not None and ev_result.t_slac_parm_req is not None
    return ev_result.t_link_ready - ev_result.t_slac_parm_req, frames


def veth_matching() -> float:
    """Both roles as processes on a veth pair in two namespaces; the EV's PARM.REQ -> link ready."""
    tag = f"v2gsb{os.getpid()}"
    ns = [f"{tag}evse", f"{tag}ev"]

    def ip(*args: str) -> None:
        subprocess.run(["ip", *args], check=True, capture_output=True)

    try:
        for name in ns:
            ip("netns", "add", name)
        ip("link", "add", f"{tag}a", "type", "veth", "peer", "name", f"{tag}b")
        for end, name in ((f"{tag}a", ns[0]), (f"{tag}b", ns[1])):
            ip("link", "set", end, "netns", name)
            ip("-n", name, "link", "set", end, "name", "eth0")
            ip("-n", name, "link", "set", "eth0", "up")
        base = [
            sys.executable,
            "-m",
            "v2gtool",
            "evse-slac",
            "--iface",
            "eth0",
            "--backend",
            "sim",
            "--json",
            "--timer",
            "C_sequ_retry=0",
        ]
        evse = subprocess.Popen(
            ["ip", "netns", "exec", ns[0], *base, "--role", "evse"], stdout=subprocess.PIPE, text=True
        )
        assert evse.stdout is not None
        for line in evse.stdout:
            if '"cp":"5%"' in line:
                break
        out = subprocess.run(
            ["ip", "netns", "exec", ns[1], *base, "--role", "ev"],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        evse.wait(timeout=30)
        result = json.loads(out.splitlines()[-1])
        return float(result["t_link_ready"]) - float(result["t_slac_parm_req"])
    finally:
        for name in ns:
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def parser_rate(frames: list[bytes], count: int) -> tuple[float, int]:
    """Write *count* frames (the session's, repeated) to a pcap, then read and decode all."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "large.pcap"
        with PcapWriter(path, LINKTYPE_ETHERNET) as writer:
            for i in range(count):
                writer.write(1_700_000_000 + i * 1e-4, frames[i % len(frames)])
        start = time.perf_counter()
        decoded = 0
        for data, _meta in RawPcapReader(str(path)):
            mme.decode_frame(bytes(data))
            decoded += 1
        return decoded / (time.perf_counter() - start), decoded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--frames", type=int, default=200_000)
    parser.add_argument(
        "--veth", action="store_true", help="also measure over AF_PACKET on a veth pair (root)"
    )
    args = parser.parse_args()

    for label, timers in (
        ("defaults (TP 40 ms)", SlacTimers()),
        (
            "TP_EV_batch_msg_interval = 20 ms",
            dataclasses.replace(SlacTimers(), TP_EV_batch_msg_interval=TP_MIN),
        ),
    ):
        elapsed, frames = sim_matching(timers)
        floor = timer_floor(timers)
        print(
            f"sim cable, {label}: PARM.REQ -> link ready {elapsed * 1000:.0f} ms; timer floor "
            f"{floor * 1000:.0f} ms; overhead {(elapsed - floor) * 1000:.0f} ms"
        )
    if args.veth:
        elapsed = veth_matching()
        floor = timer_floor(SlacTimers())
        print(
            f"AF_PACKET over veth, two processes, defaults: PARM.REQ -> link ready {elapsed * 1000:.0f} ms; "
            f"timer floor {floor * 1000:.0f} ms"
        )
    rate, count = parser_rate(frames, args.frames)
    print(f"parser: {count} frames decoded at {rate:,.0f} frames/s")


if __name__ == "__main__":
    main()
