"""Round 3 of `v2g-message-handler`: a -2/DIN 0x8001 frame without --namespace, and required choices
(substitution groups, xs:choice) in the schema view."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from v2gtool.cli.main import cli
from v2gtool.cli.message_handler import _required_choices
from v2gtool.exi.namespaces import grammar

DIN_SERVICE_DISCOVERY_REQ = "809a0211d63f74d2297ac9119400"  # public vector (EVerest/libcbv2g tests/din)
DIN_FRAMED = "01fe80010000000e" + DIN_SERVICE_DISCOVERY_REQ
LOOP_REQ = "01fe80040000001f8034042d166f29fb80ea560aebdbfb3062810012006164000a02002400c800"
CONTROL_MODES = ["CLReqControlMode", "Scheduled_DC_CLReqControlMode", "BPT_Scheduled_DC_CLReqControlMode",
                 "Dynamic_DC_CLReqControlMode", "BPT_Dynamic_DC_CLReqControlMode"]


def invoke(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args), input=stdin)
    return result.exit_code, result.stdout, result.stderr


def run(*args: str) -> subprocess.CompletedProcess[str]:
    """The installed entry point: one-line errors are main()'s."""
    return subprocess.run([sys.executable, "-m", "v2gtool", *args], capture_output=True, text=True, timeout=60)


def test_a_din_frame_without_namespace_asks_for_it_in_one_line() -> None:
    result = run("v2g-message-handler", "decode", DIN_FRAMED)
    assert result.returncode == 1 and result.stdout == ""
    assert result.stderr == ("v2gtool: error: V2GTP 0x8001 frame not a handshake message (apphand): -2 and DIN "
                             "messages share 0x8001 and need --namespace iso2 or din\n")


def test_the_same_frame_in_line_mode_and_with_its_namespace() -> None:
    code, out, _err = invoke("--json", "v2g-message-handler", "decode", "-", stdin=DIN_FRAMED + "\n")
    assert code == 1 and "--namespace iso2 or din" in json.loads(out)["error"]
    code, out, _err = invoke("--json", "v2g-message-handler", "decode", "-n", "din", DIN_FRAMED)
    assert code == 0 and "V2G_Message" in json.loads(out)


def test_schema_shows_the_control_modes_as_one_required_choice() -> None:
    code, out, _err = invoke("--json", "v2g-message-handler", "schema", "DC_ChargeLoopReq", "--depth", "1")
    assert code == 0
    fields = json.loads(out)["DC_ChargeLoopReq"]
    assert [name for name, info in fields.items() if "one_of" in info] == CONTROL_MODES
    assert all(fields[name]["one_of"] == CONTROL_MODES for name in CONTROL_MODES)
    assert "one_of" not in fields["DisplayParameters"] and fields["DisplayParameters"]["required"] is False
    code, out, _err = invoke("v2g-message-handler", "schema", "DC_ChargeLoopReq", "--depth", "1")
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if "one of (required):" in line)
    members = [line for line in lines[start + 1:] if "ControlMode" in line]
    assert len(members) == len(CONTROL_MODES) and not any("optional" in line for line in members)
    assert "DisplayParameters: DisplayParametersType (optional)" in out


def test_the_choice_is_what_encode_asks_for_when_none_is_given() -> None:
    code, out, _err = invoke("--json", "v2g-message-handler", "decode", LOOP_REQ)
    assert code == 0
    message = json.loads(out)
    del message["DC_ChargeLoopReq"]["BPT_Scheduled_DC_CLReqControlMode"]
    result = run("v2g-message-handler", "encode", json.dumps(message))
    assert result.returncode == 1
    asked = result.stderr.split("expected one of: ")[1].strip().split(", ")
    assert sorted(asked) == sorted(CONTROL_MODES)


def test_an_xs_choice_is_found_and_optional_sequences_are_not_choices() -> None:
    types = {t.cls.__name__: t for t in grammar("iso20").types}
    assert _required_choices(types["AuthorizationReqType"]) == [
        ("EIM_AReqAuthorizationMode", "PnC_AReqAuthorizationMode")]
    assert _required_choices(types["MessageHeaderType"]) == []  # Signature is optional, not a choice
    loop_res = {t.cls.__name__: t for t in grammar("iso20-dc").types}["DC_ChargeLoopResType"]
    (choice,) = _required_choices(loop_res)  # EVSEStatus, MeterInfo, Receipt stay optional
    assert all(name.endswith("CLResControlMode") for name in choice) and len(choice) == 5
