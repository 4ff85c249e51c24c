"""`session run --sim`: whole ISO 15118-20 sessions, EVCC against SECC over TCP on the sim plant."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from v2gtool.exit_codes import ExitCode
from v2gtool.hw.cp import CpState
from v2gtool.hw.events import ContactorsClosed, ContactorsClosing, CpStateChanged, EnergyTransferEnabled
from v2gtool.iso20.evcc import Direction
from v2gtool.iso20.events import PhaseChanged, PowerFlow
from v2gtool.iso20.values import ControlMode, ServiceID
from v2gtool.net.pcapwriter import PcapWriteFailed
from v2gtool.session import scenario as scenarios
from v2gtool.session.events import Event
from v2gtool.session.runner import SessionResult, run_sim
from v2gtool.session.trace import SessionTrace

SEQUENCE = [
    "supportedAppProtocolReq", "SessionSetupReq", "AuthorizationSetupReq", "AuthorizationReq",
    "ServiceDiscoveryReq", "ServiceDetailReq", "ServiceSelectionReq", "DC_ChargeParameterDiscoveryReq",
    "ScheduleExchangeReq", "DC_CableCheckReq", "DC_PreChargeReq", "PowerDeliveryReq", "DC_ChargeLoopReq",
    "PowerDeliveryReq", "DC_WeldingDetectionReq", "SessionStopReq",
]


def run(**overrides: object) -> SessionResult:
    scenario = scenarios.load(None, **overrides)  # type: ignore[arg-type]
    return asyncio.run(run_sim(scenario))


def collapse(requests: list[str]) -> list[str]:
    """The request sequence with repetitions (Ongoing polls, the loop) folded into one."""
    out: list[str] = []
    for name in requests:
        if not out or out[-1] != name:
            out.append(name)
    return out


def assert_contactors_followed_the_interlock(events: list[Event]) -> None:
    """Contactors closed only in CP state C or D, and energy transfer only after they closed."""
    cp: CpState | None = None
    closed = False
    for event in events:
        if isinstance(event, CpStateChanged):
            cp = event.state
        elif isinstance(event, ContactorsClosing | ContactorsClosed):
            assert cp in (CpState.C, CpState.D), f"contactors closing in CP state {cp}"
            closed = closed or isinstance(event, ContactorsClosed)
        elif isinstance(event, EnergyTransferEnabled):
            assert closed and cp in (CpState.C, CpState.D)


@pytest.mark.parametrize("mode", [ControlMode.SCHEDULED, ControlMode.DYNAMIC])
def test_full_charge_session(mode: ControlMode) -> None:
    result = run(direction=Direction.CHARGE, control_mode=mode, duration=20.0)
    assert result.ok, result.reason
    assert collapse(result.requests) == SEQUENCE
    assert result.requests.count("DC_ChargeLoopReq") >= 70  # 20 s at 250 ms
    assert result.energy_wh > 200  # ~48 kW for 20 s: the vehicle's 125 A at ~380 V
    assert result.soc_end > result.soc_start
    flows = [e for e in result.events if isinstance(e, PowerFlow) and e.role == "EVCC"]
    assert all(f.current >= 0 for f in flows)
    assert max(f.current for f in flows) == pytest.approx(125.0, abs=1.0)  # EV limit < charger limit
    assert_contactors_followed_the_interlock(result.events)


@pytest.mark.parametrize("mode", [ControlMode.SCHEDULED, ControlMode.DYNAMIC])
def test_full_discharge_v2g_session(mode: ControlMode) -> None:
    result = run(direction=Direction.DISCHARGE, control_mode=mode, power=11_000.0, duration=30.0)
    assert result.ok, result.reason
    assert collapse(result.requests) == SEQUENCE
    assert result.energy_wh < 0 and result.soc_end < result.soc_start
    flows = [e for e in result.events if isinstance(e, PowerFlow) and e.role == "EVCC"]
    steady = flows[len(flows) // 2:]
    assert all(f.current < 0 for f in steady)
    # 11 kW requested; the vehicle allows 32 A of discharge current
    assert all(-11_200 <= f.power <= -10_000 for f in steady), [round(f.power) for f in steady]
    # energy that moved: about 11 kW for 30 s
    assert -95.0 < result.energy_wh < -80.0
    assert_contactors_followed_the_interlock(result.events)


def test_dc_only_service_without_bpt() -> None:
    result = run(service=ServiceID.DC, bpt=False, duration=5.0)
    assert result.ok, result.reason
    assert result.energy_wh > 0


def test_discharge_needs_bpt_offered(tmp_path: Path) -> None:
    result = run(direction=Direction.DISCHARGE, bpt=False, duration=5.0)
    assert not result.ok
    assert result.reason == "SECC does not offer DC_BPT (offers DC)"
    # the EV ends the session itself, and the command names the step it stopped in
    path = tmp_path / "dc-only.toml"
    path.write_text("[charger]\nbpt = false\n")
    proc = subprocess.run([sys.executable, "-m", "v2gtool", "session", "run", "--sim", "--no-trace", "--direction",
                           "discharge", "--scenario", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert proc.stderr == ("v2gtool: error: session failed in ServiceDiscovery: SECC does not offer DC_BPT "
                           "(offers DC)\n")


def test_battery_outside_the_evse_voltage_range_stops_before_precharge(tmp_path: Path) -> None:
    # a 300 V charger cannot precharge a ~380 V battery: the EV says so after ChargeParameterDiscovery
    # and ends with SessionStop Terminate, not after V2G_EVCC_PreCharge_Timeout
    path = tmp_path / "low-voltage.toml"
    path.write_text("[charger]\nmax_voltage = 300\n")
    result = asyncio.run(run_sim(scenarios.load(path, duration=5.0)))
    assert not result.ok
    assert re.fullmatch(r"battery at \d+\.\d V is outside the EVSE's voltage range 150\.0-300\.0 V", result.reason)
    assert collapse(result.requests)[-2:] == ["DC_ChargeParameterDiscoveryReq", "SessionStopReq"]
    assert not any(isinstance(e, ContactorsClosed) for e in result.events)
    assert result.duration < 5.0


def test_isolation_fault_during_cable_check(tmp_path: Path) -> None:
    path = tmp_path / "iso.toml"
    path.write_text('[plant]\ninsulation_ohm = 40e3\n')
    result = asyncio.run(run_sim(scenarios.load(path, duration=5.0)))
    assert not result.ok
    assert "DC_CableCheckRes FAILED" in result.reason
    assert "DC_ChargeLoopReq" not in result.requests
    phases = [e.phase for e in result.events if isinstance(e, PhaseChanged) and e.role == "EVCC"]
    assert phases[-1] == "DC_CableCheck"


def test_ev_unplugged_mid_loop_stops_the_session(tmp_path: Path) -> None:
    path = tmp_path / "unplug.toml"
    path.write_text('[[at]]\nt = 0.0\ncp = "C"\n[[at]]\nt = 25.0\ncp = "A"\n')
    result = asyncio.run(run_sim(scenarios.load(path, duration=60.0)))
    assert not result.ok
    assert "DC_ChargeLoopRes FAILED" in result.reason
    assert "CP" in result.secc_reason
    assert result.energy_wh > 0  # it did charge before the plug came out


def test_soc_floor_stops_discharge(tmp_path: Path) -> None:
    path = tmp_path / "floor.toml"
    path.write_text('[plant]\nsoc = 0.2005\n[session]\nmin_soc = 19\n')
    result = asyncio.run(run_sim(scenarios.load(path, direction=Direction.DISCHARGE, duration=60.0)))
    # The station's 20 % floor refuses discharge (EVSE_Shutdown_Rejected): no energy leaves below it.
    assert result.soc_end >= 19.99
    assert any(e.name == "DischargeRefused" for e in result.events)


def test_cli_session_run_json(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "v2gtool", "--json", "session", "run", "--sim", "--direction",
                           "discharge", "--duration", "5", "--service", "DC_V2G"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    summary = records[-1]
    assert summary["event"] == "SessionSummary" and summary["ok"] is True
    assert summary["energy_wh"] < 0
    assert any(r["event"] == "PowerFlow" and r["current"] < 0 for r in records)
    # the chain starts with SLAC on the simulated cable; the network key never reaches the output
    assert any(r["event"] == "SlacLinkReady" for r in records)
    matched = [r for r in records if r["event"] == "SlacMatched"]
    assert len(matched) == 2 and all(r["nmk"] == "" for r in matched)


@pytest.mark.parametrize(("scenario", "cause", "code"), [
    ("[plant]\ninsulation_ohm = 40e3\n", "(insulation 39.9 kΩ below the 100 kΩ fault threshold)", ExitCode.SAFETY),
    ('[[at]]\nt = 0\ncp = "C"\n[[at]]\nt = 0\nfault = "imd_self_test"\n', "(cable check: IMD self-test failed)",
     ExitCode.FAILURE),
    ('[[at]]\nt = 0\ncp = "C"\n[[at]]\nt = 0\nfault = "stuck_open"\n', "(contactor K1 stuck open)", ExitCode.SAFETY),
])
def test_cli_failed_session_names_the_cause_and_the_debugging_subcommand(tmp_path: Path, scenario: str,
                                                                           cause: str, code: ExitCode) -> None:
    """A ResponseCode FAILED has no text: the station's own fault is named beside it. A safety trip
    (isolation fault, Contactor Stuck) exits 6, a cable check that could not measure 1."""
    path = tmp_path / "fault.toml"
    path.write_text(scenario)
    proc = subprocess.run([sys.executable, "-m", "v2gtool", "session", "run", "--sim", "--no-trace", "--scenario",
                           str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == code
    assert proc.stderr == (f"v2gtool: error: session failed in DC_CableCheck: DC_CableCheckRes FAILED {cause}; "
                           "debug with `v2gtool isolation-check`\n")


@pytest.mark.parametrize(("step", "cause", "code"), [
    ("estop = true", "(interlock tripped: emergency stop pressed)", ExitCode.SAFETY),
    ("insulation_ohm = 40e3", "(insulation ", ExitCode.SAFETY),  # the IMD's reading when it tripped
    ('cp = "A"', "(interlock tripped: CP state is not C or D (IEC 61851-1 Table A.3))", ExitCode.FAILURE),
])
def test_cli_trip_in_the_loop_names_the_interlock_rule_and_a_safety_trip_exits_6(
    tmp_path: Path, step: str, cause: str, code: ExitCode
) -> None:
    """README "Exit status": 6 when a safety interlock tripped (emergency stop, isolation fault);
    an unplug (CP leaves C) is a failed session (1). Either way the line says which rule tripped."""
    path = tmp_path / "trip.toml"
    path.write_text(f'[[at]]\nt = 0\ncp = "C"\n[[at]]\nt = 30\n{step}\n')
    proc = subprocess.run([sys.executable, "-m", "v2gtool", "session", "run", "--sim", "--no-trace", "--scenario",
                           str(path), "--duration", "60"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == code, proc.stderr
    assert proc.stderr.startswith("v2gtool: error: session failed in DC_ChargeLoop: DC_ChargeLoopRes FAILED "
                                  f"{cause}"), proc.stderr
    # no subcommand debugs a pressed emergency stop: no hint for it
    hint = "" if step == "estop = true" else "; debug with `v2gtool contactor status`"
    assert proc.stderr.endswith(f"){hint}\n"), proc.stderr


def test_cli_weld_at_the_end_exits_6(tmp_path: Path) -> None:
    path = tmp_path / "weld.toml"
    path.write_text('[[at]]\nt = 0\ncp = "C"\n[[at]]\nt = 5\nfault = "weld"\n')
    proc = subprocess.run([sys.executable, "-m", "v2gtool", "session", "run", "--sim", "--no-trace", "--scenario",
                           str(path), "--duration", "3"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == ExitCode.SAFETY, proc.stderr
    assert "stuck closed" in proc.stderr and "Traceback" not in proc.stderr


def test_cli_without_a_vehicle_nothing_starts(tmp_path: Path) -> None:
    """CP state A from t = 0 (IEC 61851-1 Table A.3: no vehicle connected): no 5 % duty cycle, no SLAC,
    no SDP; the diagnosis names the state and the command that reads the pilot."""
    path = tmp_path / "empty.toml"
    path.write_text('[[at]]\nt = 0\ncp = "A"\n')
    proc = subprocess.run([sys.executable, "-m", "v2gtool", "--json", "session", "run", "--sim", "--no-trace",
                           "--scenario", str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == ExitCode.FAILURE
    assert proc.stderr == ("v2gtool: error: session failed in CP: no vehicle connected: CP state A (IEC 61851-1 "
                           "Table A.3); debug with `v2gtool cp-duty read`\n")
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["event"], r.get("duty_percent")) for r in records] == [("CpStateChanged", 100.0),  # no 5 %
                                                                      ("SessionSummary", None)]  # no SLAC, SDP


def test_cli_session_run_derates_on_a_hot_inlet(tmp_path: Path) -> None:
    """The station of `session run` has the thermal derating of `contactor close`: at 95 degC ambient,
    above the 90 degC inlet limit ([hw] inlet_limit_c), no current flows."""
    path = tmp_path / "hot.toml"
    path.write_text("[plant]\nambient_c = 95\n")
    proc = subprocess.run([sys.executable, "-m", "v2gtool", "--json", "session", "run", "--sim", "--no-trace",
                           "--scenario", str(path), "--duration", "3"], capture_output=True, text=True, timeout=120)
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert any(r["event"] == "CurrentDerated" for r in records)
    flows = [r["current"] for r in records if r["event"] == "PowerFlow" and r["role"] == "SECC"]
    assert flows and max(abs(a) for a in flows) < 1.0


def test_cli_session_run_honours_the_configured_soc_floor(tmp_path: Path) -> None:
    """[hw] soc_floor_percent (which `contactor close` honours) is the station's floor in `session run` too."""
    config, path = tmp_path / "v2gtool.toml", tmp_path / "soc.toml"
    config.write_text("[hw]\nsoc_floor_percent = 45\n")
    path.write_text("[plant]\nsoc = 0.455\n")
    proc = subprocess.run([sys.executable, "-m", "v2gtool", "--config", str(config), "--json", "session", "run",
                           "--sim", "--no-trace", "--scenario", str(path), "--direction", "discharge", "--duration",
                           "120"], capture_output=True, text=True, timeout=120)
    refused = [json.loads(line) for line in proc.stdout.splitlines() if '"DischargeRefused"' in line]
    assert refused and refused[0]["floor_percent"] == 45.0


