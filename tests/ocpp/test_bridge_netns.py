"""``ocpp-bridge --iface``: a SECC on a real link (two namespaces joined by veth: SDP on ff02::1,
TCP on IPv6 link-local) whose session a ``vpp serve`` dispatches through OCPP."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.netns import veth_pair
from tests.ocpp.test_park import free_port

pytestmark = pytest.mark.netns
V2GTOOL = [sys.executable, "-m", "v2gtool", "--json"]


def test_a_vpp_dispatch_reaches_the_ev_through_a_bridged_secc(tmp_path: Path) -> None:
    port = free_port()
    with veth_pair("ocb") as link:
        vpp = subprocess.Popen(
            link.cmd(
                link.secc_ns,
                *V2GTOOL,
                "vpp",
                "serve",
                "--port",
                str(port),
                "--http-port",
                "0",
                "--state-dir",
                str(tmp_path / "state"),
                "--period",
                "0.5",
                "--dispatch-kw",
                "5",
                "--dispatch-duration",
                "600",
            ),
            stdout=subprocess.PIPE,
            text=True,
        )
        secc = None
        try:
            assert vpp.stdout is not None and "VppListening" in vpp.stdout.readline()
            secc = subprocess.Popen(
                link.cmd(
                    link.secc_ns,
                    *V2GTOOL,
                    "ocpp-bridge",
                    "--iface",
                    link.secc_if,
                    "--no-tls",
                    "--csms",
                    f"ws://127.0.0.1:{port}/ocpp",
                    "--station-id",
                    "NS-1",
                    "--sessions",
                    "1",
                    "--meter-interval",
                    "0.5",
                    "--outbox-dir",
                    str(tmp_path / "outbox"),
                ),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            ev = subprocess.run(
                link.cmd(
                    link.ev_ns,
                    *V2GTOOL,
                    "v2g-message-handler",
                    "connect",
                    "--iface",
                    link.ev_if,
                    "--no-tls",
                    "--service",
                    "DC_BPT",
                    "--control-mode",
                    "dynamic",
                    "--direction",
                    "discharge",
                    "--duration",
                    "6",
                ),
                capture_output=True,
                text=True,
                timeout=120,
            )
            secc_out, secc_err = secc.communicate(timeout=60)
        finally:
            for process in (secc, vpp):
                if process is not None:
                    process.kill()
                    process.wait()
    assert ev.returncode == 0, ev.stderr + (secc_err if secc else "")
    assert secc.returncode == 0, secc_err
    flows = [r["power"] for r in map(json.loads, ev.stdout.splitlines()) if r.get("event") == "PowerFlow"]
    assert flows and abs(flows[-1] + 5000) <= 250, flows  # the EV gives the 5 kW the VPP asked for
    profiles = [r for r in map(json.loads, secc_out.splitlines()) if r.get("event") == "ChargingProfileReceived"]
    assert profiles and all(p["accepted"] for p in profiles)
    log = [json.loads(line) for line in (tmp_path / "state" / "transactions.jsonl").read_text().splitlines()]
    assert [log[0]["event_type"], log[-1]["event_type"]] == ["Started", "Ended"]
    assert [e["seq_no"] for e in log] == list(range(len(log)))
