"""Network namespaces and veth links for the SLAC tests: created per test, always torn down.

Names carry the prefix ``v2gs`` and the pid, so concurrent test runs of other areas on the same
machine never collide. Nothing is routed: frames stay inside these namespaces.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=10)


def namespaces_possible() -> str | None:
    """``None`` when namespaces can be made here, else why not."""
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"v2gs{os.getpid()}probe"
    try:
        ip("netns", "add", probe)
    except subprocess.CalledProcessError as exc:
        return f"cannot create a network namespace: {exc.stderr.decode().strip()}"
    ip("netns", "del", probe)
    return None


@dataclass
class Lab:
    """Namespaces joined by veth pairs; every name is unique to this process."""

    tag: str
    namespaces: list[str] = field(default_factory=list)
    _counter: int = 0

    def namespace(self, role: str) -> str:
        name = f"v2gs{os.getpid()}{self.tag}{role}"
        ip("netns", "add", name)
        self.namespaces.append(name)
        ip("-n", name, "link", "set", "lo", "up")
        subprocess.run(
            ["ip", "netns", "exec", name, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"],
            check=False,
            capture_output=True,
            timeout=10,
        )
        return name

    def veth(
        self, ns_a: str, ns_b: str, mac_a: str | None = None, name_a: str = "eth0", name_b: str | None = None
    ) -> None:
        """A veth pair with end ``name_a`` in *ns_a* and ``name_b`` (default: a unique port name)
        in *ns_b*."""
        self._counter += 1
        tmp_a, tmp_b = (
            f"vs{os.getpid() % 100000}{self.tag}{self._counter}a",
            f"vs{os.getpid() % 100000}{self.tag}{self._counter}b",
        )
        ip("link", "add", tmp_a, "type", "veth", "peer", "name", tmp_b)
        ip("link", "set", tmp_a, "netns", ns_a)
        ip("link", "set", tmp_b, "netns", ns_b)
        ip("-n", ns_a, "link", "set", tmp_a, "name", name_a)
        if mac_a:
            ip("-n", ns_a, "link", "set", name_a, "address", mac_a)
        ip("-n", ns_a, "link", "set", name_a, "up")
        end_b = name_b or tmp_b
        if name_b:
            ip("-n", ns_b, "link", "set", tmp_b, "name", name_b)
        ip("-n", ns_b, "link", "set", end_b, "up")

    def bridge_port(self, bridge_ns: str, host_ns: str, mac: str) -> None:
        """Connect *host_ns*'s eth0 to the hub-mode bridge ``br0`` in *bridge_ns*."""
        self._counter += 1
        port = f"p{self._counter}"
        self.veth(host_ns, bridge_ns, mac_a=mac, name_b=port)
        ip("-n", bridge_ns, "link", "set", port, "master", "br0")

    def bridge(self, ns: str) -> None:
        """A bridge in hub mode (ageing 0: every port sees every frame), like one PLC segment."""
        ip("-n", ns, "link", "add", "br0", "type", "bridge", "forward_delay", "0", "ageing_time", "0")
        ip("-n", ns, "link", "set", "br0", "up")

    def teardown(self) -> None:
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True, timeout=10)


@contextmanager
def lab(tag: str) -> Iterator[Lab]:
    reason = namespaces_possible()
    if reason is not None:
        pytest.skip(reason)
    the_lab = Lab(tag)
    try:
        yield the_lab
    finally:
        the_lab.teardown()


def v2gtool_in(ns: str, *args: str) -> subprocess.Popen[str]:
    """``v2gtool ARGS`` inside namespace *ns*, JSON lines on stdout."""
    return subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "v2gtool", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def wait_for_line(proc: subprocess.Popen[str], needle: str, timeout: float = 20.0) -> str:
    """Read *proc*'s stdout until a line contains *needle*."""
    assert proc.stdout is not None
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        line = proc.stdout.readline()
        if not line:
            break
        if needle in line:
            return line
    raise AssertionError(f"{needle!r} not seen; stderr: {proc.stderr.read() if proc.stderr else ''}")
