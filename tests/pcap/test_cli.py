"""``v2gtool pcap-decode``: output forms, filters, exit codes and one-line errors."""

from __future__ import annotations

import importlib.util
import json
import os
import select
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pcap.session import (
    SAP_REQ,
    SESSION_ID,
    SHARED_PCAPS,
    analyse,
    dc_session,
    dissect,
    frame,
    sap_res,
    write_session,
)
from v2gtool import v2gtp
from v2gtool.pcap import plot
from v2gtool.pcap.analysis import Series, TraceAnalysis
from v2gtool.pcap.filters import parse_filter


def run(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "v2gtool", *args], input=stdin, capture_output=True, timeout=120,
                          check=False)


@pytest.fixture
def discharge(tmp_path: Path) -> Path:
    path = tmp_path / "discharge.pcap"
    path.write_bytes(write_session(dc_session([0.1, 0.1, 0.1], currents=[20, -15, -25])))
    return path


def _lines(result: subprocess.CompletedProcess[bytes]) -> list[dict]:  # type: ignore[type-arg]
    return [json.loads(line) for line in result.stdout.decode().splitlines()]


def test_json_lines_one_record_per_frame_and_message(discharge: Path) -> None:
    result = run("--json", "pcap-decode", str(discharge))
    assert result.returncode == 0, result.stderr
    records = _lines(result)
    frames = [r for r in records if r["event"] == "Frame"]
    messages = [r for r in records if r["event"] == "V2GMessage"]
    assert [f["frame"] for f in frames] == list(range(1, len(frames) + 1))
    assert [m["message"] for m in messages][:4] == ["supportedAppProtocolReq", "supportedAppProtocolRes",
                                                    "SessionSetupReq", "SessionSetupRes"]
    assert messages[4]["document"]["DC_ChargeLoopReq"]["BPT_Scheduled_DC_CLReqControlMode"]["EVTargetCurrent"] == \
        {"Exponent": 0, "Value": 20}
    assert records[-1]["event"] == "Summary" and records[-1]["messages"] == len(messages)


def test_filter_by_field_expression(discharge: Path) -> None:
    result = run("--json", "pcap-decode", "--filter", "DC_ChargeLoopReq.EVTargetCurrent < 0", str(discharge))
    records = _lines(result)
    shown = [r["document"]["DC_ChargeLoopReq"]["BPT_Scheduled_DC_CLReqControlMode"]["EVTargetCurrent"]["Value"]
             for r in records if r["event"] == "V2GMessage"]
    assert shown == [-15, -25]
    by_name = _lines(run("--json", "pcap-decode", "--filter", "SessionSetupRes", "--filter", "SDPRes", str(discharge)))
    assert [r.get("message") for r in by_name[:-1]] == ["SDPRes", "SessionSetupRes"]
    code = _lines(run("--json", "pcap-decode", "--filter", "SessionSetupRes.ResponseCode == OK_NewSessionEstablished",
                      str(discharge)))
    assert len(code) == 2


def test_summary_alone_for_people(discharge: Path) -> None:
    result = run("pcap-decode", "--summary", str(discharge))
    out = result.stdout.decode()
    assert result.returncode == 0
    assert "DC_ChargeLoopReq" not in out and "Summary" in out and "Response times" in out
    assert "no protocol errors" in out


def test_tree_output_and_stdin(discharge: Path) -> None:
    result = run("pcap-decode", "-", stdin=discharge.read_bytes())
    out = result.stdout.decode()
    assert result.returncode == 0
    assert "DC_ChargeLoopReq" in out and "EVTargetCurrent" in out and "SDPRes" in out


def test_protocol_error_exits_non_zero_with_the_error_named(tmp_path: Path) -> None:
    exchange = dc_session([0.1])
    exchange.insert(4, (0.17, True, v2gtp.encode_frame(v2gtp.PayloadType.ISO20_DC_MAINSTREAM, b"\xff" * 12)))
    path = tmp_path / "garbage.pcap"
    path.write_bytes(write_session(exchange))
    result = run("--json", "pcap-decode", "--summary", str(path))
    assert result.returncode == 1
    summary = _lines(result)[-1]
    assert summary["error_count"] == 1 and summary["errors"][0]["error"].startswith("exi: TCP stream 0 EVCC, V2GTP "
                                                                                    "0x8004, iso20-dc: ")


