"""Two network namespaces joined by a veth pair, IPv6 link-local only: what a charging cable's PLC
link looks like to the two hosts. Used by ``session run --netns`` and by the tests. Names carry a
prefix and the pid so parallel runs don't collide; the namespaces, and with them the veth ends, are
always deleted. :func:`capture_link` writes what crosses one end into a pcap (``session run --trace``)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

from v2gtool.errors import V2GToolError
from v2gtool.net.pcapwriter import PcapWriteError, PcapWriter


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


def require_netns() -> None:
    """Raise :class:`NetnsError` when this process cannot create namespaces: not root, or no iproute2."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        raise NetnsError("network namespaces need root and iproute2")


@contextlib.contextmanager
def veth_pair(prefix: str) -> Iterator[VethPair]:
    """Create the pair (EV side, SECC side); raise :class:`NetnsError` when that is impossible."""
    require_netns()
    pid = os.getpid()
    pair = VethPair(f"{prefix}{pid}ev", f"{prefix}e{pid}", f"{prefix}{pid}se", f"{prefix}s{pid}")
    for stale in (pair.ev_ns, pair.secc_ns):  # left by a SIGKILLed run that had our pid: only ours can be
        subprocess.run(["ip", "netns", "del", stale], capture_output=True, timeout=10, check=False)
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


_CLONE_NEWNET = 0x40000000  # <sched.h>: setns(2) into a network namespace
_ETH_P_ALL = 0x0003  # <linux/if_ether.h>: every protocol, both directions
_IDLE_S = 0.2  # how long the capture waits for a frame before it looks whether to stop
_DRAIN_S = 1.0  # after the block: how long frames still queued (or still coming) are written


def _packet_socket(iface: str, netns: str | None) -> socket.socket:
    """An AF_PACKET socket on *iface* in namespace *netns* (None: ours). It is opened by a thread that
    joins the namespace and then ends (setns(2) moves only the calling thread); the socket keeps it."""
    opened: list[socket.socket | OSError] = []

    def open_socket() -> None:
        try:
            if netns is not None:
                fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
                try:
                    libc = ctypes.CDLL(None, use_errno=True)
                    if libc.setns(fd, _CLONE_NEWNET) != 0:
                        errno = ctypes.get_errno()
                        raise OSError(errno, os.strerror(errno))
                finally:
                    os.close(fd)
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ALL))
            sock.bind((iface, 0))
            sock.settimeout(_IDLE_S)
            opened.append(sock)
        except OSError as exc:
            opened.append(exc)

    thread = threading.Thread(target=open_socket, name="v2gtool-capture-open")
    thread.start()
    thread.join()
    (result,) = opened
    if isinstance(result, OSError):
        where = iface if netns is None else f"{netns}/{iface}"
        raise NetnsError(f"cannot capture on {where}: {result.strerror or result}")
    return result


@contextlib.contextmanager
def capture_link(iface: str, writer: PcapWriter | None, *, netns: str | None = None) -> Iterator[None]:
    """Write every Ethernet frame sent or received on *iface* (in namespace *netns*) into *writer*,
    stamped with the wall clock, while the block runs; then close *writer*. Nothing without a
    writer. Each frame is flushed as it comes, so a crash keeps what was captured; a write error
    stops the capture and is raised when the block ends."""
    if writer is None:
        yield
        return
    try:
        sock = _packet_socket(iface, netns)
    except NetnsError:
        writer.close()
        raise
    stop = threading.Event()
    failed: list[PcapWriteError] = []

    def capture() -> None:
        drained_by: float | None = None  # once the block ended: write what is queued, for a moment at most
        while drained_by is None or time.monotonic() < drained_by:
            try:
                frame = sock.recv(65535)
            except TimeoutError:
                if stop.is_set():  # idle after the block ended: every frame is written
                    return
                continue
            try:
                writer.write(time.time(), frame)
            except PcapWriteError as exc:
                failed.append(exc)
                return
            if drained_by is None and stop.is_set():
                drained_by = time.monotonic() + _DRAIN_S

    thread = threading.Thread(target=capture, name="v2gtool-capture", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()  # it ends within _DRAIN_S + _IDLE_S: only then are its socket and writer closed
        sock.close()
        writer.close()
    if failed:
        raise failed[0]
