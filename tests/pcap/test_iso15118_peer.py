"""pcap-decode on captures of the PyPI ``iso15118`` stack (0.31.2) talking to itself: their SECC and
their EVCC in two network namespaces over a veth pair, ISO 15118-20 DC and DC_BPT without TLS,
captured on the SECC's veth end with dumpcap.

Both sides log every message they send and receive; the decoder must find each of them, with its
sender, in the order they were exchanged, and report no protocol error the session did not have.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.interop.iso15118_oracle_client import find_peer_python, java_available
from tests.netns import VethPair, veth_pair

pytestmark = [pytest.mark.interop, pytest.mark.netns]
REPO = Path(__file__).resolve().parents[2]
# Their log lines (iso15118.shared.comm_session): "Sent <Message>" and "<Message> received".
SENT = re.compile(r" - iso15118\.shared\.comm_session \(\d+\): Sent (\w+)$")
RECEIVED = re.compile(r" - iso15118\.shared\.comm_session \(\d+\): (\w+) received$")
JVM_START = 3.0  # their SECC boots a JVM (py4j gateway for EXIficient) before it answers SDP


@dataclass(frozen=True)
class PeerSession:
    capture: Path
    evcc_log: str
    secc_log: str


@pytest.fixture(scope="module")
def peer_python() -> Path:
    python = find_peer_python(REPO)
    if python is None:
        pytest.skip("no peer python with iso15118 0.31.2 (run tools/install.sh --peers, or set V2GTOOL_PEER_PYTHON)")
    if not java_available():
        pytest.skip("java is not on PATH (the iso15118 EXIficient codec needs a JRE: default-jre-headless)")
    if shutil.which("dumpcap") is None:
        pytest.skip("dumpcap is not on PATH (apt-get install tshark)")
    return python


@pytest.fixture(scope="module")
def link() -> Iterator[VethPair]:
    with veth_pair("pcpi") as pair:
        yield pair


def _peer_env(iface: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(NETWORK_INTERFACE=iface, PROTOCOLS="ISO_15118_20_DC", AUTH_MODES="EIM", LOG_LEVEL="INFO",
               MESSAGE_LOG_JSON="false", SECC_ENFORCE_TLS="false", ENABLE_TLS_1_3="false")
    return env


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()  # their SECC ignores SIGINT
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def run_their_session(link: VethPair, python: Path, workdir: Path, service: str) -> PeerSession:
    """Their SECC and EVCC, one -20 DC session without TLS, captured on the SECC's end of the link."""
    capture = workdir / "session.pcapng"
    config = workdir / "evcc.json"
    config.write_text(json.dumps({
        "supportedProtocols": ["ISO_15118_20_DC"], "supportedEnergyServices": [service],
        "energyTransferMode": "DC_extended", "isCertInstallNeeded": False, "useTls": False, "enforceTls": False,
        "chargeLoopCycle": 10}))
    started: list[subprocess.Popen[bytes]] = []
    try:
        dumpcap = subprocess.Popen(link.cmd(link.secc_ns, "dumpcap", "-q", "-i", link.secc_if, "-w", str(capture)),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append(dumpcap)
        with (workdir / "secc.log").open("wb") as secc_log:  # both read .env from their working directory
            started.append(subprocess.Popen(link.cmd(link.secc_ns, str(python), "-m", "iso15118.secc.main"),
                                            cwd=workdir, env=_peer_env(link.secc_if), stdout=secc_log,
                                            stderr=subprocess.STDOUT))
        deadline = time.monotonic() + JVM_START
        while not (capture.exists() and capture.stat().st_size) and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(max(0.0, deadline - time.monotonic()))
        with (workdir / "evcc.log").open("wb") as evcc_log:
            evcc = subprocess.run(link.cmd(link.ev_ns, str(python), "-m", "iso15118.evcc.main", str(config)),
                                  cwd=workdir, env=_peer_env(link.ev_if), stdout=evcc_log, stderr=subprocess.STDOUT,
                                  timeout=60)
        time.sleep(0.3)  # the last FIN/ACK on the wire before the capture stops
    finally:
        for process in reversed(started):
            _stop(process)
    evcc_text = (workdir / "evcc.log").read_text(errors="replace")
    secc_text = (workdir / "secc.log").read_text(errors="replace")
    assert evcc.returncode == 0 and "SessionStopRes received" in evcc_text, evcc_text[-3000:] + secc_text[-2000:]
    return PeerSession(capture, evcc_text, secc_text)


def logged_exchange(log: str, own_side: str) -> list[tuple[str, str]]:
    """(sender, message) of every V2G message one side logged, in its order."""
    other = "SECC" if own_side == "EVCC" else "EVCC"
    exchange: list[tuple[str, str]] = []
    for line in log.splitlines():
        if (sent := SENT.search(line)) is not None:
            exchange.append((own_side, sent.group(1)))
        elif (received := RECEIVED.search(line)) is not None:
            exchange.append((other, received.group(1)))
    return exchange


def decode(capture: Path) -> tuple[int, list[dict[str, Any]]]:
    result = subprocess.run([sys.executable, "-m", "v2gtool", "--json", "pcap-decode", str(capture)],
                            capture_output=True, text=True, timeout=60)
    assert result.stderr == ""
    return result.returncode, [json.loads(line) for line in result.stdout.splitlines()]


@pytest.mark.parametrize("service", ["DC", "DC_BPT"])
def test_their_session_decodes_message_for_message(link: VethPair, peer_python: Path, tmp_path: Path,
                                                    service: str) -> None:
    session = run_their_session(link, peer_python, tmp_path, service)
    exit_code, records = decode(session.capture)

    decoded = [(r["sender"], r["message"]) for r in records if r["event"] == "V2GMessage"]
    evcc_view = logged_exchange(session.evcc_log, "EVCC")
    secc_view = logged_exchange(session.secc_log, "SECC")
    assert ("EVCC", "SessionStopReq") in evcc_view and len(evcc_view) >= 40
    assert decoded == evcc_view
    assert decoded == secc_view
    sdp = [r["message"] for r in records if r["event"] == "SdpMessage"]
    assert sdp == ["SDPReq", "SDPRes"]
    assert {r["namespace"] for r in records if r["event"] == "V2GMessage"} == {"apphand", "iso20", "iso20-dc"}

    # Nothing invented: no record of a broken frame, stream or payload. The one judgement that
    # depends on this machine's load is a response slower than its -20 timeout, which would be real.
    assert [r for r in records if r["event"] == "ProtocolError"] == []
    (summary,) = [r for r in records if r["event"] == "Summary"]
    assert all("over its" in e["error"] for e in summary["errors"]), summary["errors"]
    assert exit_code == (1 if summary["error_count"] else 0)
    assert summary["open_requests"] == []
    assert summary["response_codes"] == []
    energy = summary["energy_transfer"]
    assert energy["offered"] == ["DC", "DC_BPT"]  # their SECC always offers both (ServiceIDs 2 and 6)
    assert energy["selected"] == [service]
    loop_mode = "BPT_Scheduled_DC_CLReqControlMode" if service == "DC_BPT" else "Scheduled_DC_CLReqControlMode"
    assert energy["control_modes"][loop_mode] == sum(1 for m in decoded if m == ("EVCC", "DC_ChargeLoopReq"))