def test_truncated_capture_still_summarises_and_fails(discharge: Path, tmp_path: Path) -> None:
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(discharge.read_bytes()[:-7])
    result = run("--json", "pcap-decode", "--summary", str(cut))
    assert result.returncode == 1
    errors = _lines(result)[-1]["errors"]
    assert errors[-1]["error"].startswith("capture: capture truncated at byte ")


@pytest.mark.parametrize(("args", "message"), [
    (["pcap-decode", "/nonexistent.pcap"], "v2gtool: error: /nonexistent.pcap: No such file or directory"),
    (["pcap-decode", "--filter", "X.Y <", "x"], "v2gtool: error: --filter 'X.Y <': expected a message name"),
    (["pcap-decode", "--filter", "DC.x === 5", "x"], "expected a message name or 'Message.Field OP value'"),
    (["pcap-decode", "--filter", "DC_ChargeLoopReq.EVPresentVoltage == ", "x"], "expected a message name"),
    (["pcap-decode", "--filter", "DC_ChargeLoopReq.", "x"], "expected a message name"),
    (["pcap-decode", "--filter", "DC..x", "x"], "expected a message name"),
    (["pcap-decode", "--filter", "CurentDemandReq", "x"],
     "CurentDemandReq is not a V2G, SLAC or SDP message (did you mean CurrentDemandReq, CurrentDemandRes?)"),
    (["pcap-decode", "--filter", "SDPRes.secc_port == 1", "x"], "SLAC and SDP messages are selected by name only"),
    (["pcap-decode", "--filter", "CM_SLAC_PARM.REQ.run_id == 1", "x"], "are selected by name only"),
    (["pcap-decode", "--filter", "CurrentDemandReq.NoSuchField > 3", "x"],
     "CurrentDemandReq has no field NoSuchField at any depth"),
    (["pcap-decode", "--filter", "CurrentDemandReq.EVTargetCurent > 3", "x"],
     "has no field EVTargetCurent at any depth (did you mean EVTargetCurrent, EVTargetVoltage?)"),
    (["pcap-decode", "--filter", "CurrentDemandReq.Header", "x"], "CurrentDemandReq has no field Header"),
    (["pcap-decode", "--filter", "CurrentDemandReq.EVTargetCurrent.Value.Unit == A", "x"],
     "CurrentDemandReq.EVTargetCurrent.Value has no field Unit"),
    (["pcap-decode", "--filter", "CurrentDemandReq.EVTargetCurrent > nan", "x"], "nan is not a finite number"),
    (["pcap-decode", "--filter", "CurrentDemandReq.EVTargetCurrent <= -Infinity", "x"],
     "-Infinity is not a finite number"),
])
def test_bad_input_is_one_line_exit_2(args: list[str], message: str) -> None:
    """Bad input and options are 2, so a pipeline never takes them for exit 1, a protocol error."""
    result = run(*args)
    err = result.stderr.decode()
    assert result.returncode == 2 and message in err and err.startswith("v2gtool: error: ") and err.count("\n") == 1


@pytest.mark.parametrize("text", ["CurrentDemandReq", "DC_ChargeLoopReq.EVTargetCurrent < 0", "CM_SLAC_MATCH.CNF",
                                  "SDPRes", "supportedAppProtocolRes.ResponseCode != OK_SuccessfulNegotiation",
                                  "WeldingDetectionReq", "SessionSetupRes.EVSEID",
                                  "CurrentDemandReq.EVTargetCurrent.Value",
                                  "DC_ChargeLoopReq.Header.Signature.SignedInfo", "SessionStopReq.ChargingSession",
                                  "CurrentDemandReq.DC_EVStatus.EVRESSSOC > 50", "CM_SLAC_PARM.REQ"])
def test_filters_of_every_schema_set_slac_and_sdp_parse(text: str) -> None:
    parsed = parse_filter(text)
    assert text.startswith(".".join((parsed.message, *parsed.path)))


