"""Whole ISO 15118-20 DC_BPT sessions against the PyPI `iso15118` stack (SECC and EVCC), over a veth
pair between two network namespaces: SDP on ff02::1, V2GTP over TCP on IPv6 link-local, plain TCP.

Known limits of that peer (not bent around): its EVCC only charges, it runs Scheduled mode only, and
its SECC answers slowly (60-300 ms per message), which our EVCC must tolerate within the standard's
timeouts.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.interop.iso15118_oracle_client import find_peer_python, java_available
from tests.netns import VethPair, veth_pair

pytestmark = [pytest.mark.interop, pytest.mark.netns]
REPO = Path(__file__).resolve().parents[2]
V2GTOOL = [sys.executable, "-m", "v2gtool"]


@pytest.fixture(scope="module")
def peer_python() -> Path:
    python = find_peer_python(REPO)
    if python is None or not java_available():
        pytest.skip("the iso15118 peer needs .venv-peers (tools/install.sh --peers) and a Java runtime")
    return python


@pytest.fixture(scope="module")
def link() -> Iterator[VethPair]:
    with veth_pair("v2gx") as pair:
        yield pair


def peer_env(iface: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(NETWORK_INTERFACE=iface, PROTOCOLS="ISO_15118_20_DC", AUTH_MODES="EIM", LOG_LEVEL="INFO",
               MESSAGE_LOG_JSON="false", SECC_ENFORCE_TLS="false")
    return env


def run_their_secc_with_our_evcc(link: VethPair, peer_python: Path, tmp_path: Path,
                                 extra: list[str]) -> tuple[subprocess.CompletedProcess[str], str]:
    log = (tmp_path / "secc.log").open("w")
    secc = subprocess.Popen(link.cmd(link.secc_ns, str(peer_python), "-m", "iso15118.secc.main"), cwd=tmp_path,
                            env=peer_env(link.secc_if), stdout=log, stderr=subprocess.STDOUT)
    try:
        time.sleep(3.0)  # their SECC starts a JVM before it listens
        ev = subprocess.run(link.cmd(link.ev_ns, *V2GTOOL, "--json", "v2g-message-handler", "connect", "--iface",
                                     link.ev_if, "--no-tls", "--duration", "2", "--service", "DC_BPT", *extra),
                            capture_output=True, text=True, timeout=180)
    finally:
        secc.terminate()
        secc.wait(timeout=30)
        log.close()
    return ev, (tmp_path / "secc.log").read_text(errors="replace")


def test_our_evcc_refuses_to_close_into_their_unprecharged_link(link: VethPair, peer_python: Path,
                                                              tmp_path: Path) -> None:
    """Their simulated SECC reports EVSEPresentVoltage = 1 V throughout DC_PreCharge (its simulator
    has no power path; their own EVCC declares precharge done after 5 rounds regardless). A real EV
    must not close its contactors then: ours stops with V2G_EVCC_PreCharge_Timeout."""
    ev, their_log = run_their_secc_with_our_evcc(link, peer_python, tmp_path, [])
    assert ev.returncode == 1
    assert "V2G_EVCC_PreCharge timeout after 10 s" in ev.stderr
    assert "DC_PreChargeReq received" in their_log


def test_our_evcc_against_their_secc(link: VethPair, peer_python: Path, tmp_path: Path) -> None:
    # Accept their 1 V precharge voltage (see above) to exercise the rest of the session.
    ev, their_log = run_their_secc_with_our_evcc(link, peer_python, tmp_path, ["--precharge-tolerance", "1000"])
    assert ev.returncode == 0, ev.stderr + their_log[-3000:]
    records = [json.loads(line) for line in ev.stdout.splitlines()]
    sent = [r["message"] for r in records if r["event"] == "MessageSent"]
    for name in ("SessionSetupReq", "ServiceSelectionReq", "DC_ChargeParameterDiscoveryReq", "ScheduleExchangeReq",
                 "DC_CableCheckReq", "DC_PreChargeReq", "PowerDeliveryReq", "DC_ChargeLoopReq",
                 "DC_WeldingDetectionReq", "SessionStopReq"):
        assert name in sent
    assert "Chosen protocol: ISO_15118_20_DC" in their_log


def test_their_evcc_against_our_secc(link: VethPair, peer_python: Path, tmp_path: Path) -> None:
    """Their EVCC runs the whole -20 DC_BPT sequence against our SECC up to PowerDelivery. There its
    simulated EV reports EVPresentVoltage = 20000 V (its RationalNumber, an impossible battery) and
    leaves precharge after five rounds whatever the DC link shows; our SECC's interlock then refuses
    to enable energy transfer (FAILED_PowerDeliveryNotApplied, precharge mismatch), as it must."""
    config = tmp_path / "evcc.json"
    config.write_text(json.dumps({
        "supportedProtocols": ["ISO_15118_20_DC"], "supportedEnergyServices": ["DC_BPT"],
        "energyTransferMode": "DC_extended", "isCertInstallNeeded": False, "useTls": False, "enforceTls": False,
        "chargeLoopCycle": 10}))
    secc = subprocess.Popen(link.cmd(link.secc_ns, *V2GTOOL, "--json", "v2g-message-handler", "serve", "--iface",
                                     link.secc_if, "--no-tls", "--sessions", "1", "--speed", "10"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ev_log = (tmp_path / "evcc.log").open("w")
    ev = None
    try:
        time.sleep(1.0)
        # their EVCC does not exit after a failed session: it is stopped once our SECC has finished
        ev = subprocess.Popen(link.cmd(link.ev_ns, str(peer_python), "-m", "iso15118.evcc.main", str(config)),
                              cwd=tmp_path, env=peer_env(link.ev_if), stdout=ev_log, stderr=subprocess.STDOUT)
        secc_out, secc_err = secc.communicate(timeout=150)
    finally:
        secc.kill()
        if ev is not None:
            ev.terminate()
            ev.wait(timeout=30)
        ev_log.close()
    their_log = (tmp_path / "evcc.log").read_text(errors="replace")
    records = [json.loads(line) for line in secc_out.splitlines()]
    received = [r["message"] for r in records if r["event"] == "MessageReceived"]
    for name in ("supportedAppProtocolReq", "SessionSetupReq", "AuthorizationSetupReq", "AuthorizationReq",
                 "ServiceDiscoveryReq", "ServiceDetailReq", "ServiceSelectionReq", "DC_ChargeParameterDiscoveryReq",
                 "ScheduleExchangeReq", "DC_CableCheckReq", "DC_PreChargeReq", "PowerDeliveryReq"):
        assert name in received, (name, their_log[-2000:], secc_err)
    (ended,) = [r for r in records if r["event"] == "SessionEnded"]
    assert ended["response_code"] == "FAILED_PowerDeliveryNotApplied"
    assert "PRECHARGE_MISMATCH" in ended["reason"] and "battery 20000.0 V" in ended["reason"]
    assert "FAILED_POWER_DELIVERY_NOT_APPLIED" in their_log
