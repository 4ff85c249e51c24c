"""Two network namespaces joined by a veth pair: an EV side and an SECC side (IPv6 link-local only).

Names carry the prefix ``sdp`` and this process's pid, so parallel runs by other areas don't collide;
the namespaces (and with them the veth ends) are always deleted afterwards.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
from sdp_netns_support import VethLink


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _wait_link_local(ns: str, iface: str) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["ip", "-n", ns, "-6", "addr", "show", "dev", iface, "scope", "link"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        if "inet6 fe80" in out and "tentative" not in out:
            return
        time.sleep(0.02)
    raise RuntimeError(f"no link-local address on {ns}/{iface}")


@pytest.fixture(scope="session")
def veth() -> Iterator[VethLink]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespace tests need root and iproute2")
    pid = os.getpid()
    link = VethLink(f"sdp{pid}ev", f"sdpe{pid}", f"sdp{pid}se", f"sdps{pid}")
    try:
        _ip("netns", "add", link.ev_ns)
        _ip("netns", "add", link.secc_ns)
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"cannot create network namespaces: {exc.stderr.decode().strip()}")
    try:
        _ip("link", "add", link.ev_if, "type", "veth", "peer", "name", link.secc_if)
        for ns, iface in ((link.ev_ns, link.ev_if), (link.secc_ns, link.secc_if)):
            _ip("link", "set", iface, "netns", ns)
            # No duplicate address detection: the link-local address is usable at once.
            subprocess.run(
                ["ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{iface}.accept_dad=0"],
                check=True,
                capture_output=True,
                timeout=10,
            )
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", iface, "up")
        for ns, iface in ((link.ev_ns, link.ev_if), (link.secc_ns, link.secc_if)):
            _wait_link_local(ns, iface)
        yield link
    finally:
        for ns in (link.ev_ns, link.secc_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
