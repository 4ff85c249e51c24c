"""The station's websocket: its identity in the URL (OCPP part 4 3.2) and a normal closure when the
station stops."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import websockets
from websockets.asyncio.server import ServerConnection, serve

from v2gtool.ocpp.outbox import Outbox
from v2gtool.ocpp.payloads import OCPP201
from v2gtool.ocpp.profile import ProfileSetpoint
from v2gtool.ocpp.station import BridgeConfig, StationBridge

ACCEPTED = {"currentTime": "2026-01-01T00:00:00Z", "interval": 300, "status": "Accepted"}


async def _connect_and_stop(tmp: Path, station_id: str) -> tuple[str, int | None, float]:
    """The path a station bridge connects to, the close code the CSMS gets when it is stopped (its
    link task cancelled, as ``ocpp-bridge`` does at its end) as soon as its boot is answered, and how
    long the stop took (s)."""
    seen: dict[str, object] = {}
    booted = asyncio.Event()
    closed = asyncio.Event()

    async def handler(ws: ServerConnection) -> None:
        seen["path"] = ws.request.path if ws.request is not None else ""
        try:
            async for raw in ws:
                _, message_id, action, _payload = json.loads(raw)
                await ws.send(json.dumps([3, message_id, ACCEPTED if action == "BootNotification" else {}]))
                booted.set()
        except websockets.ConnectionClosed:
            pass
        seen["code"] = ws.close_code
        closed.set()

    async with serve(handler, "127.0.0.1", 0, subprotocols=[websockets.Subprotocol(OCPP201)]) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        config = BridgeConfig(url=f"ws://127.0.0.1:{port}/ocpp/", station_id=station_id)
        bridge = StationBridge(config, Outbox(tmp / "outbox"), ProfileSetpoint())
        link = asyncio.create_task(bridge.run())
        await asyncio.wait_for(booted.wait(), 10)
        stopped = time.monotonic()
        link.cancel()
        await asyncio.gather(link, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(closed.wait(), 5)
        took = time.monotonic() - stopped
    code = seen.get("code")
    return str(seen["path"]), code if isinstance(code, int) else None, took


def test_a_stopped_station_closes_its_websocket_normally(tmp_path: Path) -> None:
    """RFC 6455 7.4.1: 1000 is a normal closure; 1011 would tell the CSMS the station failed. And at
    once: not after a response timeout of a call sent while it was stopping."""
    _, code, took = asyncio.run(_connect_and_stop(tmp_path, "CS01"))
    assert code == 1000 and took < 5.0


def test_the_station_identity_is_percent_encoded_in_the_url(tmp_path: Path) -> None:
    path, _, _ = asyncio.run(_connect_and_stop(tmp_path, "CS|01@park.a"))
    assert path == "/ocpp/CS%7C01@park.a"


@pytest.mark.parametrize(
    ("station_id", "stations"),
    [("CS 01/é", "1"), ("CS/01", "1"), ("CS:1", "1"), ("A" * 49, "1"), ("", "1"), ("A" * 45, "2")],
)
def test_an_invalid_station_identity_is_a_one_line_usage_error(
    tmp_path: Path, station_id: str, stations: str
) -> None:
    """Not an identifierString of at most 48 characters (with --stations N: with its -NNN), or one
    with a ':' the CSMS would refuse (the HTTP Basic separator): exit 2, before anything connects or
    is written, rather than reconnecting forever."""
    process = subprocess.run(
        [
            *[sys.executable, "-m", "v2gtool", "ocpp-bridge", "--sim", "--csms", "ws://127.0.0.1:1/ocpp"],
            *["--station-id", station_id, "--stations", stations, "--outbox-dir", str(tmp_path / "outbox")],
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert process.returncode == 2, process.stderr
    errors = [line for line in process.stderr.splitlines() if line.startswith("Error")]
    assert len(errors) == 1 and "--station-id" in errors[0] and "is not an OCPP station identity" in errors[0]
    assert "Traceback" not in process.stderr
    assert not (tmp_path / "outbox").exists()
