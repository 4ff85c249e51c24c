"""Every -20 timeout firing through the real transports: TCP (and TLS) on loopback, a peer that goes
silent or answers too late, and the exit status and one-line message the commands give then.

The engines' timers are asserted on a virtual clock in test_engines.py; here they must fire through
sockets, so the clock is the wall clock and the assertions are about what fired and how the command
ended, never about how quickly (a timeout never fires early: the event times only bound it below).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from v2gtool.cli.live import SessionTimeout, build_plant, check_session, connect_session, real_time, scoped_host
from v2gtool.exit_codes import ExitCode
from v2gtool.iso20.evcc import Evcc, EvccConfig
from v2gtool.iso20.events import MessageReceived, SessionEnded
from v2gtool.iso20.secc import Secc, SeccConfig, SessionStore
from v2gtool.iso20.timeouts import MESSAGE_TIMEOUTS, Timeouts
from v2gtool.net.v2g_tcp import Ending, FrameStream, Outcome, serve_connection
from v2gtool.pki.create import init_pki
from v2gtool.pki.tls import client_context
from v2gtool.session.events import Event

V2GTOOL = [sys.executable, "-m", "v2gtool"]
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@contextlib.asynccontextmanager
async def loopback_server(handler: Handler) -> AsyncIterator[int]:
    """A TCP server on [::1] running *handler* per connection; yields its port."""
    server = await asyncio.start_server(handler, host="::1", port=0)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()


async def connect_cli(port: int, *extra: str) -> tuple[int, list[dict[str, object]], str]:
    """``v2gtool --json v2g-message-handler connect`` against [::1]:*port*: exit status, records, stderr."""
    process = await asyncio.create_subprocess_exec(
        *V2GTOOL, "--json", "v2g-message-handler", "connect", "--iface", "lo", "--host", "::1", "--port", str(port),
        "--no-tls", *extra, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), timeout=120)
    assert process.returncode is not None
    return process.returncode, [json.loads(line) for line in out.decode().splitlines()], err.decode()


def test_connect_exits_with_the_timeout_status_when_the_secc_stays_silent() -> None:
    """The SECC accepts the connection and reads, but never answers supportedAppProtocolReq: the EVCC's
    message timeout for it (2 s, ISO 15118-20 Table 107) ends the session, exit 3, one line."""
    received = bytearray()

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            received.extend(data)
        writer.close()

    async def scenario() -> tuple[int, list[dict[str, object]], str]:
        async with loopback_server(silent) as port:
            return await connect_cli(port)

    status, records, stderr = asyncio.run(scenario())
    assert status == ExitCode.TIMEOUT
    assert stderr == "v2gtool: error: EVCC session failed: timeout waiting for supportedAppProtocolRes\n"
    sent, ended = records
    assert sent["message"] == "supportedAppProtocolReq" and ended["event"] == "SessionEnded"
    assert float(ended["t"]) - float(sent["t"]) >= MESSAGE_TIMEOUTS["supportedAppProtocolReq"]
    assert received[:4] == b"\x01\xfe\x80\x01"  # the request went out as V2GTP (SAP payload type)


def test_connect_exits_with_the_timeout_status_when_a_charge_loop_answer_is_late() -> None:
    """Our SECC serves the session normally but answers the first DC_ChargeLoopReq 0.8 s late, past
    the 0.5 s V2G_EVCC_Msg_Timeout of DC_ChargeLoopReq: the EVCC stops there, exit 3."""
    late = 0.8

    async def slow_secc(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        _scenario, charger, _vehicle = build_plant(None, remote_ev=True)
        clock = real_time(charger)
        secc = Secc(SeccConfig(), charger, clock(), SessionStore())
        stream = FrameStream(reader)
        while (frame := await stream.next()) is not None:
            outputs = secc.receive(frame, clock())
            if any(isinstance(o, MessageReceived) and o.message == "DC_ChargeLoopReq" for o in outputs):
                await asyncio.sleep(late)
            for item in outputs:
                if isinstance(item, bytes):
                    writer.write(item)
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        writer.close()

    async def scenario() -> tuple[int, list[dict[str, object]], str]:
        async with loopback_server(slow_secc) as port:
            return await connect_cli(port, "--duration", "5")

    status, records, stderr = asyncio.run(scenario())
    assert status == ExitCode.TIMEOUT, stderr
    assert stderr == "v2gtool: error: EVCC session failed: timeout waiting for DC_ChargeLoopRes\n"
    sent = [r for r in records if r["event"] == "MessageSent"]
    assert sent[-1]["message"] == "DC_ChargeLoopReq"
    assert [r["message"] for r in sent].count("DC_ChargeLoopReq") == 1
    assert float(records[-1]["t"]) - float(sent[-1]["t"]) >= MESSAGE_TIMEOUTS["DC_ChargeLoopReq"]


async def secc_against(client: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
                       timeouts: Timeouts) -> tuple[Outcome, list[Event], bytes]:
    """Our SECC (serve_connection) on [::1] against *client*; what it ended with, its events and
    what the client read until the SECC closed the connection."""
    _scenario, charger, _vehicle = build_plant(None, remote_ev=True)
    clock = real_time(charger)
    events: list[Event] = []
    outcomes: list[Outcome] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        secc = Secc(SeccConfig(timeouts=timeouts), charger, clock(), SessionStore())
        outcomes.append(await serve_connection(secc, reader, writer, clock, events.append))

    async with loopback_server(handle) as port:
        reader, writer = await asyncio.open_connection("::1", port)
        await client(reader, writer)
        seen = await asyncio.wait_for(reader.read(), timeout=30)  # until the SECC closes
        writer.close()
        for _ in range(100):  # the handler returns right after closing
            if outcomes:
                break
            await asyncio.sleep(0.01)
    (outcome,) = outcomes
    return outcome, events, seen


def test_secc_sequence_timeout_through_tcp_ends_the_session_and_closes() -> None:
    """The EV sets up its session, then goes silent: V2G_SECC_Sequence_Timeout (here 0.3 s) ends the
    session, the SECC closes the connection, and serve's exit status would be 3."""
    evcc = Evcc(EvccConfig(), build_plant(None, remote_ev=False)[2])

    async def set_up_then_stop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        stream = FrameStream(reader)
        outputs = evcc.start(0.0)
        for _ in range(2):  # supportedAppProtocolReq, then SessionSetupReq
            writer.write(next(o for o in outputs if isinstance(o, bytes)))
            evcc.sent(0.0)
            frame = await stream.next()
            assert frame is not None
            outputs = evcc.receive(frame, 0.0)

    outcome, events, seen = asyncio.run(secc_against(set_up_then_stop, Timeouts(sequence=0.3)))
    assert outcome.ending is Ending.TIMEOUT and not outcome.ok
    assert outcome.ended is not None
    assert outcome.ended.reason.startswith("V2G_SECC_Sequence_Timeout: no request in state")
    last_request = [e for e in events if isinstance(e, MessageReceived)][-1]
    assert last_request.message == "SessionSetupReq"
    assert outcome.ended.t - last_request.t >= 0.3
    assert seen == b""  # nothing more was sent: the SECC only closed
    with pytest.raises(SessionTimeout) as raised:
        check_session("SECC", outcome)
    assert raised.value.exit_code == ExitCode.TIMEOUT
    assert str(raised.value) == f"SECC session failed: {outcome.ended.reason}"


