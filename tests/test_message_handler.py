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

from v2gtool.cli.output import emit_json, message_tree, wire_text

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


SURROGATE_EVCCID = "808c040000000000000000001201c0580180"  # SessionSetupReq, EVCCID "\ud800"
DIN_FRAMED = "01fe80010000000e809a0211d63f74d2297ac9119400"  # DIN ServiceDiscoveryReq
SESSION_SETUP_REQ = "808c0400089119a22ab33b8012032ba6a4ab00"  # EVCCID "WMIV"


def test_a_string_with_a_surrogate_is_an_exi_error_and_later_lines_still_decode() -> None:
    single = run("--json", "v2g-message-handler", "decode", "-n", "iso20", SURROGATE_EVCCID)
    assert single.returncode == 1 and "Traceback" not in single.stderr
    assert "U+D800 is not allowed in XML text" in single.stderr and "EVCCID" in single.stderr
    lines = f"{SURROGATE_EVCCID}\n{SESSION_SETUP_REQ}\n"
    for mode in (("--json",), ()):
        result = run(*mode, "v2g-message-handler", "decode", "-n", "iso20", "-", stdin=lines)
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert "SessionSetupReq" in result.stdout and "WMIV" in result.stdout  # the next line


def test_v2g_message_is_din_or_iso2_so_encode_asks_and_din_round_trips() -> None:
    decoded = run("--json", "v2g-message-handler", "decode", "-n", "din", "-", stdin=DIN_FRAMED + "\n")
    assert decoded.returncode == 0, decoded.stderr
    record = json.loads(decoded.stdout)
    assert record.pop("namespace") == "din"  # the record says which; the message alone does not
    guessed = run("v2g-message-handler", "encode", "--v2gtp", json.dumps(record))
    assert guessed.returncode == 1 and guessed.stdout == ""
    assert "V2G_Message is declared by iso2, din: give --namespace" in guessed.stderr
    for namespace in ((), ("-n", "din")):
        encoded = run("v2g-message-handler", "encode", *namespace, "--v2gtp", "-", stdin=decoded.stdout)
        assert encoded.returncode == 0 and encoded.stdout.split() == [DIN_FRAMED]
    explicit = run("v2g-message-handler", "encode", "-n", "iso2", decoded.stdout.strip())  # -n wins
    assert explicit.returncode == 0 and explicit.stdout.strip() != DIN_FRAMED[16:]  # iso2's grammar, not din's


@pytest.mark.parametrize(("args", "expected"), [
    (("DigestValue",), "DigestValue: base64Binary as hex"),
    (("KeyName",), "KeyName: string"),
    (("EVCCID", "-n", "iso2"), "EVCCID: hexBinary as hex, 0..6 bytes"),
    (("SessionID", "-n", "din"), "SessionID: hexBinary as hex, 0..8 bytes"),
    (("PnC_AReqAuthorizationMode",), "GenChallenge: base64Binary as hex, 16..16 bytes"),  # a local element
])
def test_schema_of_simple_and_local_elements(args: tuple[str, ...], expected: str) -> None:
    result = run("v2g-message-handler", "schema", *args, "--depth", "1")
    assert result.returncode == 0, result.stderr
    assert expected in " ".join(result.stdout.split())


def test_encode_a_local_element_as_a_fragment_without_namespace() -> None:
    pnc = {"PnC_AReqAuthorizationMode": {"Id": "ID1", "GenChallenge": "00" * 16, "ContractCertificateChain": {
        "Certificate": "AA", "SubCertificates": {"Certificate": ["BB"]}}}}
    encoded = run("v2g-message-handler", "encode", "--fragment", json.dumps(pnc))
    assert encoded.returncode == 0, encoded.stderr
    decoded = run("--json", "v2g-message-handler", "decode", "--fragment", "-n", "iso20", encoded.stdout.strip())
    assert json.loads(decoded.stdout) == {"namespace": "iso20", **pnc}


@pytest.mark.parametrize(("args", "expected"), [
    (("80281585898c",), "KeyName"),  # a document whose root has simple content
    (("--fragment", "800c05579ab8"), "DigestValue"),
])
def test_decode_tree_of_a_simple_content_root(args: tuple[str, ...], expected: str) -> None:
    result = run("v2g-message-handler", "decode", "-n", "xmldsig", *args)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout and "Traceback" not in result.stderr


def test_encode_json_records_pipe_into_decode() -> None:
    encoded = run("--json", "v2g-message-handler", "encode", "-n", "din", "--v2gtp", "-",
                  stdin=run("--json", "v2g-message-handler", "decode", "-n", "din", DIN_FRAMED).stdout)
    assert json.loads(encoded.stdout) == {"hex": DIN_FRAMED}
    lines = f"# from encode --json\n{encoded.stdout}{DIN_FRAMED}\n" + '{"error": "x", "line": 3}\n'
    decoded = run("--json", "v2g-message-handler", "decode", "-n", "din", "-", stdin=lines)
    assert decoded.returncode == 1
    records = [json.loads(x) for x in decoded.stdout.splitlines()]
    assert ["V2G_Message" in r for r in records] == [True, True, False]
    assert records[2] == {"error": 'a JSON line must be a record of encode --json: {"hex": "..."}', "line": 4}


