"""``ocpp-bridge --iface``: a SECC on a real link (two namespaces joined by veth: SDP on ff02::1,
TCP on IPv6 link-local) whose session a ``vpp serve`` dispatches through OCPP."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.netns import VethPair, veth_pair
from tests.ocpp.test_park import free_port

pytestmark = pytest.mark.netns
V2GTOOL = [sys.executable, "-m", "v2gtool", "--json"]


@contextmanager
def _vpp_and_bridge(link: VethPair, state: Path, outbox: Path, sessions: int) -> Iterator[subprocess.Popen[str]]:
    """``vpp serve`` (dispatching 5 kW of discharge) and an ``ocpp-bridge --iface`` serving
    *sessions* sessions (0: until a signal) on the SECC side of *link*; yields the bridge."""
    port = free_port()
    vpp = subprocess.Popen(
        link.cmd(link.secc_ns, *V2GTOOL, "vpp", "serve", "--port", str(port), "--http-port", "0",
                 "--state-dir", str(state), "--period", "0.5", "--dispatch-kw", "5", "--dispatch-duration", "600"),
        stdout=subprocess.PIPE,
        text=True,
    )
    bridge = None
    try:
        assert vpp.stdout is not None and "VppListening" in vpp.stdout.readline()
        bridge = subprocess.Popen(
            link.cmd(link.secc_ns, *V2GTOOL, "ocpp-bridge", "--iface", link.secc_if, "--no-tls",
                     "--csms", f"ws://127.0.0.1:{port}/ocpp", "--station-id", "NS-1", "--sessions", str(sessions),
                     "--meter-interval", "0.5", "--outbox-dir", str(outbox)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        yield bridge
    finally:
        for process in (bridge, vpp):
            if process is not None:
                process.kill()
                process.wait()


def _connect(link: VethPair, duration: float) -> list[str]:
    """The EV's ``connect`` command: DC_BPT, Dynamic mode, discharging for *duration* s."""
    return link.cmd(link.ev_ns, *V2GTOOL, "v2g-message-handler", "connect", "--iface", link.ev_if, "--no-tls",
                    "--service", "DC_BPT", "--control-mode", "dynamic", "--direction", "discharge",
                    "--duration", str(duration))


def _records(text: str, event: str) -> list[dict[str, Any]]:
    return [r for r in map(json.loads, text.splitlines()) if r.get("event") == event]


def _transaction_log(state: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (state / "transactions.jsonl").read_text().splitlines()]


def test_a_vpp_dispatch_reaches_the_ev_through_a_bridged_secc(tmp_path: Path) -> None:
    with veth_pair("ocb") as link, _vpp_and_bridge(link, tmp_path / "state", tmp_path / "outbox", 1) as bridge:
        ev = subprocess.run(_connect(link, 6), capture_output=True, text=True, timeout=120)
        bridge_out, bridge_err = bridge.communicate(timeout=60)
    assert ev.returncode == 0, ev.stderr + bridge_err
    assert bridge.returncode == 0, bridge_err
    flows = [r["power"] for r in _records(ev.stdout, "PowerFlow")]
    assert flows and abs(flows[-1] + 5000) <= 250, flows  # the EV gives the 5 kW the VPP asked for
    profiles = _records(bridge_out, "ChargingProfileReceived")
    assert profiles and all(p["accepted"] for p in profiles)
    log = _transaction_log(tmp_path / "state")
    assert [log[0]["event_type"], log[-1]["event_type"]] == ["Started", "Ended"]
    assert [e["seq_no"] for e in log] == list(range(len(log)))


def test_sigterm_ends_the_running_session_and_its_transaction_before_the_bridge_exits(tmp_path: Path) -> None:
    """The station shuts down mid-session: the EV is told to stop (EVSENotification Terminate) and
    stops normally, the CSMS gets the transaction's Ended, then the bridge exits 0."""
    with veth_pair("ocs") as link, _vpp_and_bridge(link, tmp_path / "state", tmp_path / "outbox", 0) as bridge:
        ev = subprocess.Popen(_connect(link, 600), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert ev.stdout is not None
            for line in ev.stdout:  # the loop runs: the transaction is open
                if json.loads(line).get("event") == "PowerFlow":
                    break
            bridge.send_signal(signal.SIGTERM)
            bridge_out, bridge_err = bridge.communicate(timeout=60)
            ev_rest, ev_err = ev.communicate(timeout=60)
        finally:
            ev.kill()
            ev.wait()
    assert bridge.returncode == 0, bridge_err
    assert ev.returncode == 0, ev_err + bridge_err
    ended = _records(ev_rest, "SessionEnded")
    assert ended and ended[-1]["ok"], ev_rest
    assert [e["ok"] for e in _records(bridge_out, "SessionEnded") if e["role"] == "SECC"] == [True]
    log = _transaction_log(tmp_path / "state")
    assert [log[0]["event_type"], log[-1]["event_type"]] == ["Started", "Ended"]
    assert [e["seq_no"] for e in log] == list(range(len(log)))