def test_cli_trace_on_a_full_disk_is_one_line() -> None:
    """ENOSPC on the pcap header: one line and exit 4, the machine's fault (README "Exit status")."""
    proc = subprocess.run([sys.executable, "-m", "v2gtool", "session", "run", "--sim", "--trace", "/dev/full",
                           "--duration", "1"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == PcapWriteFailed.exit_code == 4
    assert proc.stderr == "v2gtool: error: cannot write pcap file /dev/full: No space left on device\n"


def test_cli_failed_session_gives_the_evs_reason_not_the_dropped_link(tmp_path: Path) -> None:
    path = tmp_path / "low.toml"
    path.write_text("[charger]\nmax_voltage = 300\n")  # below the battery: the EV stops after the limits
    proc = subprocess.run([sys.executable, "-m", "v2gtool", "session", "run", "--sim", "--no-trace", "--scenario",
                           str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    assert ("session failed in DC_ChargeParameterDiscovery: battery at 375.0 V is outside the EVSE's voltage "
            "range 150.0-300.0 V") in proc.stderr
    assert "the EVCC closed the connection" not in proc.stderr


def test_cli_sim_refuses_a_keylog_it_could_not_write(tmp_path: Path) -> None:
    """--sim has no TLS: asking for its key log is a usage error, not a file silently never written."""
    keylog = tmp_path / "keys.log"
    proc = subprocess.run([sys.executable, "-m", "v2gtool", "session", "run", "--sim", "--no-trace", "--keylog",
                           str(keylog)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--keylog: --sim runs the session over plain TCP" in proc.stderr and "Traceback" not in proc.stderr
    assert not keylog.exists()


def test_cli_trace_in_a_directory_that_cannot_be_made_is_one_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = subprocess.run([sys.executable, "-m", "v2gtool", "session", "run", "--sim", "--trace",
                           str(blocker / "sub" / "trace.pcap")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr == f"v2gtool: error: cannot create the trace's directory {blocker / 'sub'}: Not a directory\n"


@pytest.mark.parametrize(("options", "message"), [
    (["--service", "AC"], "Invalid value for '--service'"),
    (["--service", "DC", "--direction", "discharge"], "a discharge needs the DC_BPT service, not DC"),
    (["--duration", "1e300"], "Invalid value for '--duration'"),
    (["--trace", "x.pcap"], "--trace FILE and --no-trace contradict each other"),
])
def test_cli_options_no_session_can_run_are_refused_before_it_starts(options: list[str], message: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "v2gtool", "session", "run", "--sim", "--no-trace", *options],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_trace_of_a_discharge_session_reads_back_with_pcap_decode_and_tshark(tmp_path: Path) -> None:
    trace = tmp_path / "trace.pcap"
    proc = subprocess.run([sys.executable, "-m", "v2gtool", "--json", "session", "run", "--sim", "--direction",
                           "discharge", "--duration", "3", "--trace", str(trace)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    sent = [r["message"] for r in records if r["event"] == "MessageSent"]
    decoded = subprocess.run([sys.executable, "-m", "v2gtool", "--json", "pcap-decode", str(trace)],
                             capture_output=True, text=True, timeout=120)
    assert decoded.returncode == 0, decoded.stderr  # no protocol error in our own session
    lines = [json.loads(line) for line in decoded.stdout.splitlines()]
    messages = [r for r in lines if r.get("event") == "V2GMessage"]
    assert [m["message"] for m in messages] == sent  # every message, in order, nothing invented
    loop = [m["document"]["DC_ChargeLoopReq"] for m in messages if m["message"] == "DC_ChargeLoopReq"]
    assert loop and all(
        r["BPT_Scheduled_DC_CLReqControlMode"]["EVTargetCurrent"]["Value"] < 0 for r in loop)
    # SDP between SLAC and the TCP connection, to the port the SECC then serves on
    sdp = [r for r in lines if r.get("event") == "SdpMessage"]
    assert [r["message"] for r in sdp] == ["SDPReq", "SDPRes"]
    assert sdp[0]["destination"] == "[ff02::1]:15118" and sdp[1]["destination"] == sdp[0]["source"]
    port = sdp[1]["fields"]["secc_port"]
    first_tcp = next(r for r in lines if r.get("event") == "Frame" and r["tcp_stream"] is not None)
    assert first_tcp["frame"] > sdp[1]["frame"] and first_tcp["info"].endswith(f"→ {port}")
    assert [p["phase"] for p in lines[-1]["phases"]][:3] == ["SLAC", "SDP", "handshake"]
    # the session's own SDP events say the same
    events = [r["event"] for r in records]
    sdp_events = ["SdpRequestSent", "SdpRequestAnswered", "SdpResponseReceived"]
    assert [e for e in events if e.startswith("Sdp")] == sdp_events
    assert events.index("SlacLinkReady") < events.index("SdpRequestSent")
    assert events.index("SdpResponseReceived") < events.index("MessageSent")
    assert next(r for r in records if r["event"] == "SdpResponseReceived")["response"]["port"] == port
    if shutil.which("tshark"):
        frames = subprocess.run(["tshark", "-r", str(trace), "-T", "fields", "-e", "frame.number"],
                                capture_output=True, text=True, timeout=120)
        assert frames.returncode == 0 and len(frames.stdout.split()) == sum(
            1 for r in lines if r.get("event") == "Frame")
        # Every UDP and TCP checksum is right (Wireshark checks them when told to: status 1 is "Good")
        checks = subprocess.run(["tshark", "-r", str(trace), "-o", "tcp.check_checksum:TRUE", "-o",
                                 "udp.check_checksum:TRUE", "-Y", "tcp or udp", "-T", "fields", "-e",
                                 "tcp.checksum.status", "-e", "udp.checksum.status"],
                                capture_output=True, text=True, timeout=120)
        statuses = checks.stdout.split()
        ip_frames = [r for r in lines if r.get("event") == "Frame" and r["protocols"].startswith("eth:ipv6:")]
        assert checks.returncode == 0 and len(statuses) == len(ip_frames) > 0
        assert set(statuses) == {"1"}


def test_welded_contactor_at_the_end(tmp_path: Path) -> None:
    path = tmp_path / "weld.toml"
    path.write_text('[[at]]\nt = 0.0\ncp = "C"\n[[at]]\nt = 5.0\nfault = "weld"\npoles = ["K1"]\n')
    result = asyncio.run(run_sim(scenarios.load(path, duration=3.0)))
    assert not result.ok
    assert result.reason == "DC_WeldingDetectionRes FAILED_ContactorError"
    assert "Contactor Stuck: K1" in result.secc_reason
    assert result.energy_wh > 0  # the session charged before the weld showed at the end


def test_channel_sign_convention_discharges_with_positive_wire_values(tmp_path: Path) -> None:
    path = tmp_path / "channel.toml"
    path.write_text('[session]\nsign_convention = "channel"\ndirection = "discharge"\nduration = 5\n')
    trace = tmp_path / "channel.pcap"
    result = asyncio.run(run_sim(scenarios.load(path), trace=SessionTrace(trace)))
    assert result.ok, result.reason
    assert result.energy_wh < 0 and result.soc_end < result.soc_start  # the energy still left the EV
    decoded = subprocess.run([sys.executable, "-m", "v2gtool", "--json", "pcap-decode", str(trace)],
                             capture_output=True, text=True, timeout=120)
    wire = [json.loads(line) for line in decoded.stdout.splitlines()]
    targets = [r["document"]["DC_ChargeLoopReq"]["BPT_Scheduled_DC_CLReqControlMode"]["EVTargetCurrent"]["Value"]
               for r in wire if r.get("message") == "DC_ChargeLoopReq"]
    assert targets and all(v > 0 for v in targets)  # magnitudes on the wire; PowerDelivery said Discharge
    assert any(r.get("message") == "PowerDeliveryReq"
               and r["document"]["PowerDeliveryReq"].get("BPT_ChannelSelection") == "Discharge" for r in wire)


def test_the_output_stays_within_the_evs_maximum_voltage(tmp_path: Path) -> None:
    """A battery near its maximum voltage: the power module's constant-voltage limit holds the output
    at the EV's EVMaximumVoltage (charging at 125 A once pushed it to 382.5 V over a 378 V maximum),
    the current falls back, and DC_ChargeLoopRes says EVSEVoltageLimitAchieved."""
    path = tmp_path / "full.toml"
    path.write_text("[vehicle]\nmax_voltage = 378\n")
    trace = tmp_path / "full.pcap"
    result = asyncio.run(run_sim(scenarios.load(path, duration=20.0), trace=SessionTrace(trace)))
    assert result.ok, result.reason
    flows = [e for e in result.events if isinstance(e, PowerFlow) and e.role == "SECC"]
    assert max(e.voltage for e in flows) <= 378.0 + 1e-3
    assert flows[-1].current < 100.0  # fell back from the 125 A the EV asks for
    decoded = subprocess.run([sys.executable, "-m", "v2gtool", "--json", "pcap-decode", "--filter",
                              "DC_ChargeLoopRes", str(trace)], capture_output=True, text=True, timeout=120)
    loop = [json.loads(line)["document"]["DC_ChargeLoopRes"] for line in decoded.stdout.splitlines()
            if '"V2GMessage"' in line]
    assert loop and any(res["EVSEVoltageLimitAchieved"] for res in loop)
    assert not loop[0]["EVSEVoltageLimitAchieved"]  # the ramp starts below the limit


def test_header_timestamps_follow_the_traces_time_line(tmp_path: Path) -> None:
    """A simulation runs faster than the wall clock: its messages' Unix TimeStamp (ISO 15118-20
    8.3.5.3.1) is on the time line its trace stamps frames with, not the wall clock's."""
    trace = tmp_path / "stamps.pcap"
    result = asyncio.run(run_sim(scenarios.load(None, duration=120.0), trace=SessionTrace(trace)))
    assert result.ok, result.reason
    decoded = subprocess.run([sys.executable, "-m", "v2gtool", "--json", "pcap-decode", str(trace)],
                             capture_output=True, text=True, timeout=120)
    loop = [(r["t"], r["document"][r["message"]]["Header"]["TimeStamp"])
            for r in map(json.loads, decoded.stdout.splitlines())
            if r.get("message") in ("DC_ChargeLoopReq", "DC_ChargeLoopRes")]
    assert len(loop) > 100
    # Two simulated minutes of loop, a few wall seconds: the stamps span the minutes, as the frames do.
    assert loop[-1][1] - loop[0][1] >= 100
    # Whole seconds, taken when the message is made (at most a loop period before its frame).
    assert all(-1.0 <= t - stamp <= 2.0 for t, stamp in loop), loop[:3]


def test_people_are_told_when_the_loop_moved_no_energy(tmp_path: Path) -> None:
    """A Dynamic request below the charger's minimum power: the SECC delivers none (ISO 15118-20
    minimum limits), the session ends OK, and the console says what did not happen."""
    path = tmp_path / "below-minimum.toml"
    path.write_text('[session]\npower = 1000\ncontrol_mode = "dynamic"\nduration = 5\n'
                    '[charger]\nmin_charge_power = 5000\n')
    proc = subprocess.run([sys.executable, "-m", "v2gtool", "session", "run", "--sim", "--no-trace", "--scenario",
                           str(path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ("v2gtool: EVCC warning: no energy moved in the charge direction: "
                           "the SECC delivered no current\n")


def test_an_ev_already_at_its_target_asks_for_nothing_and_says_it_is_complete(tmp_path: Path) -> None:
    path = tmp_path / "full.toml"
    path.write_text("[plant]\nsoc = 0.9\n")  # the target is 80 %
    trace = tmp_path / "full.pcap"
    result = asyncio.run(run_sim(scenarios.load(path), trace=SessionTrace(trace)))
    assert result.ok, result.reason
    assert not [e for e in result.events if type(e).__name__ == "NoEnergyTransferred"]
    decoded = subprocess.run([sys.executable, "-m", "v2gtool", "--json", "pcap-decode", str(trace)],
                             capture_output=True, text=True, timeout=120)
    loop = [r["document"]["DC_ChargeLoopReq"] for r in map(json.loads, decoded.stdout.splitlines())
            if r.get("message") == "DC_ChargeLoopReq"]
    assert loop and all(req["DisplayParameters"]["ChargingComplete"] for req in loop)
    assert all(req["BPT_Scheduled_DC_CLReqControlMode"]["EVTargetCurrent"]["Value"] == 0 for req in loop)