def test_a_pretty_printed_document_with_nested_objects_at_column_0(tmp_path: Path) -> None:
    stop = {"SessionStopReq": {"Header": {"SessionID": "0011223344556677", "TimeStamp": 1},
                               "ChargingSession": "Terminate"}}
    path = tmp_path / "stop.json"
    path.write_text('{"SessionStopReq":\n{"Header":\n{"SessionID": "0011223344556677", "TimeStamp": 1},\n'
                    '"ChargingSession": "Terminate"}\n}\n')
    result = run("v2g-message-handler", "encode", "--file", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == run("v2g-message-handler", "encode", json.dumps(stop)).stdout.strip()
    broken = tmp_path / "broken.json"
    broken.write_text('{"SessionStopReq":\n{"Header": 1\n"x": 2}}\n')
    result = run("--json", "v2g-message-handler", "encode", "--file", str(broken))
    records = [json.loads(x) for x in result.stdout.splitlines()]
    assert result.returncode == 1 and len(records) == 1 and records[0]["line"] == 3  # one document, where it broke


@pytest.mark.parametrize(("message", "expected"), [
    ("01ff8004000000018000", "V2GTP byte 1: inverse protocol version 0xFF, expected 0xFE"),
    ("01fe800400", "V2GTP header truncated: 5 of 8 bytes"),
    ("01fe1234000000018000", "V2GTP bytes 2-3: unknown payload type 0x1234"),
])
def test_a_malformed_v2gtp_header_is_reported_as_such(message: str, expected: str) -> None:
    result = run("v2g-message-handler", "decode", message)
    assert result.returncode == 1 and result.stderr == f"v2gtool: error: {expected}\n"


def test_bidi_controls_are_shown_as_escapes() -> None:
    assert wire_text("abc\u202edcba\u2066x\u2069\u200f") == "abc\\u202edcba\\u2066x\\u2069\\u200f"


SAP_REQ_FRAMED = ("01fe8001000000258000f3ab9371d34b9b79d39ba321d34b9b79d189a98989c1d1699181d20a18010000040040")
SAP_RES_FRAMED = "01fe80010000000480400040"  # supportedAppProtocolRes OK_SuccessfulNegotiation, SchemaID 1
ISO2_POWER_DELIVERY_FRAMED = "01fe80010000001080980200b6c881cec2134b5150000600"  # -2 PowerDeliveryReq


def test_a_minus_2_trace_with_its_handshake_round_trips_through_decode_and_encode() -> None:
    """-2 frames its handshake and its messages alike (0x8001): -n iso2 decodes the handshake as
    such, and the records' namespace tells encode which grammar each line needs."""
    trace = f"{SAP_REQ_FRAMED}\n{SAP_RES_FRAMED}\n{ISO2_POWER_DELIVERY_FRAMED}\n"
    decoded = run("--json", "v2g-message-handler", "decode", "-n", "iso2", "-", stdin=trace)
    assert decoded.returncode == 0, decoded.stderr
    records = [json.loads(x) for x in decoded.stdout.splitlines()]
    assert [(r["namespace"], list(r)[1]) for r in records] == [
        ("apphand", "supportedAppProtocolReq"), ("apphand", "supportedAppProtocolRes"), ("iso2", "V2G_Message")]
    encoded = run("v2g-message-handler", "encode", "--v2gtp", "-", stdin=decoded.stdout)
    assert encoded.returncode == 0, encoded.stderr
    assert encoded.stdout == trace
    people = run("v2g-message-handler", "decode", "-n", "iso2", SAP_RES_FRAMED)
    assert "supportedAppProtocolRes  urn:iso:15118:2:2010:AppProtocol, V2GTP 0x8001" in people.stdout


def test_a_message_neither_set_decodes_reports_the_error_of_the_namespace_given() -> None:
    result = run("v2g-message-handler", "decode", "-n", "iso2", ISO2_POWER_DELIVERY_FRAMED[:40])
    assert result.returncode == 1 and result.stderr.count("\n") == 1
    assert "announces 16 payload bytes" in result.stderr
    dc_frame = run("v2g-message-handler", "decode", "-n", "iso2", LOOP_REQ_FRAMED)  # 0x8004 is no handshake
    assert dc_frame.returncode == 1 and "apphand" not in dc_frame.stdout


NESTED = "[" * 5000 + "]" * 5000
STOP = '{"SessionStopReq":{"Header":{"SessionID":"0011223344556677","TimeStamp":1},"ChargingSession":"Terminate"}}'
STOP_EXI = "80940400089119a22ab33b801228"


@pytest.mark.parametrize(("command", "bad", "good", "expected"), [
    ("encode", NESTED, STOP, {"hex": STOP_EXI}),
    ("decode", '{"hex":' + NESTED + "}", LOOP_REQ_FRAMED, "DC_ChargeLoopReq"),
])
def test_a_json_line_nested_too_deeply_is_an_error_record(command: str, bad: str, good: str, expected: object) -> None:
    result = run("--json", "v2g-message-handler", command, "-", stdin=f"{bad}\n{good}\n")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
    error, record = (json.loads(x) for x in result.stdout.splitlines())
    assert error["line"] == 1 and error["error"].endswith("nested too deeply")
    assert record == expected or expected in record


@pytest.mark.parametrize("text", [
    f'{{"broken\n{STOP}\n{STOP}\n{STOP}\n',  # a bad first line
    f"\ufeff{STOP}\n{{\n{STOP}\n{STOP}\n",  # a byte order mark, and a bad second line
])
def test_a_json_lines_file_reads_as_stdin_does(tmp_path: Path, text: str) -> None:
    path = tmp_path / "messages.jsonl"
    path.write_text(text, encoding="utf-8")
    from_file = run("--json", "v2g-message-handler", "encode", "--file", str(path))
    from_stdin = run("--json", "v2g-message-handler", "encode", "-", stdin=text)
    assert from_file.returncode == from_stdin.returncode == 1
    assert from_file.stdout == from_stdin.stdout
    assert from_file.stdout.count(STOP_EXI) == 3 and from_file.stdout.count('"error"') == 1


def test_a_hex_file_with_a_byte_order_mark_and_a_stray_byte_is_read_as_lines(tmp_path: Path) -> None:
    path = tmp_path / "messages.hex"
    path.write_bytes(b"\xef\xbb\xbf" + f"{LOOP_REQ_FRAMED}\n{LOOP_REQ_FRAMED}\n".encode() + b"zz\xff\n")
    result = run("--json", "v2g-message-handler", "decode", "--file", str(path))
    assert result.returncode == 1
    records = [json.loads(x) for x in result.stdout.splitlines()]
    assert ["DC_ChargeLoopReq" in r for r in records] == [True, True, False]
    assert records[2]["line"] == 3 and records[2]["error"].startswith("not a hex string")


def test_encode_out_writes_v2gtp_frames_that_decode_file_reads_one_by_one(tmp_path: Path) -> None:
    lines = f"{STOP}\n{STOP}\n{STOP}\n"
    frames = tmp_path / "three.bin"
    written = run("v2g-message-handler", "encode", "--v2gtp", "--out", str(frames), "-", stdin=lines)
    assert written.returncode == 0, written.stderr
    decoded = run("--json", "v2g-message-handler", "decode", "--file", str(frames))
    assert decoded.returncode == 0, decoded.stderr
    assert [json.loads(x) for x in decoded.stdout.splitlines()] == [{"namespace": "iso20", **json.loads(STOP)}] * 3
    frames.write_bytes(frames.read_bytes()[:-3])  # the last frame cut short
    cut = run("--json", "v2g-message-handler", "decode", "--file", str(frames))
    assert cut.returncode == 1
    assert json.loads(cut.stdout.splitlines()[2]) == {
        "error": "V2GTP header announces 14 payload bytes but 11 follow", "message": 3}
    raw = tmp_path / "raw.exi"
    refused = run("v2g-message-handler", "encode", "--out", str(raw), "-", stdin=lines)
    assert refused.returncode == 2 and "add --v2gtp to write several" in refused.stderr
    assert not raw.exists()


@pytest.mark.parametrize("command", ["decode", "encode"])
def test_reading_a_closed_stdin_is_one_line_exit_2(command: str) -> None:
    result = subprocess.run([sys.executable, "-m", "v2gtool", "v2g-message-handler", command, "-"],
                            capture_output=True, text=True, timeout=60, preexec_fn=lambda: os.close(0))
    assert result.returncode == 2
    assert result.stderr == "v2gtool: error: '-' reads stdin, but stdin is closed\n"


def test_json_time_stamps_are_written_to_the_microsecond() -> None:
    """A simulated clock's sums of steps carry float noise (0.1 + 0.11); the record says 0.21."""
    out = io.StringIO()
    emit_json({"event": "X", "t": 0.1 + 0.11, "value": 0.1 + 0.11}, out)
    emit_json({"event": "Y", "t": 1_700_000_000.1234567}, out)
    assert out.getvalue() == '{"event":"X","t":0.21,"value":0.21000000000000002}\n{"event":"Y","t":1700000000.123457}\n'