def test_a_reader_that_leaves_early_is_no_protocol_error(tmp_path: Path) -> None:
    """`pcap-decode trace | head -1`: the pipe breaks, the exit is 0 (1 would say the trace is bad)."""
    path = tmp_path / "long.pcap"
    path.write_bytes(write_session(dc_session([0.1] * 400)))
    for args in (["pcap-decode"], ["--json", "pcap-decode"]):
        process = subprocess.Popen([sys.executable, "-m", "v2gtool", *args, str(path)], stdout=subprocess.PIPE,
                                   stderr=subprocess.PIPE)
        assert process.stdout is not None and process.stdout.readline()
        process.stdout.close()
        assert process.wait(60) == 0
        assert process.stderr is not None and b"Traceback" not in process.stderr.read()


@pytest.mark.parametrize(("data", "message"), [
    (b'{"event": "Frame"}\n', "not a pcap or pcapng capture: file starts with 7b226576"),
    (b"", "capture is empty: no pcap or pcapng file header"),
    (b"\xd4\xc3\xb2", "3 bytes, shorter than a pcap or pcapng file header"),
])
def test_input_that_is_no_capture_is_one_line_exit_2(tmp_path: Path, data: bytes, message: str) -> None:
    path = tmp_path / "not.pcap"
    path.write_bytes(data)
    for args, name in (([str(path)], str(path)), (["-"], "-")):
        result = run("--json", "pcap-decode", *args, stdin=data)
        assert result.returncode == 2 and result.stdout == b""
        assert result.stderr.decode() == f"v2gtool: error: {name}: {message}\n"


@pytest.mark.parametrize(("cut", "error"), [(30, "capture truncated at byte 30"),
                                          (10, "capture truncated: 10 bytes, shorter than a file header")])
def test_a_capture_cut_before_its_first_packet_is_a_damaged_capture(discharge: Path, tmp_path: Path, cut: int,
                                                                     error: str) -> None:
    """The pcap magic, and the file header or a record cut short: a capture, damaged; summarised with
    the error, exit 1."""
    path = tmp_path / "cut.pcap"
    path.write_bytes(discharge.read_bytes()[:cut])
    result = run("pcap-decode", "--summary", str(path))
    out = result.stdout.decode()
    assert result.returncode == 1 and error in out and "no packet in the capture" in out


