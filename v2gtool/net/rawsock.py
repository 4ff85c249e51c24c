"""Raw Ethernet on a named interface (Linux AF_PACKET), for HomePlug AV MMEs (EtherType 0x88E1).

Frames bypass the IP stack. The socket is bound to one EtherType, so the kernel hands us only
HomePlug frames; frames this host sent itself (PACKET_OUTGOING) are dropped on receipt.
Opening it needs root or CAP_NET_RAW.
"""

from __future__ import annotations

import select
import socket
from pathlib import Path
from types import TracebackType

from v2gtool.errors import V2GToolError

PACKET_OUTGOING = 4  # linux/if_packet.h: sll_pkttype of a frame this host sent
_MAX_FRAME = 1518


class RawSocketError(V2GToolError):
    """The interface cannot be opened or used for raw Ethernet."""

    exit_code = 4


def interface_mac(iface: str) -> str:
    """The MAC address of *iface*, from sysfs."""
    try:
        return Path(f"/sys/class/net/{iface}/address").read_text().strip().lower()
    except OSError:
        raise RawSocketError(f"no network interface {iface!r} (see `ip link`)") from None


class RawSocketLink:
    """An AF_PACKET socket on *iface* for one EtherType: ``send(frame)``, ``recv(timeout)``."""

    def __init__(self, iface: str, ethertype: int) -> None:
        self.iface = iface
        self.mac = interface_mac(iface)
        try:
            self._sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype))
        except PermissionError:
            raise RawSocketError(f"raw socket on {iface}: needs root or CAP_NET_RAW") from None
        try:
            self._sock.bind((iface, ethertype))
        except OSError as exc:
            self._sock.close()
            raise RawSocketError(f"cannot bind raw socket to {iface}: {exc.strerror}") from exc

    def send(self, frame: bytes) -> None:
        try:
            self._sock.send(frame)
        except OSError as exc:
            raise RawSocketError(f"send on {self.iface} failed: {exc.strerror}") from exc

    def recv(self, timeout: float) -> bytes | None:
        """The next frame another host sent, or ``None`` after *timeout* seconds. A socket error (the
        interface went down: ENETDOWN) is a one-line :class:`RawSocketError`, as in :meth:`send`."""
        try:
            while True:
                ready, _, _ = select.select([self._sock], [], [], max(timeout, 0.0))
                if not ready:
                    return None
                frame, address = self._sock.recvfrom(_MAX_FRAME)
                if address[2] != PACKET_OUTGOING:
                    return frame
                timeout = 0.0  # drain our own echo without waiting again
        except OSError as exc:
            raise RawSocketError(f"receive on {self.iface} failed: {exc.strerror}") from exc

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> RawSocketLink:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
