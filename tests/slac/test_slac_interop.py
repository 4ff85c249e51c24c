"""Interop with SLAC implementations we did not write, over namespaces and a hub-mode bridge
that plays the charging cable, with :mod:`v2gtool.slac.modem_standin` standing in for the
peers' modems:

* pyslac (PyPI, EVSE side only) against our EV;
* open-plc-utils ``evse`` and ``pev`` (Debian ``plc-utils-extra``) against our EV and EVSE.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from slac_netns import REPO, Lab, Peer, in_ns, lab, v2gtool_in

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


def ev_result(peer: Peer) -> tuple[int, dict[str, Any], str]:
    rc = peer.finish(60)
    return rc, peer.slac_result(), "".join(peer.err)


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


def modem_standin(hub: str, set_key_result: int) -> Peer:
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
    proc.wait_for("modem stand-in on")
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
        pyslac.wait_for("CM_SLAC_PARM: Started", timeout=40)  # after its 10 s SLAC_SETTLE_TIME
        rc, result, err = ev_result(
            v2gtool_in(
                hosts["ev"], "evse-slac", "--role", "ev", "--iface", "eth0", "--backend", "sim", "--json"
            )
        )
    finally:
        pyslac_log = pyslac.stop()
        standin.stop()
    assert rc == 0, err + pyslac_log[-3000:]
    assert result["peer_mac"] == EVSE_MAC
    assert "CM_SLAC_MATCH: Finished!" in pyslac_log


def open_plc_utils_config(tool: str, directory: Path, **overrides: str) -> Path:
    """``TOOL -c`` (its template profile) with *overrides* (``settle_time="1"``)."""
    text = subprocess.run([tool, "-c"], capture_output=True, text=True, check=True, timeout=10).stdout
    lines = []
    for line in text.splitlines():
        key = line.partition("=")[0].strip().replace(" ", "_")
        lines.append(f"{line.partition('=')[0].strip()} = {overrides[key]}" if key in overrides else line)
    path = directory / f"{tool}.ini"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_open_plc_utils_evse_matches_our_ev(cable: tuple[Lab, str, dict[str, str]], tmp_path: Path) -> None:
    if shutil.which("evse") is None:
        pytest.skip("open-plc-utils not installed (apt-get install -y plc-utils-extra)")
    _net, hub, hosts = cable
    standin = modem_standin(hub, 1)  # open-plc-utils reads Result 0 as "refused"
    profile = open_plc_utils_config("evse", tmp_path, settle_time="1")
    evse = in_ns(hosts["evse"], "evse", "-i", "eth0", "-p", str(profile), "-l", "-v", "-d")
    try:
        rc, result, err = ev_result(
            v2gtool_in(
                hosts["ev"],
                "evse-slac",
                "--role",
                "ev",
                "--iface",
                "eth0",
                "--backend",
                "sim",
                "--json",
                "--timer",
                "C_EV_match_retry=20",
            )
        )
    finally:
        evse_log = evse.stop()
        standin.stop()
    assert rc == 0, err + evse_log[-3000:]
    assert result["peer_mac"] == EVSE_MAC


def test_open_plc_utils_pev_matches_our_evse(cable: tuple[Lab, str, dict[str, str]], tmp_path: Path) -> None:
    if shutil.which("pev") is None:
        pytest.skip("open-plc-utils not installed (apt-get install -y plc-utils-extra)")
    _net, hub, hosts = cable
    standin = modem_standin(hub, 1)
    evse = v2gtool_in(
        hosts["evse"],
        "evse-slac",
        "--role",
        "evse",
        "--iface",
        "eth0",
        "--backend",
        "sim",
        "--json",
        "--timer",
        "TT_EVSE_SLAC_init=30",
        "--timer",
        "C_sequ_retry=0",
    )
    profile = open_plc_utils_config("pev", tmp_path, settle_time="1")
    try:
        evse.wait_for('"cp":"5%"')
        pev = in_ns(hosts["ev"], "pev", "-i", "eth0", "-p", str(profile), "-l", "-v", "-d")
        rc, result, err = ev_result(evse)
        pev_log = pev.stop()
    finally:
        evse.stop()
        standin.stop()
    assert rc == 0, err + pev_log[-3000:]
    assert result["peer_mac"] == EV_MAC
    assert result["nid"] is not None and result["nid"].upper() in pev_log.replace(":", "").upper()
