"""V2G_EVCC_CommunicationSetup_Timeout in ``connect``: one budget of 20 s from the start of SDP to
SessionSetupRes, TLS included (standards.md §2, §4.4), not 20 s after SDP and 20 s more after the
connection. SDP answers late on the plant's clock (the EV's time line jumps ahead, no sleeping), the
SECC accepts the connection and stays silent, over a real socket on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import socket
from collections.abc import AsyncIterator

import pytest

from v2gtool.cli import live
from v2gtool.cli.live import SessionTimeout, build_plant, connect_session
from v2gtool.iso20.evcc import EvccConfig
from v2gtool.iso20.events import SessionEnded
from v2gtool.iso20.timeouts import Timeouts
from v2gtool.sdp import TCP_PORT_RANGE, SdpRequest, SdpResponse, SdpResult, Security
from v2gtool.session.events import Event

SDP_TOOK = 19.7  # seconds of the 20 s budget SDP used up


@contextlib.asynccontextmanager
async def silent_secc() -> AsyncIterator[int]:
    """A TCP server on [::1], on a port an SDP response may announce, that reads and never answers."""

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass
        writer.close()

    for port in TCP_PORT_RANGE:
        with contextlib.suppress(OSError):
            server = await asyncio.start_server(silent, host="::1", port=port, family=socket.AF_INET6)
            break
    try:
        yield port
    finally:
        server.close()


def test_the_session_gets_what_sdp_left_of_the_communication_setup_time(monkeypatch: pytest.MonkeyPatch) -> None:
    plant = build_plant(None, remote_ev=False)
    charger = plant[1]
    events: list[Event] = []

    async def scenario() -> None:
        async with silent_secc() as port:

            async def late_sdp(_iface: str, security: Security) -> SdpResult:
                charger.advance(charger.now() + SDP_TOOK)  # the EV's clock: SDP answered this late
                response = SdpResponse(ipaddress.IPv6Address("::1"), port, security)
                return SdpResult(response, "[::1]:15118", SdpRequest(security), 50, SDP_TOOK, 0.01, 0)

            monkeypatch.setattr(live, "discover", late_sdp)
            # The message timeout of supportedAppProtocolReq (here 10 s) would fire long after the budget.
            config = EvccConfig(timeouts=Timeouts(message_scale=5))
            await connect_session("lo", None, None, None, plant, config, events.append)

    with pytest.raises(SessionTimeout, match="V2G_EVCC_CommunicationSetup_Timeout: no SessionSetupRes in time"):
        asyncio.run(scenario())
    (ended,) = [e for e in events if isinstance(e, SessionEnded)]
    assert not ended.ok


def test_no_connection_within_what_sdp_left_is_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """SDP used the whole budget: the connection is not even tried, exit 3 naming the timeout."""
    plant = build_plant(None, remote_ev=False)
    charger = plant[1]

    async def scenario() -> None:
        async with silent_secc() as port:

            async def too_late_sdp(_iface: str, security: Security) -> SdpResult:
                charger.advance(charger.now() + 20.0)
                response = SdpResponse(ipaddress.IPv6Address("::1"), port, security)
                return SdpResult(response, "[::1]:15118", SdpRequest(security), 50, 20.0, 0.01, 0)

            monkeypatch.setattr(live, "discover", too_late_sdp)
            await connect_session("lo", None, None, None, plant, EvccConfig(), lambda _event: None)

    with pytest.raises(SessionTimeout, match=r"no connection within 20 s \(V2G_EVCC_CommunicationSetup_Timeout\)$"):
        asyncio.run(scenario())
