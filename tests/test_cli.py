"""The front door: version, help, config errors and the one-line error contract."""

from __future__ import annotations

import subprocess
import sys

import pytest

from v2gtool import __version__
from v2gtool.cli.params import MacAddress


def run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "v2gtool", *args], input=stdin, capture_output=True, text=True, timeout=60
    )


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert __version__ in result.stdout


def test_help_lists_working_subcommands() -> None:
    result = run("--help")
    assert result.returncode == 0
    assert "v2g-message-handler" in result.stdout


def test_missing_config_file_is_one_line_and_exit_2(tmp_path: object) -> None:
    result = run("--config", "/nonexistent/v2gtool.toml", "v2g-message-handler", "--help")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "cannot read config file /nonexistent/v2gtool.toml" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (("evse-slac", "--sim-attenuation", "nan"), "--sim-attenuation"),  # scapy once crashed on it
        (("evse-slac", "--role", "ev", "--threshold", "-inf"), "--threshold"),
        (("session", "run", "--sim", "--power", "inf"), "--power"),  # FloatRange(min=0) lets inf through
        (("cp-duty", "current", "NaN"), "AMPS"),
        (("vpp", "dispatch", "--power-kw", "nan"), "--power-kw"),
    ],
)
def test_a_number_option_refuses_nan_and_infinity(args: tuple[str, ...], option: str) -> None:
    result = run(*args)
    assert result.returncode == 2
    assert f"Invalid value for '{option}'" in result.stderr and "is not a finite number" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("mac", ["zz:zz", "00:11:22:33:44:55:66", "0011.2233.4455", ""])
def test_modem_mac_must_be_six_octets(mac: str) -> None:
    result = run("evse-slac", "--modem-mac", mac)
    assert result.returncode == 2 and "is not a MAC address" in result.stderr and "Traceback" not in result.stderr


def test_mac_address_type_normalises_case_and_dashes() -> None:
    assert MacAddress().convert("00-B0-52-00-00-E1", None, None) == "00:b0:52:00:00:e1"