def test_secc_communication_setup_timeout_when_the_ev_never_speaks() -> None:
    """A TCP connection without supportedAppProtocolReq: the SECC gives up after its communication
    setup time (here 0.3 s) and closes."""

    async def say_nothing(_reader: asyncio.StreamReader, _writer: asyncio.StreamWriter) -> None:
        return None

    outcome, events, seen = asyncio.run(secc_against(say_nothing, Timeouts(communication_setup=0.3)))
    assert outcome.ending is Ending.TIMEOUT
    assert outcome.ended is not None and outcome.ended.reason.startswith("V2G_SECC_CommunicationSetup_Timeout")
    assert [type(e) for e in events] == [SessionEnded]
    assert seen == b""


def test_evcc_communication_setup_timeout_when_the_tls_handshake_never_completes(tmp_path: Path) -> None:
    """The SECC accepts TCP but never answers the ClientHello: connect gives up after
    V2G_EVCC_CommunicationSetup_Timeout (here 0.3 s) with the timeout exit status and one line."""
    init_pki(tmp_path / "certs", tmp_path / "trust")
    context = client_context(tmp_path / "certs", tmp_path / "trust")
    hello = bytearray()

    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            hello.extend(data)
        writer.close()

    async def scenario() -> None:
        async with loopback_server(mute) as port:
            config = EvccConfig(timeouts=Timeouts(communication_setup=0.3))
            await connect_session("lo", "::1", port, context, build_plant(None, remote_ev=False), config, print)

    with pytest.raises(SessionTimeout) as raised:
        asyncio.run(scenario())
    assert raised.value.exit_code == ExitCode.TIMEOUT
    message = str(raised.value)
    assert "\n" not in message and message.endswith("no connection within 0.3 s (V2G_EVCC_CommunicationSetup_Timeout)")
    assert hello[:1] == b"\x16"  # a TLS handshake record (the ClientHello) was sent and left unanswered


@pytest.mark.parametrize(("host", "dialled"), [
    ("fe80::1", "fe80::1%eth1"),  # link-local: only meaningful with its interface
    ("fe80::1%veth0", "fe80::1%veth0"),  # already scoped
    ("::1", "::1"),  # loopback and global addresses take no zone
    ("fd00::7", "fd00::7"),
    ("localhost", "localhost"),
])
def test_connect_scopes_only_link_local_hosts(host: str, dialled: str) -> None:
    assert scoped_host(host, "eth1") == dialled
