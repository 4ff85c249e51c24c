"""SDP over UDP/IPv6 link-local multicast (ISO 15118-2/-20 clause 7.10.1): sockets around ``v2gtool.sdp``.

:func:`discover` is the EVCC: it multicasts requests to ff02::1 UDP 15118 out of one interface.
:func:`serve_sdp` is the SECC: it joins ff02::1 on one interface, listens on UDP 15118 with
SO_REUSEADDR (several listeners may share the port) and answers each request by unicast.
Both run on the asyncio loop; the protocol logic and its timers live in the sans-IO core.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable
from pathlib import Path
from typing import cast

from v2gtool.sdp import (
    SDP_MAX_REQUESTS,
    SDP_MULTICAST_GROUP,
    SDP_REQUEST_TIMEOUT,
    SDP_SERVER_PORT,
    SdpClient,
    SdpInterfaceError,
    SdpMalformedDatagram,
    SdpResult,
    SdpServer,
    SdpTimeout,
    Security,
    TransportProtocol,
)
from v2gtool.session.events import Event

log = logging.getLogger("v2gtool.sdp")

EventSink = Callable[[Event], None]

# thread-self, not self: a thread that entered another network namespace must see that one.
_IF_INET6 = Path("/proc/thread-self/net/if_inet6")
# Address flags of /proc/net/if_inet6 (linux/if_addr.h): not usable until DAD has finished.
_IFA_F_DADFAILED = 0x08
_IFA_F_TENTATIVE = 0x40
_SCOPE_LINK = 0x20


def interface_index(iface: str) -> int:
    """The kernel index of *iface*; raise :class:`SdpInterfaceError` when there is no such interface."""
    try:
        return socket.if_nametoindex(iface)
    except OSError:
        raise SdpInterfaceError(f"network interface {iface!r} does not exist") from None


_IN_DAD = "still in duplicate address detection"
# How long serve waits for DAD to finish: RFC 4862 clause 5.4 takes DupAddrDetectTransmits (1) x
# RetransTimer (1 s) after a random delay of up to MAX_RTR_SOLICITATION_DELAY (1 s, RFC 4861 clause 10).
DAD_WAIT = 3.0
_DAD_POLL = 0.05


def _link_local(iface: str, if_inet6: Path, tentative_ok: bool) -> ipaddress.IPv6Address | str:
    """The usable IPv6 link-local address of *iface*, or why there is none."""
    interface_index(iface)
    state = "none configured"
    for line in if_inet6.read_text().splitlines():
        fields = line.split()
        if len(fields) != 6 or fields[5] != iface or int(fields[3], 16) != _SCOPE_LINK:
            continue
        flags = int(fields[4], 16)
        if flags & _IFA_F_DADFAILED:
            state = "duplicate address detection failed: the address is in use on the link"
        elif flags & _IFA_F_TENTATIVE and not tentative_ok:
            state = _IN_DAD
        else:
            return ipaddress.IPv6Address(bytes.fromhex(fields[0]))
    return state


def _no_address(iface: str, state: str) -> SdpInterfaceError:
    return SdpInterfaceError(f"interface {iface!r} has no usable IPv6 link-local address ({state})")


def link_local_address(iface: str, if_inet6: Path = _IF_INET6, *, tentative_ok: bool = False) -> ipaddress.IPv6Address:
    """The usable (DAD finished) IPv6 link-local address of *iface*, which the SECC announces.

    With *tentative_ok* an address still in duplicate address detection counts too: the EVCC's
    requests go out once it is usable, within the retries SDP allows.
    """
    found = _link_local(iface, if_inet6, tentative_ok)
    if isinstance(found, str):
        raise _no_address(iface, found)
    return found


async def usable_link_local_address(
    iface: str, if_inet6: Path = _IF_INET6, wait: float = DAD_WAIT
) -> ipaddress.IPv6Address:
    """:func:`link_local_address`, waiting up to *wait* seconds for duplicate address detection to finish
    (an interface that just came up, RFC 4862 clause 5.4): the SECC can only listen on a usable address."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while isinstance(found := _link_local(iface, if_inet6, False), str):
        if found != _IN_DAD or loop.time() >= deadline:
            raise _no_address(iface, found)
        await asyncio.sleep(_DAD_POLL)
    return found


def _source(addr: tuple[str | int, ...]) -> str:
    return str(addr[0]).partition("%")[0]


def _dispatch(events: list[Event], on_event: EventSink | None) -> None:
    """Hand *events* to *on_event*, which reports them; without one, dropped datagrams are logged."""
    for event in events:
        if on_event is not None:
            on_event(event)
        elif isinstance(event, SdpMalformedDatagram):
            log.warning(
                "dropped malformed SDP datagram #%d from %s: %s", event.count, event.source, event.reason
            )


