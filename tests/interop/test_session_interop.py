"""Whole ISO 15118-20 DC_BPT sessions against the PyPI `iso15118` stack (SECC and EVCC), over a veth
pair between two network namespaces: SDP on ff02::1, V2GTP over TCP on IPv6 link-local, plain TCP and
TLS 1.3 with mutual authentication (ISO 15118-20 clause 7.7.3).

Known limits of that peer (not bent around): its EVCC only charges, it runs Scheduled mode only, and
its SECC answers slowly (60-300 ms per message), which our EVCC must tolerate within the standard's
timeouts.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.interop.iso15118_oracle_client import find_peer_python, java_available
from tests.netns import VethPair, veth_pair
from v2gtool.exit_codes import ExitCode

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


@dataclass(frozen=True)
class Pki:
    """A test PKI made by ``v2gtool pki init``, and the same certificates laid out for the peer."""

    certs: Path
    trust: Path
    theirs: Path

    def our_options(self, keylog: Path) -> list[str]:
        return ["--certs-dir", str(self.certs), "--trust-dir", str(self.trust), "--keylog", str(keylog)]


def lay_out_for_iso15118(certs: Path, theirs: Path) -> None:
    """Their PKI_PATH layout (iso15118/shared/security.py CertPath/KeyPath): the library always reads
    ``iso15118_2/certs`` and ``iso15118_2/private_keys``, also for -20. The TLS server presents
    cpoCertChain.pem + seccLeaf.key and, with ENABLE_TLS_1_3, requires a client chain issued under
    oemRootCACert.pem; the TLS client trusts v2gRootCACert.pem and presents oemCertChain.pem + oemLeaf.key.
    Our keys are unencrypted: an empty password file tells their loader so."""
    files = {
        "certs/cpoCertChain.pem": certs / "secc_iso20.pem",
        "certs/oemCertChain.pem": certs / "vehicle.pem",
        "certs/v2gRootCACert.pem": certs / "ca" / "v2g_root_ca.pem",
        "certs/oemRootCACert.pem": certs / "ca" / "oem_root_ca.pem",
        "private_keys/seccLeaf.key": certs / "secc_iso20.key",
        "private_keys/oemLeaf.key": certs / "vehicle.key",
    }
    for name, source in files.items():
        target = theirs / "iso15118_2" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    for password in ("seccLeafPassword.txt", "oemLeafPassword.txt"):
        (theirs / "iso15118_2" / "private_keys" / password).write_text("")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    base = tmp_path_factory.mktemp("pki")
    subprocess.run([*V2GTOOL, "pki", "init", str(base)], check=True, capture_output=True, timeout=60)
    made = Pki(base / "certs", base / "trust" / "certs", base / "theirs")
    lay_out_for_iso15118(made.certs, made.theirs)
    return made


def peer_env(iface: str, pki: Pki | None = None) -> dict[str, str]:
    """Their settings; with *pki*, TLS 1.3 with mutual authentication (ENABLE_TLS_1_3 on both sides)."""
    env = dict(os.environ)
    env.update(NETWORK_INTERFACE=iface, PROTOCOLS="ISO_15118_20_DC", AUTH_MODES="EIM", LOG_LEVEL="INFO",
               MESSAGE_LOG_JSON="false", SECC_ENFORCE_TLS="false", ENABLE_TLS_1_3="false")
    if pki is not None:
        env.update(ENABLE_TLS_1_3="true", PKI_PATH=f"{pki.theirs}/")
    return env


def assert_tls13(keylog: Path) -> None:
    """The handshake was TLS 1.3: its key log has the 1.3 traffic secrets, never 1.2's CLIENT_RANDOM."""
    labels = {line.split()[0] for line in keylog.read_text().splitlines()}
    assert {"CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_TRAFFIC_SECRET_0"} <= labels, labels
    assert "CLIENT_RANDOM" not in labels


