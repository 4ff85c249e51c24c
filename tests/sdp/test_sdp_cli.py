"""sdp-discovery argument handling that needs no network namespace."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "v2gtool", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})  # fmt: skip


def test_interface_is_required() -> None:
    result = run("sdp-discovery")
    assert result.returncode == 2
    assert "Error: no interface: give --iface or set [sdp] iface in the config" in result.stderr


def test_interface_comes_from_the_configuration() -> None:
    result = run("sdp-discovery", env={"V2GTOOL_SDP__IFACE": "nosuch9"})
    assert result.returncode == 4  # environment: the interface is missing
    assert result.stderr == "v2gtool: error: network interface 'nosuch9' does not exist\n"


def test_ev_requests_exactly_one_security_mode() -> None:
    result = run("sdp-discovery", "--iface", "lo", "--security", "both")
    assert result.returncode == 2
    assert "the EV requests one mode: tls or none" in result.stderr


def test_help_documents_the_exit_codes() -> None:
    help_text = run("sdp-discovery", "--help").stdout
    assert "3  EV: no SDP response after --tries requests" in help_text
    assert "4  the interface does not exist" in help_text
