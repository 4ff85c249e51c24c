"""`v2gtool v2g-message-handler`: decode, encode, schema; pipelines; one-line errors and exit codes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from v2gtool.cli.output import message_tree, wire_text

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


@pytest.mark.parametrize("command", [("decode", LOOP_REQ), ("encode", "{}"), ("schema",)])
def test_unknown_namespace_is_a_usage_error_listing_valid_names(command: tuple[str, ...]) -> None:
    result = run("v2g-message-handler", *command, "-n", "iso99")
    assert result.returncode == 2 and "Invalid value for '--namespace'" in result.stderr and "iso20-dc" in result.stderr


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


def test_a_hex_file_with_a_bad_line_and_comments_decodes_the_other_lines(tmp_path: Path) -> None:
    """One bad line used to make the whole file 'binary': a single garbage message."""
    path = tmp_path / "messages.hex"
    path.write_text(f"# captured on charger 7\n{LOOP_REQ_FRAMED}\nzz\n\n{LOOP_REQ_FRAMED}\n")
    result = run("--json", "v2g-message-handler", "decode", "--file", str(path))
    assert result.returncode == 1
    records = [json.loads(x) for x in result.stdout.splitlines()]
    assert ["DC_ChargeLoopReq" in r for r in records] == [True, False, True]
    assert records[1] == {"error": "not a hex string: 'zz'", "line": 3}


def test_encode_bad_file_and_unwritable_out_are_one_line(tmp_path: Path) -> None:
    binary = tmp_path / "bin.dat"
    binary.write_bytes(b"{\xcb\xff}")
    result = run("v2g-message-handler", "encode", "--file", str(binary))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr == f"v2gtool: error: {binary}: not UTF-8 JSON text (byte 1: 0xcb)\n"
    stop = '{"SessionStopReq":{"Header":{"SessionID":"0011223344556677","TimeStamp":1},"ChargingSession":"Terminate"}}'
    out = tmp_path / "nodir" / "x.bin"
    result = run("v2g-message-handler", "encode", "--out", str(out), stop)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr == f"v2gtool: error: cannot write {out}: No such file or directory\n"


def test_line_errors_are_one_line_however_narrow_the_output() -> None:
    result = subprocess.run([sys.executable, "-m", "v2gtool", "v2g-message-handler", "decode", "-n", "din", "-"],
                            input="07" * 60 + "\n", capture_output=True, text=True, timeout=60,
                            env={**os.environ, "COLUMNS": "40"})
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("line 1: byte 0: EXI header 0x07")


def test_wire_text_shows_control_characters_and_markup_literally() -> None:
    """An EXI string is the sender's: ESC sequences must not colour or retitle the terminal, a CR or
    LS not break the line, rich markup not style it."""
    hostile = "A\x1b[31mRED\x1b]0;pwned\x07\u009b\r\n\u2028[bold]x[/bold]"
    assert wire_text(hostile) == "A\\x1b[31mRED\\x1b]0;pwned\\x07\\x9b\\r\\n\\u2028\\[bold]x\\[/bold]"
    console = Console(file=io.StringIO(), force_terminal=True, width=200)
    console.print(message_tree("t", {"EVTerminationExplanation": hostile, hostile: 1}))
    text = console.file.getvalue()  # type: ignore[attr-defined]
    assert "\x1b]0;" not in text and "\x07" not in text and "\u009b" not in text and "\u2028" not in text
    assert text.count("\n") == 3 and "A\\x1b[31mRED" in text