def run_their_secc_with_our_evcc(link: VethPair, peer_python: Path, tmp_path: Path, extra: list[str],
                                 pki: Pki | None = None) -> tuple[subprocess.CompletedProcess[str], str]:
    log = (tmp_path / "secc.log").open("w")
    secc = subprocess.Popen(link.cmd(link.secc_ns, str(peer_python), "-m", "iso15118.secc.main"), cwd=tmp_path,
                            env=peer_env(link.secc_if, pki), stdout=log, stderr=subprocess.STDOUT)
    security = ["--no-tls"] if pki is None else pki.our_options(tmp_path / "keylog")
    try:
        time.sleep(3.0)  # their SECC starts a JVM before it listens
        ev = subprocess.run(link.cmd(link.ev_ns, *V2GTOOL, "--json", "v2g-message-handler", "connect", "--iface",
                                     link.ev_if, *security, "--duration", "2", "--service", "DC_BPT", *extra),
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


def assert_whole_evcc_session(ev: subprocess.CompletedProcess[str], their_log: str) -> None:
    assert ev.returncode == 0, ev.stderr + their_log[-3000:]
    records = [json.loads(line) for line in ev.stdout.splitlines()]
    sent = [r["message"] for r in records if r["event"] == "MessageSent"]
    for name in ("SessionSetupReq", "ServiceSelectionReq", "DC_ChargeParameterDiscoveryReq", "ScheduleExchangeReq",
                 "DC_CableCheckReq", "DC_PreChargeReq", "PowerDeliveryReq", "DC_ChargeLoopReq",
                 "DC_WeldingDetectionReq", "SessionStopReq"):
        assert name in sent
    assert "Chosen protocol: ISO_15118_20_DC" in their_log


def test_our_evcc_against_their_secc(link: VethPair, peer_python: Path, tmp_path: Path) -> None:
    # Accept their 1 V precharge voltage (see above) to exercise the rest of the session.
    ev, their_log = run_their_secc_with_our_evcc(link, peer_python, tmp_path, ["--precharge-tolerance", "1000"])
    assert_whole_evcc_session(ev, their_log)


def test_our_evcc_against_their_secc_over_tls13(link: VethPair, peer_python: Path, pki: Pki,
                                                tmp_path: Path) -> None:
    """Our EVCC asks for TLS in SDP; their SECC (ENABLE_TLS_1_3) presents our CPO chain and requires a
    client certificate under the OEM root, which our EVCC's vehicle chain satisfies."""
    ev, their_log = run_their_secc_with_our_evcc(link, peer_python, tmp_path, ["--precharge-tolerance", "1000"], pki)
    assert_whole_evcc_session(ev, their_log)
    assert "SDPRequest received: [Security: TLS" in their_log and "TLS server started" in their_log
    assert_tls13(tmp_path / "keylog")


def test_their_secc_refuses_a_vehicle_outside_its_oem_root(link: VethPair, peer_python: Path, pki: Pki,
                                                           tmp_path: Path) -> None:
    """Mutual authentication is real on their side: with the MO root as their only OEM trust anchor,
    our vehicle certificate is refused. Under TLS 1.3 the client's handshake is complete before the
    server has checked its certificate, so our EVCC learns of the refusal with its first request: the
    connection is reset or closed (their asyncio server closes without an alert), or, when neither is
    seen, the supportedAppProtocolRes message timeout (2 s, Table 107) ends the session. Either way: one line."""
    theirs = tmp_path / "theirs"
    shutil.copytree(pki.theirs, theirs)
    shutil.copyfile(pki.certs / "ca" / "mo_root_ca.pem", theirs / "iso15118_2" / "certs" / "oemRootCACert.pem")
    ev, their_log = run_their_secc_with_our_evcc(link, peer_python, tmp_path, [], Pki(pki.certs, pki.trust, theirs))
    (line,) = ev.stderr.strip().splitlines()
    if ev.returncode == ExitCode.TIMEOUT:
        assert line == "v2gtool: error: EVCC session failed: timeout waiting for supportedAppProtocolRes"
    else:
        assert ev.returncode == ExitCode.FAILURE
        assert line.startswith(("v2gtool: error: EVCC session failed: the connection failed: ConnectionResetError",
                                "v2gtool: error: EVCC session failed: the peer closed the connection"))
    sent = [json.loads(record)["message"] for record in ev.stdout.splitlines() if '"MessageSent"' in record]
    assert sent == ["supportedAppProtocolReq"]
    assert "TLS server started" in their_log and "supportedAppProtocolReq" not in their_log


def run_their_evcc_with_our_secc(link: VethPair, peer_python: Path, tmp_path: Path,
                                 pki: Pki | None = None) -> tuple[list[dict[str, object]], str, str]:
    """Our SECC serves one session to their EVCC; returns our event records, our stderr and their log.
    The session fails (see below), so `serve --sessions 1` exits 1 with one line."""
    config = tmp_path / "evcc.json"
    config.write_text(json.dumps({
        "supportedProtocols": ["ISO_15118_20_DC"], "supportedEnergyServices": ["DC_BPT"],
        "energyTransferMode": "DC_extended", "isCertInstallNeeded": False, "useTls": pki is not None,
        "enforceTls": pki is not None, "chargeLoopCycle": 10}))
    security = ["--no-tls"] if pki is None else pki.our_options(tmp_path / "keylog")
    secc = subprocess.Popen(link.cmd(link.secc_ns, *V2GTOOL, "--json", "v2g-message-handler", "serve", "--iface",
                                     link.secc_if, *security, "--sessions", "1", "--speed", "10"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ev_log = (tmp_path / "evcc.log").open("w")
    ev = None
    try:
        time.sleep(1.0)
        # their EVCC does not exit after a failed session: it is stopped once our SECC has finished
        # and it has logged our last response (it decodes slowly)
        ev = subprocess.Popen(link.cmd(link.ev_ns, str(peer_python), "-m", "iso15118.evcc.main", str(config)),
                              cwd=tmp_path, env=peer_env(link.ev_if, pki), stdout=ev_log, stderr=subprocess.STDOUT)
        secc_out, secc_err = secc.communicate(timeout=150)
        for _ in range(100):
            if "FAILED_POWER_DELIVERY_NOT_APPLIED" in (tmp_path / "evcc.log").read_text(errors="replace"):
                break
            time.sleep(0.1)
    finally:
        secc.kill()
        if ev is not None:
            ev.terminate()
            ev.wait(timeout=30)
        ev_log.close()
    assert secc.returncode == ExitCode.FAILURE, secc_err
    assert secc_err.startswith("v2gtool: error: SECC session failed: PowerDeliveryRes FAILED_PowerDeliveryNotApplied")
    assert secc_err.count("\n") == 1
    records = [json.loads(line) for line in secc_out.splitlines()]
    return records, secc_err, (tmp_path / "evcc.log").read_text(errors="replace")


def assert_their_evcc_stopped_by_our_interlock(records: list[dict[str, object]], secc_err: str,
                                               their_log: str) -> None:
    """Their EVCC runs the whole -20 DC_BPT sequence against our SECC up to PowerDelivery. There its
    simulated EV reports EVPresentVoltage = 20000 V (its RationalNumber, an impossible battery) and
    leaves precharge after five rounds whatever the DC link shows; our SECC's interlock then refuses
    to enable energy transfer (FAILED_PowerDeliveryNotApplied, precharge mismatch), as it must."""
    received = [r["message"] for r in records if r["event"] == "MessageReceived"]
    for name in ("supportedAppProtocolReq", "SessionSetupReq", "AuthorizationSetupReq", "AuthorizationReq",
                 "ServiceDiscoveryReq", "ServiceDetailReq", "ServiceSelectionReq", "DC_ChargeParameterDiscoveryReq",
                 "ScheduleExchangeReq", "DC_CableCheckReq", "DC_PreChargeReq", "PowerDeliveryReq"):
        assert name in received, (name, their_log[-2000:], secc_err)
    (ended,) = [r for r in records if r["event"] == "SessionEnded"]
    assert ended["response_code"] == "FAILED_PowerDeliveryNotApplied"
    reason = str(ended["reason"])
    assert "PRECHARGE_MISMATCH" in reason and "battery 20000.0 V" in reason
    assert "FAILED_POWER_DELIVERY_NOT_APPLIED" in their_log


def test_their_evcc_against_our_secc(link: VethPair, peer_python: Path, tmp_path: Path) -> None:
    assert_their_evcc_stopped_by_our_interlock(*run_their_evcc_with_our_secc(link, peer_python, tmp_path))


def test_their_evcc_against_our_secc_over_tls13(link: VethPair, peer_python: Path, pki: Pki,
                                                tmp_path: Path) -> None:
    """Their EVCC (useTls, enforceTls, ENABLE_TLS_1_3) trusts our V2G root and presents our OEM chain,
    which our SECC requires and verifies against its trust directory."""
    records, secc_err, their_log = run_their_evcc_with_our_secc(link, peer_python, tmp_path, pki)
    assert_their_evcc_stopped_by_our_interlock(records, secc_err, their_log)
    assert_tls13(tmp_path / "keylog")


def test_our_dynamic_evcc_against_their_secc(link: VethPair, peer_python: Path, tmp_path: Path) -> None:
    """Their PowerDeliveryReq validator wants an EVPowerProfile with EVProcessing Finished and
    ChargeProgress Start (optional in the schema) and leaves a request without one unanswered: our EV
    sends one with Dynamic_EVPPTControlMode in Dynamic mode too."""
    ev, their_log = run_their_secc_with_our_evcc(
        link, peer_python, tmp_path, ["--precharge-tolerance", "1000", "--control-mode", "dynamic"]
    )
    assert_whole_evcc_session(ev, their_log)
    assert "PowerDeliveryReq received" in their_log and "EVPowerProfile is not set" not in their_log
