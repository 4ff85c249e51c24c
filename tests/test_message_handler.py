"""`v2gtool v2g-message-handler`: decode, encode, schema; pipelines; one-line errors and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

LOOP_REQ = "8034042d166f29fb80ea560aebdbfb3062810012006164000a02002400c800"
LOOP_REQ_FRAMED = "01fe80040000001f" + LOOP_REQ


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "v2gtool", *args], input=stdin, capture_output=True,
                          text=True, timeout=120)


def test_decode_framed_picks_the_dc_namespace_from_the_payload_type() -> None:
    result = run("--json", "v2g-message-handler", "decode", LOOP_REQ_FRAMED)
    assert result.returncode == 0, result.stderr
    message = json.loads(result.stdout)
    body = message["DC_ChargeLoopReq"]
    assert body["Header"]["SessionID"] == "5A2CDE53F701D4AC"
    assert body["BPT_Scheduled_DC_CLReqControlMode"]["EVTargetCurrent"] == {"Exponent": 0, "Value": 20}
    assert "DisplayParameters" not in body  # absent optional elements are omitted


def test_decode_tree_for_people() -> None:
    result = run("v2g-message-handler", "decode", LOOP_REQ, "--namespace", "urn:iso:std:iso:15118:-20:DC")
    assert result.returncode == 0
    assert "DC_ChargeLoopReq" in result.stdout and "EVTargetVoltage" in result.stdout


def test_decode_encode_pipeline_round_trips_bit_exactly() -> None:
    decoded = run("--json", "v2g-message-handler", "decode", "-", stdin=f"{LOOP_REQ_FRAMED}\n{LOOP_REQ_FRAMED}\n")
    assert decoded.returncode == 0
    encoded = run("v2g-message-handler", "encode", "--v2gtp", "-", stdin=decoded.stdout)
    assert encoded.returncode == 0, encoded.stderr
    assert encoded.stdout.split() == [LOOP_REQ_FRAMED, LOOP_REQ_FRAMED]


def test_bad_line_yields_error_record_and_exit_1_at_the_end() -> None:
    lines = f"{LOOP_REQ_FRAMED}\nzz-not-hex\n{LOOP_REQ_FRAMED[:30]}\n{LOOP_REQ_FRAMED}\n"
    result = run("--json", "v2g-message-handler", "decode", "-", stdin=lines)
    assert result.returncode == 1
    records = [json.loads(x) for x in result.stdout.splitlines()]
    assert len(records) == 4
    assert "DC_ChargeLoopReq" in records[0] and "DC_ChargeLoopReq" in records[3]
    assert records[1]["line"] == 2 and records[1]["error"].startswith("not a hex string")  # the line said once
    assert records[2]["line"] == 3 and "V2GTP header announces" in records[2]["error"]
    assert "Traceback" not in result.stderr
    people = run("v2g-message-handler", "decode", "-", stdin=lines)
    assert people.returncode == 1 and "line 2: not a hex string: 'zz-not-hex'" in people.stderr
    assert people.stderr.count("line 2:") == 1


def test_malformed_single_message_is_one_line_exit_1() -> None:
    result = run("v2g-message-handler", "decode", LOOP_REQ[:24], "-n", "iso20-dc")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1
    assert "stream ends at byte 12" in result.stderr and "Traceback" not in result.stderr
    debug = run("--debug", "v2g-message-handler", "decode", LOOP_REQ[:24], "-n", "iso20-dc")
    assert "Traceback" in debug.stderr


def test_raw_exi_without_namespace_asks_for_one() -> None:
    result = run("v2g-message-handler", "decode", LOOP_REQ)
    assert result.returncode == 1
    assert "--namespace" in result.stderr


def test_unknown_namespace_lists_valid_names() -> None:
    result = run("v2g-message-handler", "decode", LOOP_REQ, "-n", "iso99")
    assert result.returncode == 1 and "iso20-dc" in result.stderr


def test_encode_errors_name_the_json_path() -> None:
    bad = {"DC_ChargeLoopReq": {"Header": {"SessionID": "00", "TimeStamp": "x"}}}
    result = run("v2g-message-handler", "encode", json.dumps(bad))
    assert result.returncode == 1
    assert "DC_ChargeLoopReq.Header.TimeStamp: expected an integer" in result.stderr


def test_encode_range_facet_is_enforced() -> None:
    msg = {"SessionStopReq": {"Header": {"SessionID": "0011223344556677", "TimeStamp": 1},
                              "ChargingSession": "Terminate", "EVTerminationCode": "x" * 81}}
    result = run("v2g-message-handler", "encode", json.dumps(msg))
    assert result.returncode == 1
    assert "EVTerminationCode: 81 characters" in result.stderr


def test_encode_binary_out(tmp_path: Path) -> None:
    decoded = run("--json", "v2g-message-handler", "decode", LOOP_REQ_FRAMED).stdout
    out = tmp_path / "msg.exi"
    result = run("v2g-message-handler", "encode", decoded, "--out", str(out))
    assert result.returncode == 0
    assert out.read_bytes().hex() == LOOP_REQ
    again = run("--json", "v2g-message-handler", "decode", "--file", str(out), "-n", "iso20-dc")
    assert json.loads(again.stdout) == json.loads(decoded)


def test_schema_lists_messages_and_describes_one() -> None:
    listing = run("--json", "v2g-message-handler", "schema", "-n", "iso20-dc")
    names = json.loads(listing.stdout)["urn:iso:std:iso:15118:-20:DC"]
    assert "DC_ChargeLoopReq" in names and "DC_CableCheckRes" in names
    shown = run("--json", "v2g-message-handler", "schema", "DC_ChargeLoopReq")
    fields = json.loads(shown.stdout)["DC_ChargeLoopReq"]
    assert fields["Header"]["required"] is True
    assert fields["DisplayParameters"]["required"] is False
    assert "BPT_Dynamic_DC_CLReqControlMode" in fields
    bpt = fields["BPT_Dynamic_DC_CLReqControlMode"]["fields"]
    assert "EVMaximumDischargePower" in bpt
    assert bpt["EVMaximumDischargePower"]["fields"]["Exponent"]["type"].startswith("integer [-128, 127]")
