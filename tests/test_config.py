"""The configuration: file and environment checked against the schema, every problem one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from v2gtool.config import SCHEMA, interface_name, load_config
from v2gtool.errors import ConfigError
from v2gtool.exit_codes import ExitCode

PACKAGE = Path(__file__).resolve().parents[1] / "v2gtool"


def _file(tmp_path: Path, text: str | bytes) -> Path:
    path = tmp_path / "v2gtool.toml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    return path


def _error(path: Path | None, environ: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(path, environ or {})
    message = str(info.value)
    assert "\n" not in message
    return message


def test_values_from_file_and_environment_have_their_kinds(tmp_path: Path) -> None:
    path = _file(tmp_path, '[sdp]\ntcp_port = 50000\n[pki]\ncerts_dir = "/c"\n[slac.timers]\nTT_match_response = 0.1\n')
    config = load_config(path, {"V2GTOOL_HW__RATED_VOLTAGE_V": "800", "V2GTOOL_VPP__STATE_DIR": "/v",
                                "V2GTOOL_SDP__TCP_PORT": "50001", "V2GTOOL_PEER_PYTHON": "/usr/bin/python3"})
    assert config.get("sdp", "tcp_port") == 50001
    assert config.get("hw", "rated_voltage_v") == 800.0
    assert config.get("vpp", "state_dir") == Path("/v")
    assert config.get("pki", "certs_dir") == Path("/c")
    assert config.get("slac", "timers") == {"TT_match_response": 0.1}
    assert config.source == path


def test_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    path = _file(tmp_path, b"\xff\xfe")
    assert _error(path) == f"config file {path}: not UTF-8 text (byte 0)"


@pytest.mark.parametrize(("text", "expected"), [
    ("[vpp]\nstate_dir = 5\n", "[vpp] state_dir must be a path (a non-empty string), got 5"),
    ('[vpp]\nstate_dir = ""\n', "[vpp] state_dir must be a path (a non-empty string), got ''"),
    ('[sdp]\ntcp_port = "abc"\n', "[sdp] tcp_port must be an integer, got 'abc'"),
    # the SECC announces it in its SDP response: a Dynamic Port (standards.md 2), whatever reads it
    ("[sdp]\ntcp_port = 70000\n", "[sdp] tcp_port must be a Dynamic Port (49152-65535), got 70000"),
    ("[sdp]\ntcp_port = 8080\n", "[sdp] tcp_port must be a Dynamic Port (49152-65535), got 8080"),
    ("[hw]\nrated_voltage_v = true\n", "[hw] rated_voltage_v must be a finite number, got True"),
    ('[slac]\niface = "eth0; reboot"\n', "[slac] iface must be an interface name without ' ', got 'eth0; reboot'"),
    ("[slac]\ntimers = 3\n", "[slac] timers must be a table (set it in the config file), got 3"),
    # the names of ISO 15118-3 Table A.1 (v2gtool.slac.timers), checked when the file is read
    ("[slac.timers]\nTT_bogus = 1\n", "[slac] timers is not valid: unknown SLAC timer 'TT_bogus', got {'TT_bogus': 1}"),
    ('[slac.timers]\nTT_match_response = "x"\n',
     "[slac] timers is not valid: TT_match_response = 'x' is not a number, got {'TT_match_response': 'x'}"),
])
def test_a_value_of_the_wrong_kind_in_the_file(tmp_path: Path, text: str, expected: str) -> None:
    path = _file(tmp_path, text)
    assert _error(path) == f"config file {path}: {expected}"


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("V2GTOOL_SDP__TCP_PORT", "abc", "[sdp] tcp_port must be an integer, got 'abc'"),
    ("V2GTOOL_SDP__TCP_PORT", "8080", "[sdp] tcp_port must be a Dynamic Port (49152-65535), got '8080'"),
    ("V2GTOOL_SLAC__TIMERS", "x", "[slac] timers must be a table (set it in the config file), got 'x'"),
    ("V2GTOOL_HW__ACTIVE_LOW", "3", "[hw] active_low must be a list (set it in the config file), got '3'"),
    ("V2GTOOL_VPP__STATE_DIR", "", "is empty: unset it to use the config file or the default"),
    ("V2GTOOL_NONSENSE__X", "1", "unknown table [nonsense] (known: hw, ocpp, pki, sdp, session, slac, vpp)"),
    ("V2GTOOL_VPP__BOGUS", "1", "unknown key [vpp] bogus (known: state_dir)"),
])
def test_a_bad_environment_override(variable: str, value: str, expected: str) -> None:
    separator = " " if expected.startswith("is empty") else ": "
    assert _error(None, {variable: value}) == f"environment variable {variable}{separator}{expected}"


def test_unknown_tables_and_keys_in_the_file_are_all_named(tmp_path: Path) -> None:
    path = _file(tmp_path, "[nonsense]\n[vpp]\nbogus_key = 3\nstate_dir = '/v'\n")
    assert _error(path) == (f"config file {path}: unknown table [nonsense] (known: hw, ocpp, pki, sdp, session, "
                            "slac, vpp); unknown key [vpp] bogus_key (known: state_dir)")


@pytest.mark.parametrize("name", ["eth0", "plc0", "enp0s31f6", "veth-ev.12", "x" * 15])
def test_interface_names_linux_accepts(name: str) -> None:
    assert interface_name(name) == name


@pytest.mark.parametrize(("name", "reason"), [
    ("", "must be a non-empty string"),
    ("x" * 16, "at most 15 bytes"),
    ("é" * 8, "at most 15 bytes"),
    ("..", "not '.' or '..'"),
    ("eth0/1", "without '/'"),
    ("eth0:1", "without ':'"),
    ("eth 1", "without ' '"),
    ("eth1\n", "without '\\n'"),
    ("eth\x7f", "without '\\x7f'"),
    ('eth1"', "without '\"'"),
    ("eth$X", "without '$'"),
    ("eth*", "without '*'"),
])
def test_interface_names_refused(name: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        interface_name(name)


def test_every_key_the_code_reads_is_in_the_schema() -> None:
    read = re.compile(r"""config\.get\(\s*["'](\w+)["'],\s*["'](\w+)["']""")
    found = {match.groups() for source in PACKAGE.rglob("*.py") for match in read.finditer(source.read_text())}
    assert len(found) > 15
    assert {(table, key) for table, key in found if key not in SCHEMA.get(table, {})} == set()


@pytest.mark.parametrize(("config", "env", "expected"), [
    (b"\xff\xfe", {}, "not UTF-8 text"),
    (b"[vpp]\nstate_dir = 5\n", {}, "[vpp] state_dir must be a path"),
    (b"[nonsense]\n", {}, "unknown table [nonsense]"),
    (b"", {"V2GTOOL_SDP__TCP_PORT": "abc"}, "V2GTOOL_SDP__TCP_PORT: [sdp] tcp_port must be an integer"),
    (b"", {"V2GTOOL_SDP__TCP_PORT": "8080"}, "V2GTOOL_SDP__TCP_PORT: [sdp] tcp_port must be a Dynamic Port"),
])
def test_the_cli_reports_config_errors_in_one_line(tmp_path: Path, config: bytes, env: dict[str, str],
                                                    expected: str) -> None:
    path = _file(tmp_path, config)
    for command in (["doctor"], ["deploy-files", "--print", "v2g.nft"], ["vpp", "status"],
                    ["v2g-message-handler", "serve", "--iface", "lo", "--no-tls", "--sessions", "1"]):
        result = subprocess.run([sys.executable, "-m", "v2gtool", "--config", str(path), *command],
                                capture_output=True, text=True, timeout=60, env={**os.environ, **env})
        assert result.returncode == ExitCode.USAGE, command
        assert result.stderr.startswith("v2gtool: error: ") and expected in result.stderr, command
        assert len(result.stderr.splitlines()) == 1, result.stderr
