"""Two network namespaces joined by a veth pair, IPv6 link-local only: what a charging cable's PLC
link looks like to the two hosts. Used by ``session run --netns`` and by the tests. Names carry a
prefix and the pid so parallel runs don't collide; the namespaces, and with them the veth ends, are
always deleted."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

from v2gtool.errors import V2GToolError


class NetnsError(V2GToolError):
    """Namespaces cannot be created here (not root, no iproute2, or the kernel refuses)."""

    exit_code = 4


@dataclass(frozen=True)
class VethPair:
    ev_ns: str
    ev_if: str
    secc_ns: str
    secc_if: str

    def cmd(self, ns: str, *argv: str) -> list[str]:
        """*argv* run inside namespace *ns*."""
        return ["ip", "netns", "exec", ns, *argv]


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
    raise NetnsError(f"no IPv6 link-local address on {ns}/{iface} after 5 s")


@contextlib.contextmanager
def veth_pair(prefix: str) -> Iterator[VethPair]:
    """Create the pair (EV side, SECC side); raise :class:`NetnsError` when that is impossible."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        raise NetnsError("network namespaces need root and iproute2")
    pid = os.getpid()
    pair = VethPair(f"{prefix}{pid}ev", f"{prefix}e{pid}", f"{prefix}{pid}se", f"{prefix}s{pid}")
    try:
        _ip("netns", "add", pair.ev_ns)
        _ip("netns", "add", pair.secc_ns)
    except subprocess.CalledProcessError as exc:
        subprocess.run(["ip", "netns", "del", pair.ev_ns], capture_output=True, timeout=10)
        raise NetnsError(f"cannot create network namespaces: {exc.stderr.decode().strip()}") from None
    try:
        _ip("link", "add", pair.ev_if, "type", "veth", "peer", "name", pair.secc_if)
        for ns, iface in ((pair.ev_ns, pair.ev_if), (pair.secc_ns, pair.secc_if)):
            _ip("link", "set", iface, "netns", ns)
            # No duplicate address detection: the link-local address is usable at once.
            subprocess.run(
                pair.cmd(ns, "sysctl", "-qw", f"net.ipv6.conf.{iface}.accept_dad=0"),
                check=True,
                capture_output=True,
                timeout=10,
            )
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", iface, "up")
        for ns, iface in ((pair.ev_ns, pair.ev_if), (pair.secc_ns, pair.secc_if)):
            _wait_link_local(ns, iface)
        yield pair
    finally:
        for ns in (pair.ev_ns, pair.secc_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)