class _ClientProtocol(asyncio.DatagramProtocol):
    def __init__(self, client: SdpClient, destination: tuple[str, int, int, int], on_event: EventSink | None):
        self._client = client
        self._destination = destination
        self._on_event = on_event
        self._loop = asyncio.get_running_loop()
        self.done: asyncio.Future[SdpResult] = self._loop.create_future()
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)
        self._send(self._client.start(self._loop.time()))

    def _send(self, datagram: bytes) -> None:
        assert self._transport is not None
        self._transport.sendto(datagram, self._destination)
        self._arm()

    def _arm(self) -> None:
        deadline = self._client.deadline
        if deadline is not None:
            self._timer = self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        deadline = self._client.deadline
        if deadline is not None and self._loop.time() < deadline:
            self._arm()  # asyncio may fire a timer up to one clock resolution early
            return
        datagram = self._client.timer_expired(self._loop.time())
        _dispatch(self._client.take_events(), self._on_event)
        if datagram is not None:
            self._send(datagram)
        elif self._client.failed and not self.done.done():
            self.done.set_exception(
                SdpTimeout(f"no SDP response after {self._client.attempts} requests to "
                         f"{self._destination[0]} on {socket.if_indextoname(self._destination[3])}")
            )

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        result = self._client.datagram_received(data, _source(addr), self._loop.time())
        _dispatch(self._client.take_events(), self._on_event)
        if result is not None and not self.done.done():
            if self._timer is not None:
                self._timer.cancel()
            self.done.set_result(result)

    def error_received(self, exc: Exception) -> None:
        log.warning("SDP socket error: %s", exc)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._transport is not None:
            self._transport.close()


async def discover(
    iface: str,
    security: Security,
    transport: TransportProtocol = TransportProtocol.TCP,
    *,
    request_timeout: float = SDP_REQUEST_TIMEOUT,
    max_requests: int = SDP_MAX_REQUESTS,
    server_port: int = SDP_SERVER_PORT,
    on_event: EventSink | None = None,
) -> SdpResult:
    """Find the SECC on *iface* as the EVCC does; raise :class:`SdpTimeout` after *max_requests* tries,
    or :class:`SdpInterfaceError` at once when *iface* has no IPv6 link-local address to send from."""
    index = interface_index(iface)
    link_local_address(iface, tentative_ok=True)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
        sock.bind(("::", 0, 0, index))
    except OSError as exc:
        sock.close()
        raise SdpInterfaceError(f"cannot open the SDP client socket on {iface}: {exc.strerror}") from None
    client = SdpClient(security, transport, request_timeout=request_timeout, max_requests=max_requests)
    loop = asyncio.get_running_loop()
    destination = (SDP_MULTICAST_GROUP, server_port, 0, index)
    _, protocol = await loop.create_datagram_endpoint(
        lambda: _ClientProtocol(client, destination, on_event), sock=sock
    )
    try:
        result = await protocol.done
    finally:
        protocol.close()
    return dataclasses.replace(result, interface=iface)


class SdpResponder(asyncio.DatagramProtocol):
    """A running SDP server on one interface; :meth:`close` stops it."""

    def __init__(self, server: SdpServer, index: int, on_event: EventSink | None) -> None:
        self.server = server
        self._index = index
        self._on_event = on_event
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        if len(addr) == 4 and addr[3] not in (0, self._index):
            return  # arrived on another interface: not ours to answer
        response = self.server.datagram_received(data, _source(addr), self._loop.time())
        _dispatch(self.server.take_events(), self._on_event)
        if response is not None and self._transport is not None:
            self._transport.sendto(response, (_source(addr), int(addr[1]), 0, self._index))

    def error_received(self, exc: Exception) -> None:
        log.warning("SDP socket error: %s", exc)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


async def serve_sdp(
    iface: str,
    tcp_port: int,
    supported: frozenset[Security],
    *,
    address: ipaddress.IPv6Address | None = None,
    listen_port: int = SDP_SERVER_PORT,
    on_event: EventSink | None = None,
) -> SdpResponder:
    """Start answering SDP requests on *iface* with *address* (default: its link-local address)."""
    index = interface_index(iface)
    server = SdpServer(address or link_local_address(iface), tcp_port, supported)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    try:
        # Several SECC processes (or a sniffer) may listen on UDP 15118 of the same host.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(("::", listen_port))
        membership = socket.inet_pton(socket.AF_INET6, SDP_MULTICAST_GROUP) + struct.pack("@I", index)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, membership)
    except OSError as exc:
        sock.close()
        raise SdpInterfaceError(f"cannot listen for SDP on {iface} UDP {listen_port}: {exc.strerror}") from None
    loop = asyncio.get_running_loop()
    _, responder = await loop.create_datagram_endpoint(
        lambda: SdpResponder(server, index, on_event), sock=sock
    )
    return responder
