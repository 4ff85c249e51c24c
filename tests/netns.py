"""Two network namespaces joined by a veth pair, IPv6 link-local only (what a charging cable's PLC
link looks like to the hosts). Names carry a prefix and the pid so parallel runs don't collide; the
namespaces, and with them the veth ends, are always deleted."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class VethPair:
    ev_ns: str
    ev_if: str
    secc_ns: str
    secc_if: str

    def cmd(self, ns: str, *argv: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *argv]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def _wait_link_local(ns: str, iface: str) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        out = subprocess.run(["ip", "-n", ns, "-6", "addr", "show", "dev", iface, "scope", "link"],
                             capture_output=True, text=True, timeout=10).stdout
        if "inet6 fe80" in out and "tentative" not in out:
            return
        time.sleep(0.02)
    raise RuntimeError(f"no link-local address on {ns}/{iface}")


@contextlib.contextmanager
def veth_pair(prefix: str) -> Iterator[VethPair]:
    """Create the pair or skip the test with the reason namespaces are impossible here."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespace tests need root and iproute2")
    pid = os.getpid()
    pair = VethPair(f"{prefix}{pid}ev", f"{prefix}e{pid}", f"{prefix}{pid}se", f"{prefix}s{pid}")
    try:
        _ip("netns", "add", pair.ev_ns)
        _ip("netns", "add", pair.secc_ns)
    except subprocess.CalledProcessError as exc:
        subprocess.run(["ip", "netns", "del", pair.ev_ns], capture_output=True, timeout=10)
        pytest.skip(f"cannot create network namespaces: {exc.stderr.decode().strip()}")
    try:
        _ip("link", "add", pair.ev_if, "type", "veth", "peer", "name", pair.secc_if)
        for ns, iface in ((pair.ev_ns, pair.ev_if), (pair.secc_ns, pair.secc_if)):
            _ip("link", "set", iface, "netns", ns)
            # No duplicate address detection: the link-local address is usable at once.
            subprocess.run(pair.cmd(ns, "sysctl", "-qw", f"net.ipv6.conf.{iface}.accept_dad=0"),
                           check=True, capture_output=True, timeout=10)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", iface, "up")
        for ns, iface in ((pair.ev_ns, pair.ev_if), (pair.secc_ns, pair.secc_if)):
            _wait_link_local(ns, iface)
        yield pair
    finally:
        for ns in (pair.ev_ns, pair.secc_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
