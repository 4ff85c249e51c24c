"""serve / connect over a real link: two network namespaces joined by veth, SDP on ff02::1, TCP on
IPv6 link-local, plain and TLS 1.3 with mutual authentication (the PKI of `pki init`)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.netns import VethPair, veth_pair
from v2gtool.exit_codes import ExitCode

pytestmark = pytest.mark.netns
V2GTOOL = [sys.executable, "-m", "v2gtool"]


@pytest.fixture(scope="module")
def link() -> Iterator[VethPair]:
    with veth_pair("v2gl") as pair:
        yield pair


def run_pair(link: VethPair, serve_args: list[str], connect_args: list[str]) -> tuple[list[dict[str, object]], str]:
    secc = subprocess.Popen(link.cmd(link.secc_ns, *V2GTOOL, "--json", "v2g-message-handler", "serve", "--iface",
                                     link.secc_if, "--sessions", "1", *serve_args),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ev = subprocess.run(link.cmd(link.ev_ns, *V2GTOOL, "--json", "v2g-message-handler", "connect", "--iface",
                                     link.ev_if, *connect_args), capture_output=True, text=True, timeout=120)
        secc_out, secc_err = secc.communicate(timeout=30)
    finally:
        secc.kill()
    assert ev.returncode == 0, ev.stderr + secc_err
    assert secc.returncode == 0, secc_err
    return [json.loads(line) for line in ev.stdout.splitlines()], secc_out


def test_plain_session_over_veth(link: VethPair) -> None:
    records, secc_out = run_pair(link, ["--no-tls"], ["--no-tls", "--duration", "3", "--direction", "discharge"])
    sent = [r["message"] for r in records if r["event"] == "MessageSent"]
    assert sent[0] == "supportedAppProtocolReq" and sent[-1] == "SessionStopReq"
    assert "DC_ChargeLoopReq" in sent
    assert records[-1]["event"] == "SessionEnded" and records[-1]["ok"] is True
    assert '"message":"SessionStopRes"' in secc_out


def test_tls13_mutual_auth_session_over_veth(link: VethPair, tmp_path: Path) -> None:
    subprocess.run([*V2GTOOL, "pki", "init", str(tmp_path)], check=True, capture_output=True, timeout=120)
    dirs = ["--certs-dir", str(tmp_path / "certs"), "--trust-dir", str(tmp_path / "trust" / "certs")]
    keylog = tmp_path / "keys.log"
    records, _ = run_pair(link, dirs, [*dirs, "--duration", "2", "--keylog", str(keylog)])
    assert records[-1]["event"] == "SessionEnded" and records[-1]["ok"] is True
    assert "CLIENT_TRAFFIC_SECRET_0" in keylog.read_text()


def test_tls_failure_with_an_untrusted_secc_is_one_line(link: VethPair, tmp_path: Path) -> None:
    """The EV trusts another V2G root than the one that signed the SECC's chain: the handshake fails
    within the communication-setup timeout and connect says so in one line, exit 5 (TLS failure)."""
    for name in ("charger", "other"):
        subprocess.run([*V2GTOOL, "pki", "init", str(tmp_path / name)], check=True, capture_output=True, timeout=120)
    secc = subprocess.Popen(link.cmd(link.secc_ns, *V2GTOOL, "v2g-message-handler", "serve", "--iface", link.secc_if,
                                     "--sessions", "1", "--certs-dir", str(tmp_path / "charger" / "certs"),
                                     "--trust-dir", str(tmp_path / "charger" / "trust" / "certs")),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ev = subprocess.run(link.cmd(link.ev_ns, *V2GTOOL, "v2g-message-handler", "connect", "--iface", link.ev_if,
                                     "--certs-dir", str(tmp_path / "other" / "certs"),
                                     "--trust-dir", str(tmp_path / "other" / "trust" / "certs")),
                            capture_output=True, text=True, timeout=120)
    finally:
        secc.terminate()
        secc.communicate(timeout=30)
    assert ev.returncode == ExitCode.SECURITY
    assert ev.stderr.count("\n") == 1 and "Traceback" not in ev.stderr
    assert "cannot connect to" in ev.stderr and "CERTIFICATE_VERIFY_FAILED" in ev.stderr


def test_session_run_netns_whole_chain_in_two_processes(tmp_path: Path) -> None:
    """`session run --netns`: EVSE and EV as separate processes in two namespaces over veth: raw
    AF_PACKET SLAC (behind the simulated modems), SDP on ff02::1, TLS 1.3 with mutual auth, -20."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    subprocess.run([*V2GTOOL, "pki", "init", str(tmp_path)], check=True, capture_output=True, timeout=120)
    proc = subprocess.run([*V2GTOOL, "--json", "session", "run", "--netns", "--duration", "2", "--direction",
                           "discharge", "--certs-dir", str(tmp_path / "certs"),
                           "--trust-dir", str(tmp_path / "trust" / "certs")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    matched = {r["role"]: r for r in records if r["event"] == "SlacMatched"}
    assert set(matched) == {"ev", "evse"} and matched["ev"]["nid"] == matched["evse"]["nid"]
    assert all(r["nmk"] == "" for r in matched.values())
    ended = {r["role"]: r for r in records if r["event"] == "SessionEnded"}
    assert ended["EVCC"]["ok"] and ended["SECC"]["ok"]
    assert any(r["event"] == "PowerFlow" and r["current"] < 0 for r in records)


def test_serve_logs_a_refused_tls_handshake(link: VethPair, tmp_path: Path) -> None:
    """A TLS 1.2 ClientHello (ISO 15118-20 requires TLS 1.3): serve reports the peer and OpenSSL's reason
    as an event, and the client sees the protocol_version alert (RFC 8446 clause 6.2), not a bare FIN."""
    subprocess.run([*V2GTOOL, "pki", "init", str(tmp_path)], check=True, capture_output=True, timeout=120)
    secc = subprocess.Popen(link.cmd(link.secc_ns, *V2GTOOL, "--json", "v2g-message-handler", "serve", "--iface",
                                     link.secc_if, "--certs-dir", str(tmp_path / "certs"),
                                     "--trust-dir", str(tmp_path / "trust" / "certs")),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        shown = subprocess.run(["ip", "-n", link.secc_ns, "-6", "addr", "show", "dev", link.secc_if, "scope", "link"],
                               capture_output=True, text=True, timeout=10).stdout
        address = shown.split("inet6 ", 1)[1].split("/", 1)[0]
        client = None
        for _ in range(100):  # until serve listens
            client = subprocess.run(link.cmd(link.ev_ns, "openssl", "s_client", "-tls1_2", "-connect",
                                             f"[{address}%{link.ev_if}]:64109"),
                                    input="", capture_output=True, text=True, timeout=20)
            if "Connection refused" not in client.stdout + client.stderr:
                break
            time.sleep(0.1)
        time.sleep(0.5)
    finally:
        secc.terminate()
        secc_out, secc_err = secc.communicate(timeout=30)
    assert client is not None and "alert protocol version" in client.stdout + client.stderr
    failed = [json.loads(line) for line in secc_out.splitlines() if '"TlsHandshakeFailed"' in line]
    assert len(failed) == 1, secc_out + secc_err
    assert failed[0]["peer"].startswith("[fe80::") and failed[0]["error"].endswith(": unsupported protocol")


def test_serve_stopped_before_its_counted_sessions_ended_exits_130(link: VethPair) -> None:
    """``serve --sessions N`` exits with its sessions' status: one cut short by SIGINT is no success."""
    secc = subprocess.Popen(link.cmd(link.secc_ns, *V2GTOOL, "--json", "v2g-message-handler", "serve", "--iface",
                                     link.secc_if, "--sessions", "1", "--no-tls"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ev = subprocess.Popen(link.cmd(link.ev_ns, *V2GTOOL, "--json", "v2g-message-handler", "connect", "--iface",
                                   link.ev_if, "--no-tls", "--duration", "600"),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert ev.stdout is not None
        for line in ev.stdout:  # the loop runs
            if json.loads(line).get("event") == "PowerFlow":
                break
        secc.send_signal(signal.SIGINT)
        _out, err = secc.communicate(timeout=30)
    finally:
        for process in (secc, ev):
            process.kill()
            process.wait()
    assert secc.returncode == ExitCode.INTERRUPTED, err
    assert "SECC stopped after 0 of 1 session(s)" in err


def test_serve_exits_6_on_a_safety_trip_after_its_stop_action_ended(link: VethPair, tmp_path: Path) -> None:
    """The cable check finds an isolation fault: the session fails, and ``serve --sessions 1`` exits
    6, as ``session run --role evse`` does (one check_served), once the ``[hw] on_fault_exec`` stop
    action (it takes a second) has ended and been reported."""
    marker, config, scenario = tmp_path / "stopped", tmp_path / "v2gtool.toml", tmp_path / "fault.toml"
    action = f"{sys.executable} -c \"import time; time.sleep(1); open('{marker}', 'w')\""
    config.write_text(f"[hw]\non_fault_exec = {json.dumps(action)}\n")  # a TOML basic string
    scenario.write_text('[plant]\ninsulation_ohm = 60e3\n')
    records, errors = tmp_path / "secc.jsonl", tmp_path / "secc.err"
    with records.open("w") as out, errors.open("w") as err:  # files: the stop action inherits them
        secc = subprocess.Popen(link.cmd(link.secc_ns, *V2GTOOL, "--config", str(config), "--json",
                                         "v2g-message-handler", "serve", "--iface", link.secc_if, "--sessions", "1",
                                         "--no-tls", "--scenario", str(scenario)), stdout=out, stderr=err)
        try:
            ev = subprocess.run(link.cmd(link.ev_ns, *V2GTOOL, "v2g-message-handler", "connect", "--iface",
                                         link.ev_if, "--no-tls"), capture_output=True, text=True, timeout=120)
            secc.wait(timeout=60)
        finally:
            secc.kill()
            secc.wait()
    assert ev.returncode == ExitCode.FAILURE, ev.stderr
    assert secc.returncode == ExitCode.SAFETY, errors.read_text()
    assert errors.read_text().startswith("v2gtool: error: SECC session failed: interlock tripped: ISOLATION_FAULT")
    assert errors.read_text().count("\n") == 1
    assert marker.exists()
    stops = [r for line in records.read_text().splitlines() if (r := json.loads(line))["event"] == "StopActionRun"]
    assert [r["returncode"] for r in stops if r["command"]] == [0]
