"""Network namespaces and veth links for the SLAC tests: created per test, always torn down.

Names carry the prefix ``v2gs`` and the pid, so concurrent test runs of other areas on the same
machine never collide. Nothing is routed: frames stay inside these namespaces.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

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


class Peer:
    """A process in a namespace; threads collect its stdout and stderr lines, so no wait can
    block past its timeout even when the process stalls."""

    def __init__(self, argv: list[str], cwd: Path | None = None) -> None:
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
        self.out: list[str] = []
        self.err: list[str] = []
        self._threads = [
            threading.Thread(target=self._collect, args=(stream, sink), daemon=True)
            for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for thread in self._threads:
            thread.start()

    @staticmethod
    def _collect(stream: IO[str] | None, sink: list[str]) -> None:
        assert stream is not None
        for line in stream:
            sink.append(line)

    @property
    def log(self) -> str:
        return "".join(self.out) + "".join(self.err)

    def wait_for(self, needle: str, timeout: float = 30.0) -> None:
        """Until a line of stdout or stderr contains *needle*; fail with the output otherwise."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(needle in line for line in [*self.out, *self.err]):
                return
            if self.proc.poll() is not None and all(not t.is_alive() for t in self._threads):
                break
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"{needle!r} not seen; output:\n{self.log[-3000:]}")

    def finish(self, timeout: float = 60.0) -> int:
        """Wait for the exit (killing the process after *timeout*); the exit status."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for thread in self._threads:
            thread.join(timeout=10)
        return self.proc.returncode

    def stop(self) -> str:
        """Terminate (if still running) and return everything it printed."""
        if self.proc.poll() is None:
            self.proc.terminate()
        self.finish(timeout=10)
        return self.log

    def json_records(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out if line.startswith("{")]

    def slac_result(self) -> dict[str, Any]:
        return next((r for r in reversed(self.json_records()) if r["event"] == "SlacResult"), {})


def in_ns(ns: str, *argv: str, cwd: Path | None = None) -> Peer:
    return Peer(["ip", "netns", "exec", ns, *argv], cwd=cwd)


def v2gtool_in(ns: str, *args: str) -> Peer:
    """``v2gtool ARGS`` inside namespace *ns*."""
    return in_ns(ns, sys.executable, "-m", "v2gtool", *args, cwd=REPO)
