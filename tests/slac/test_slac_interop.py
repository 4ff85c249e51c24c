"""Interop with SLAC implementations we did not write, over namespaces and a hub-mode bridge
that plays the charging cable, with :mod:`v2gtool.slac.modem_standin` standing in for the
peers' modems:

* pyslac (PyPI, EVSE side only) against our EV;
* open-plc-utils ``evse`` and ``pev`` (Debian ``plc-utils-extra``) against our EV and EVSE.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from slac_netns import REPO, Lab, lab, v2gtool_in, wait_for_line

pytestmark = [pytest.mark.netns, pytest.mark.interop]

EVSE_MAC = "02:00:00:5b:0e:01"
EV_MAC = "02:00:00:5b:0e:02"


def pyslac_python() -> str | None:
    """A Python that can import pyslac: $V2GTOOL_PYSLAC_PYTHON, ./.venv-peers-slac, ./.venv-peers."""
    candidates = [
        os.environ.get("V2GTOOL_PYSLAC_PYTHON", ""),
        str(REPO / ".venv-peers-slac" / "bin" / "python"),
        str(REPO / ".venv-peers" / "bin" / "python"),
    ]
    for python in filter(None, candidates):
        if (
            Path(python).is_file()
            and subprocess.run(
                [python, "-c", "import pyslac.session"], capture_output=True, timeout=60
            ).returncode
            == 0
        ):
            return python
    return None


def in_ns(ns: str, *argv: str, cwd: Path | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
    )


def stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.terminate()
    out, _ = proc.communicate(timeout=10)
    return out


def ev_result(proc: subprocess.Popen[str]) -> tuple[int, dict[str, object], str]:
    out, err = proc.communicate(timeout=60)
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return proc.returncode, next((r for r in records if r["event"] == "SlacResult"), {}), err


@pytest.fixture
def cable() -> Iterator[tuple[Lab, str, dict[str, str]]]:
    """A hub (the cable) with the EVSE host, the EV host and a modem stand-in port."""
    with lab("i") as net:
        hub = net.namespace("hub")
        net.bridge(hub)
        hosts = {}
        for role, mac in (("evse", EVSE_MAC), ("ev", EV_MAC)):
            hosts[role] = net.namespace(role)
            net.bridge_port(hub, hosts[role], mac)
        net.veth(hub, hub, name_a="modem0", name_b="pmodem")
        subprocess.run(["ip", "-n", hub, "link", "set", "pmodem", "master", "br0"], check=True)
        yield net, hub, hosts


def modem_standin(hub: str, set_key_result: int) -> subprocess.Popen[str]:
    proc = in_ns(
        hub,
        sys.executable,
        "-m",
        "v2gtool.slac.modem_standin",
        "--iface",
        "modem0",
        "--set-key-result",
        str(set_key_result),
        "--seconds",
        "90",
        cwd=REPO,
    )
    wait_for_line(proc, "modem stand-in on")
    return proc


def test_pyslac_evse_matches_our_ev(cable: tuple[Lab, str, dict[str, str]], tmp_path: Path) -> None:
    python = pyslac_python()
    if python is None:
        pytest.skip(
            "pyslac not installed (python -m venv .venv-peers-slac && "
            ".venv-peers-slac/bin/pip install pyslac==0.8.3 'marshmallow<4')"
        )
    _net, hub, hosts = cable
    standin = modem_standin(hub, 0)
    (tmp_path / ".env").write_text("SLAC_INIT_TIMEOUT=30\nLOG_LEVEL=DEBUG\n")
    pyslac = in_ns(hosts["evse"], python, "-m", "pyslac.examples.single_slac_session", cwd=tmp_path)
    try:
        wait_for_line(pyslac, "CM_SLAC_PARM: Started", timeout=40)  # after its 10 s SLAC_SETTLE_TIME
        rc, result, err = ev_result(
            v2gtool_in(
                hosts["ev"], "evse-slac", "--role", "ev", "--iface", "eth0", "--backend", "sim", "--json"
            )
        )
    finally:
        pyslac_log = stop(pyslac)
        stop(standin)
    assert rc == 0, err + pyslac_log[-3000:]
    assert result["peer_mac"] == EVSE_MAC
    assert "CM_SLAC_MATCH: Finished!" in pyslac_log
