"""Both roles as separate processes over real AF_PACKET sockets in network namespaces, each with
the simulated QCA7000 in front of its veth end (``--backend sim``)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from scapy.utils import rdpcap
from slac_netns import Peer, lab, v2gtool_in

from v2gtool.slac import mme

pytestmark = pytest.mark.netns

EVSE_MAC = "02:00:00:5a:0e:01"
EV_MAC = "02:00:00:5a:0e:02"
ADJ_MAC = "02:00:00:5a:0e:03"
COMMON = ("--iface", "eth0", "--backend", "sim", "--json", "--timer", "C_sequ_retry=0")


def finish(peer: Peer, timeout: float = 60.0) -> tuple[int, dict[str, Any], str]:
    rc = peer.finish(timeout)
    return rc, peer.slac_result(), "".join(peer.err)


def start_evse(ns: str, *extra: str) -> Peer:
    peer = v2gtool_in(ns, "evse-slac", "--role", "evse", *COMMON, "--timer", "TT_EVSE_SLAC_init=20", *extra)
    peer.wait_for('"cp":"5%"')  # key set, 5 % offered: ready for the EV
    return peer


def test_evse_and_ev_processes_match_over_a_veth_pair(tmp_path: Path) -> None:
    with lab("p") as net:
        ns_evse, ns_ev = net.namespace("evse"), net.namespace("ev")
        net.veth(ns_evse, ns_ev, mac_a=EVSE_MAC, name_b="eth0")
        subprocess.run(["ip", "-n", ns_ev, "link", "set", "eth0", "address", EV_MAC], check=True)
        evse = start_evse(ns_evse)
        pcap = tmp_path / "ev.pcap"
        ev = v2gtool_in(ns_ev, "evse-slac", "--role", "ev", *COMMON, "--pcap", str(pcap))
        ev_rc, ev_result, ev_err = finish(ev)
        evse_rc, evse_result, evse_err = finish(evse)
    assert (ev_rc, evse_rc) == (0, 0), ev_err + evse_err
    assert ev_result["peer_mac"] == EVSE_MAC and evse_result["peer_mac"] == EV_MAC
    assert ev_result["nid"] == evse_result["nid"] and ev_result["run_id"] == evse_result["run_id"]
    link_ready = float(ev_result["t_link_ready"]) - float(ev_result["t_slac_parm_req"])  # type: ignore[arg-type]
    assert 0.3 < link_ready < 5.0
    # Seconds since the start, as on --link sim (not CLOCK_MONOTONIC, i.e. the host's uptime).
    for peer, result in ((ev, ev_result), (evse, evse_result)):
        times = [float(r["t"]) for r in peer.json_records() if "t" in r]
        assert times[0] < 0.5 and all(0.0 <= t < 60.0 for t in times)
        assert 0.0 <= float(result["t_slac_parm_req"]) < float(result["t_link_ready"]) < 60.0
    names = [mme.decode_frame(bytes(p)).name for p in rdpcap(str(pcap))]
    assert names[0] == "CM_SLAC_PARM.REQ" and "CM_SLAC_MATCH.CNF" in names


def test_cross_talk_the_ev_ignores_the_adjacent_charger_at_higher_attenuation() -> None:
    with lab("x") as net:
        cable = net.namespace("cab")
        net.bridge(cable)
        hosts = {}
        for role, mac in (("evse", EVSE_MAC), ("adj", ADJ_MAC), ("ev", EV_MAC)):
            hosts[role] = net.namespace(role)
            net.bridge_port(cable, hosts[role], mac)
        evse = start_evse(hosts["evse"], "--sim-attenuation", "19")
        adjacent = start_evse(hosts["adj"], "--sim-attenuation", "31", "--timer", "TT_EVSE_match_session=2")
        ev = v2gtool_in(hosts["ev"], "evse-slac", "--role", "ev", *COMMON)
        ev_rc, ev_result, ev_err = finish(ev)
        evse_rc, _, evse_err = finish(evse)
        adj_rc, adj_result, _ = finish(adjacent)
    assert ev_rc == 0, ev_err
    assert ev_result["peer_mac"] == EVSE_MAC
    attenuation = ev_result["attenuation_db"]
    assert isinstance(attenuation, dict) and set(attenuation) == {EVSE_MAC, ADJ_MAC}
    assert attenuation[EVSE_MAC] < attenuation[ADJ_MAC]
    assert evse_rc == 0, evse_err
    assert adj_rc == 14 and adj_result["diagnosis"] == "PEER_CHOSE_OTHER"


def test_several_evse_sessions_on_one_host() -> None:
    """One charger host with two outlets (two interfaces, two modems), two EVs at once."""
    with lab("m") as net:
        host = net.namespace("host")
        evs = [net.namespace(f"ev{i}") for i in range(2)]
        for i, ns_ev in enumerate(evs):
            net.veth(ns_ev, host, mac_a=f"02:00:00:5a:1{i}:02", name_b=f"eth{i}")
            subprocess.run(
                ["ip", "-n", host, "link", "set", f"eth{i}", "address", f"02:00:00:5a:1{i}:01"], check=True
            )
        evses = []
        for i in range(2):
            proc = v2gtool_in(
                host,
                "evse-slac",
                "--role",
                "evse",
                "--iface",
                f"eth{i}",
                "--backend",
                "sim",
                "--json",
                "--timer",
                "TT_EVSE_SLAC_init=20",
                "--timer",
                "C_sequ_retry=0",
            )
            proc.wait_for('"cp":"5%"')
            evses.append(proc)
        ev_procs = [v2gtool_in(ns_ev, "evse-slac", "--role", "ev", *COMMON) for ns_ev in evs]
        ev_results = [finish(p) for p in ev_procs]
        evse_results = [finish(p) for p in evses]
    for i in range(2):
        assert ev_results[i][0] == 0 and evse_results[i][0] == 0, ev_results[i][2] + evse_results[i][2]
        assert ev_results[i][1]["peer_mac"] == f"02:00:00:5a:1{i}:01"
    assert ev_results[0][1]["nid"] != ev_results[1][1]["nid"]


def test_the_interface_going_down_during_slac_is_a_one_line_error() -> None:
    """ENETDOWN on the raw socket while the EVSE waits for CM_SLAC_PARM.REQ: the environment's exit
    status (4) and one line naming the interface, no traceback."""
    with lab("d") as net:
        ns_evse, ns_ev = net.namespace("evse"), net.namespace("ev")
        net.veth(ns_evse, ns_ev, mac_a=EVSE_MAC, name_b="eth0")
        evse = start_evse(ns_evse)
        subprocess.run(["ip", "-n", ns_evse, "link", "set", "eth0", "down"], check=True, timeout=10)
        rc, _, err = finish(evse)
    assert rc == 4, err
    assert err.splitlines() == [err.strip()] and "eth0" in err and "Traceback" not in err, err
