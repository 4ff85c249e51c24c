"""`session run --netns`: what the parent owes its two children and the user: the scenario and the
options reach both sides, the veth link is captured into --trace, a signal stops both children and
removes the namespaces, and the exit status is the most specific child's."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.session.trace_pipe import trace_through_pcap_decode
from v2gtool.cli.session import _netns_exit
from v2gtool.exit_codes import ExitCode
from v2gtool.net.pcapwriter import PcapWriteError, PcapWriter
from v2gtool.pcap.reader import read_capture

V2GTOOL = [sys.executable, "-m", "v2gtool"]
netns = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")


@pytest.mark.parametrize(("codes", "expected"), [
    ((ExitCode.SECURITY, ExitCode.FAILURE), ExitCode.SECURITY),  # the TLS failure, not the lost peer
    ((ExitCode.FAILURE, ExitCode.TIMEOUT), ExitCode.TIMEOUT),
    ((ExitCode.TIMEOUT, ExitCode.SAFETY), ExitCode.SAFETY),  # the trip made the other side wait
    ((ExitCode.TIMEOUT, ExitCode.USAGE), ExitCode.USAGE),
    ((ExitCode.FAILURE, -signal.SIGKILL), ExitCode.FAILURE),
])
def test_the_most_specific_childs_exit_status_wins(codes: tuple[int, int], expected: ExitCode) -> None:
    assert _netns_exit(*codes) == expected


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    base = tmp_path_factory.mktemp("pki")
    subprocess.run([*V2GTOOL, "pki", "init", str(base)], check=True, capture_output=True, timeout=120)
    return ["--certs-dir", str(base / "certs"), "--trust-dir", str(base / "trust" / "certs")]


@pytest.mark.netns
@netns
def test_dynamic_discharge_with_the_scenario_trace_and_keylog(tmp_path: Path, pki: list[str]) -> None:
    """The EVSE child gets the grid request (it charged at the EV's maximum before), both children the
    scenario's standby and metering confirmations, the EV child the key log; the parent captures the
    veth link into the trace."""
    scenario, trace, keylog = tmp_path / "s.toml", tmp_path / "trace.pcap", tmp_path / "keys.log"
    scenario.write_text("[session]\nstandby_at = 2\nstandby_for = 1\nmetering_confirmation_interval = 1.5\n")
    proc = subprocess.run([*V2GTOOL, "--json", "session", "run", "--netns", *pki, "--scenario", str(scenario),
                           "--duration", "6", "--control-mode", "dynamic", "--direction", "discharge", "--power",
                           "5000", "--trace", str(trace), "--keylog", str(keylog)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    powers = [r["power"] for r in records if r["event"] == "PowerFlow" and r["role"] == "EVCC"]
    assert powers and all(-5100 < p <= 0 for p in powers) and min(powers) < -4900
    progress = [r["summary"]["ChargeProgress"] for r in records
                if r["event"] == "MessageReceived" and r["message"] == "PowerDeliveryReq"]
    assert progress == ["Start", "Standby", "Start", "Stop"]
    assert any(r["event"] == "MessageSent" and r["message"] == "MeteringConfirmationReq" for r in records)
    assert "CLIENT_TRAFFIC_SECRET_0" in keylog.read_text()
    with trace.open("rb") as stream:
        frames = [p.data for p in read_capture(stream)]
    assert any(f[12:14] == b"\x88\xe1" for f in frames)  # SLAC (HomePlug AV) on the veth link
    assert sum(f[12:14] == b"\x86\xdd" and f[20] == 6 for f in frames) > 20  # the TLS session over TCP


def _children_of(pid: int) -> list[int]:
    """The v2gtool processes that run a side for the parent *pid* (their --iface names its pid)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(arg in (f"v2gns{pid}".encode(), f"v2gne{pid}".encode()) for arg in argv):
                found.append(int(entry.name))
    return found


@pytest.mark.netns
@netns
@pytest.mark.parametrize(("signum", "times"), [(signal.SIGTERM, 1), (signal.SIGINT, 1), (signal.SIGINT, 3)])
def test_a_signal_stops_both_children_and_removes_the_namespaces(signum: signal.Signals, times: int) -> None:
    """One signal, or an impatient operator's several (they must not cut the clean-up short)."""
    parent = subprocess.Popen([*V2GTOOL, "--json", "session", "run", "--netns", "--no-tls", "--no-trace",
                               "--duration", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while len(_children_of(parent.pid)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert len(_children_of(parent.pid)) == 2
    time.sleep(3)  # into the session
    for _ in range(times):
        if parent.poll() is None:
            parent.send_signal(signum)
            time.sleep(0.3)
    _out, err = parent.communicate(timeout=60)
    assert parent.returncode == ExitCode.INTERRUPTED
    assert "Traceback" not in err and "BrokenPipeError" not in err
    assert _children_of(parent.pid) == []
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert f"v2gn{parent.pid}" not in namespaces


@pytest.mark.netns
@netns
def test_an_emergency_stop_on_the_evse_side_exits_6(tmp_path: Path) -> None:
    """The EVSE child's interlock trips (exit 6), the EV's session fails (exit 1): the parent says 6."""
    scenario = tmp_path / "estop.toml"
    scenario.write_text('[[at]]\nt = 0\ncp = "C"\n[[at]]\nt = 4\nestop = true\n')
    proc = subprocess.run([*V2GTOOL, "session", "run", "--netns", "--no-tls", "--no-trace", "--scenario",
                           str(scenario), "--duration", "20"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == ExitCode.SAFETY, proc.stderr
    assert "SECC session failed: interlock tripped: EMERGENCY_STOP" in proc.stderr
    assert proc.stderr.splitlines()[-1].startswith("v2gtool: error: --netns session failed: EV exit 1, EVSE exit 6")
    assert "Traceback" not in proc.stderr


def test_a_pcap_header_that_cannot_be_written_is_one_line() -> None:
    """ENOSPC on the header is the PcapWriteError of any other write, not an OSError traceback."""
    with pytest.raises(PcapWriteError, match=r"^cannot write pcap file /dev/full: No space left on device$"):
        PcapWriter(Path("/dev/full"))


@pytest.mark.netns
@netns
def test_the_children_read_the_parents_config_file(tmp_path: Path) -> None:
    """--config reaches both sides: the EVSE's [hw] SoC floor refuses a discharge below it."""
    config = tmp_path / "floor.toml"
    config.write_text("[hw]\nsoc_floor_percent = 60\n")  # the plant starts at 50 %
    proc = subprocess.run([*V2GTOOL, "--config", str(config), "--json", "session", "run", "--netns", "--no-tls",
                           "--no-trace", "--direction", "discharge", "--duration", "5"],
                          capture_output=True, text=True, timeout=300)
    assert "discharge refused at SoC 50.0 % (floor 60.0 %)" in proc.stderr, proc.stderr


def test_speed_is_for_the_simulation_only() -> None:
    proc = subprocess.run([*V2GTOOL, "session", "run", "--netns", "--speed", "10"], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == ExitCode.USAGE and "--speed sets the simulated time of --sim" in proc.stderr


@pytest.mark.netns
@netns
def test_the_evse_listens_on_the_configured_port_and_the_trace_goes_to_stdout(tmp_path: Path) -> None:
    """``[sdp] tcp_port`` (here from the environment, which both children inherit) is where the EVSE
    side's SECC listens and what its SDP response announces; ``--trace -`` pipes the veth capture
    into ``pcap-decode -`` while the children's lines go to stderr."""
    env = {**os.environ, "V2GTOOL_SDP__TCP_PORT": "50123"}
    records, run_err = trace_through_pcap_decode(
        ["session", "run", "--netns", "--no-tls", "--duration", "1", "--trace", "-"], tmp_path, 300, env
    )
    (response,) = [r for r in records if r["event"] == "SdpMessage" and r["message"] == "SDPRes"]
    assert response["fields"]["secc_port"] == 50123
    assert any(r["event"] == "V2GMessage" and r["message"] == "SessionStopRes" for r in records)
    assert "EVCC session ended: SessionStop Terminate" in run_err  # the children's lines: on stderr