def test_keylog_without_secrets_is_one_line(tmp_path: Path, discharge: Path) -> None:
    keys = tmp_path / "empty.keys"
    keys.write_text("# nothing\n")
    result = run("pcap-decode", "--keylog", str(keys), str(discharge))
    assert result.returncode == 2
    assert result.stderr.decode() == f"v2gtool: error: --keylog {keys}: no NSS key-log lines (CLIENT_RANDOM, " \
                                     f"*_TRAFFIC_SECRET_*) found\n"


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="matplotlib is not installed")
def test_plot_writes_a_png(discharge: Path, tmp_path: Path) -> None:
    png = tmp_path / "loop.png"
    result = run("pcap-decode", "--summary", "--plot", str(png), str(discharge))
    assert result.returncode == 0, result.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plot_without_matplotlib_is_one_line_exit_4(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(plot.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(plot.MatplotlibMissing, match=r"^--plot needs matplotlib, which is not installed") as caught:
        plot.check_plotting()
    assert caught.value.exit_code == 4  # the machine lacks something: not the trace's fault (1)


def test_plot_panels_are_those_the_capture_has() -> None:
    """A DC loop has voltage, current and V x I power; an AC loop only its EVSEPresentActivePower
    (the AC capture once gave three empty panels); no loop, nothing to plot (exit 2)."""
    dc = analyse(dissect(write_session(dc_session([0.1, 0.1], currents=[20, -15]))))
    assert [unit for unit, _ in plot._panels(dc)] == ["V", "A", "kW"]
    ac = TraceAnalysis()
    for t, watts in ((1.0, 11000.0), (1.25, 10500.0)):
        ac.series.setdefault("EVSEPresentActivePower", Series()).add(t, watts)
    assert plot._panels(ac) == [("kW", [("EVSEPresentActivePower", [(1.0, 11.0), (1.25, 10.5)])])]
    with pytest.raises(plot.PlotError, match="no charge-loop voltage, current or power") as caught:
        plot.plot_series(TraceAnalysis(), Path("never.png"))
    assert caught.value.exit_code == 2


@pytest.mark.skipif(not SHARED_PCAPS.is_dir(), reason="shared captures absent")
def test_tls_capture_with_keylog_option() -> None:
    capture = SHARED_PCAPS / "ISO-20_TLS13_DC_DS5366_Josev.pcapng"
    result = run("--json", "pcap-decode", "--summary", "--keylog", str(capture.with_suffix(".keys")), str(capture))
    summary = _lines(result)[-1]
    assert result.returncode == 0
    assert summary["tls"][0]["cipher_suite"] == "TLS_AES_256_GCM_SHA384" and summary["messages"] == 112


def test_records_of_a_live_capture_come_out_before_the_capture_goes_on(discharge: Path) -> None:
    """From stdin (tcpdump -w - | v2gtool pcap-decode -) each record is written as its packet is
    decoded, not when an output block fills: the first half's records arrive while the writer waits."""
    data = discharge.read_bytes()
    cut = 24  # the pcap file header, then whole packet records (16-byte header + captured length)
    for _ in range(8):
        cut += 16 + int.from_bytes(data[cut + 8:cut + 12], sys.byteorder)
    process = subprocess.Popen([sys.executable, "-m", "v2gtool", "--json", "pcap-decode", "-"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(data[:cut])
        process.stdin.flush()
        frames = []
        while len(frames) < 8:
            ready, _, _ = select.select([process.stdout], [], [], 30)
            assert ready, f"no record within 30 s after frame {frames[-1] if frames else 0}: output held back"
            record = json.loads(process.stdout.readline())
            if record["event"] == "Frame":
                frames.append(record["frame"])
        assert frames == list(range(1, 9))
        process.stdin.write(data[cut:])
        process.stdin.close()
        rest = [json.loads(line) for line in process.stdout.read().splitlines()]
        assert rest[-1]["event"] == "Summary"
        assert rest[-1]["frames"] == 8 + len([r for r in rest if r["event"] == "Frame"])
        assert process.wait(timeout=60) == 0
    finally:
        process.kill()
        process.wait()


def test_text_from_the_wire_is_shown_as_text_not_markup(tmp_path: Path) -> None:
    """Brackets in a capture (IPv6 addresses of SDP, an EXI string) are rich markup syntax: shown
    literally, never eaten as styles, never a MarkupError traceback."""
    evse_id = "DE*[/green]*[bold]*[fe80::1]"
    setup = {"SessionSetupRes": {"Header": {"SessionID": SESSION_ID, "TimeStamp": 1},
                                 "ResponseCode": "OK_NewSessionEstablished", "EVSEID": evse_id}}
    path = tmp_path / "brackets.pcap"
    path.write_bytes(write_session([(0.0, True, frame(SAP_REQ, "apphand")), (0.05, False, frame(sap_res(1), "apphand")),
                                    (0.15, False, frame(setup))]))
    result = run("pcap-decode", str(path))
    out = result.stdout.decode()
    assert "Traceback" not in result.stderr.decode()
    assert f"EVSEID = {evse_id}" in out
    assert "SDPReq [fe80::1]:50001 → [ff02::1]:15118" in out


def test_decoding_a_capture_without_homeplug_frames_does_not_load_scapy() -> None:
    """scapy costs ~25 MiB and a quarter second of start-up: pcap-decode loads it only for HomePlug
    frames or a --filter (which knows the SLAC names); the benchmark's peak memory showed the slip."""
    probe = ("import sys; from v2gtool.cli import pcap_decode; from v2gtool.pcap import filters; "
             "print('scapy' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == "False"


def test_a_closed_stdin_is_one_line_exit_2() -> None:
    result = subprocess.run([sys.executable, "-m", "v2gtool", "pcap-decode", "-"], capture_output=True, text=True,
                            timeout=60, preexec_fn=lambda: os.close(0))
    assert result.returncode == 2
    assert result.stderr == "v2gtool: error: '-' reads stdin, but stdin is closed\n"
