"""The aggregator's small HTTP endpoint: the grid operator's requests in, the fleet's state out.

=========================  =======================================================================
``GET /fleet``             the fleet as JSON (:meth:`v2gtool.ocpp.csms.Vpp.snapshot`)
``POST /dispatch``         ``{"power_kw": 200, "duration_s": 900}``: deliver 200 kW into the grid
                           for 15 minutes (a negative ``power_kw`` absorbs: the fleet charges)
``DELETE /dispatch``       cancel the request
=========================  =======================================================================

HTTP/1.1, one request per connection, JSON bodies up to 64 KiB; errors answer 4xx with
``{"error": "..."}``. Bind it to loopback or a management network: it has no authentication.
"""

from __future__ import annotations

import asyncio
import json
import math
from typing import Any

from v2gtool.ocpp.csms import CsmsError, Vpp

MAX_BODY = 64 * 1024
REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large"}


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def parse_dispatch(body: bytes) -> tuple[float, float]:
    """``{"power_kw": P, "duration_s": D}`` as (signed W for the fleet, seconds): +P kW delivered
    into the grid is -P kW for the vehicles."""
    try:
        data = json.loads(body)
        power_kw = float(data["power_kw"])
        duration = float(data.get("duration_s", 900))
    except (ValueError, KeyError, TypeError, OverflowError):
        raise _HttpError(400, 'expected {"power_kw": number, "duration_s": number}') from None
    power = -power_kw * 1000.0
    if not (math.isfinite(power) and math.isfinite(duration) and duration > 0):
        raise _HttpError(400, "power_kw must be finite and duration_s finite and positive")
    return power, duration


async def serve_control(vpp: Vpp, host: str, port: int) -> asyncio.Server:
    """Start the endpoint; the server's socket says the bound port."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, body = await _route(vpp, reader)
        except _HttpError as exc:
            status, body = exc.status, {"error": str(exc)}
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError, ValueError):
            writer.close()
            return
        data = json.dumps(body).encode()
        head = (
            f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + data)
        try:
            await writer.drain()
        finally:
            writer.close()

    try:
        return await asyncio.start_server(handle, host, port)
    except OSError as exc:
        raise CsmsError(f"cannot listen on {host}:{port} (HTTP): {exc.strerror}") from None


async def _route(vpp: Vpp, reader: asyncio.StreamReader) -> tuple[int, Any]:
    request_line = (await reader.readline()).decode("latin-1").split()
    if len(request_line) != 3:
        raise _HttpError(400, "malformed request line")
    method, path, _ = request_line
    length = 0
    while True:
        line = (await reader.readline()).decode("latin-1").strip()
        if not line:
            break
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            text = value.strip()
            if not (text.isascii() and text.isdigit()):  # RFC 9110 8.6: 1*DIGIT
                raise _HttpError(400, f"bad Content-Length {text[:20]!r}")
            length = int(text) if len(text) <= 12 else MAX_BODY + 1
    if length > MAX_BODY:
        raise _HttpError(413, f"body over {MAX_BODY} bytes")
    body = await reader.readexactly(length) if length else b""
    path = path.split("?", 1)[0]
    if path == "/fleet" and method == "GET":
        return 200, vpp.snapshot()
    if path == "/dispatch" and method == "POST":
        power, duration = parse_dispatch(body)
        vpp.dispatch(power, duration)
        return 200, {"accepted": True, "power_w": power, "duration_s": duration}
    if path == "/dispatch" and method == "DELETE":
        vpp.cancel()
        return 200, {"cancelled": True}
    if path in ("/fleet", "/dispatch"):
        raise _HttpError(405, f"{method} not allowed on {path}")
    raise _HttpError(404, f"no such resource {path}")
