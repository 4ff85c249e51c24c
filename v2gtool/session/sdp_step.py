"""The SDP step of the chain on the simulated link (ISO 15118-2 and ISO 15118-20 clause 7.10.1).

Once SLAC has joined the two modems, the EV multicasts an SDP request and the EVSE answers with
the link-local address and TCP port of its SECC. The datagrams are those of the sans-IO client and
server of :mod:`v2gtool.sdp`; the simulated PLC link carries them at once and loses none, as it
carries the V2GTP stream, so one request is answered. The session's TCP connection, on loopback,
stands for the one to the address and port the response names, and the trace shows it so. The
hosts' addresses are the link-local ones of their MACs (modified EUI-64, RFC 4291 appendix A).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from v2gtool.sdp import DEFAULT_TCP_PORT, SdpClient, SdpServer, Security
from v2gtool.session.events import Event

EV_ADDRESS = "fe80::ff:fe00:e02"
EVSE_ADDRESS = "fe80::ff:fe00:e01"
EV_PORT = 50123
SECC_PORT = DEFAULT_TCP_PORT  # the simulated SECC listens where a real one does by default


def run_sdp(
    now: float,
    emit: Callable[[Event], None],
    on_datagram: Callable[[float, bool, bytes], None] | None = None,
) -> None:
    """Discover the SECC at simulated time *now*; *on_datagram* gets ``(t, from_evcc, datagram)`` of
    each datagram as it leaves its host. The simulated session runs over plain TCP, so both sides
    ask for and offer no TLS."""
    client = SdpClient(Security.NO_TLS)
    server = SdpServer(ipaddress.IPv6Address(EVSE_ADDRESS), SECC_PORT, frozenset({Security.NO_TLS}))
    request = client.start(now)
    sent = client.take_events()
    response = server.datagram_received(request, EV_ADDRESS, now)
    assert response is not None  # the server answers every well-formed request
    answered = server.take_events()
    accepted = client.datagram_received(response, EVSE_ADDRESS, now)
    assert accepted is not None  # and the client takes every well-formed response
    if on_datagram is not None:
        on_datagram(now, True, request)
        on_datagram(now, False, response)
    for event in (*sent, *answered, *client.take_events()):
        emit(event)
