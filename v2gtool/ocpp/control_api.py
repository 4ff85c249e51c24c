"""The aggregator's small HTTP endpoint: the grid operator's requests in, the fleet's state out.

=========================  =======================================================================
``GET /fleet``             the fleet as JSON (:meth:`v2gtool.ocpp.csms.Vpp.snapshot`)
``POST /dispatch``         ``{"power_kw": 200, "duration_s": 900}``: deliver 200 kW into the grid
                           for 15 minutes (a negative ``power_kw`` absorbs: the fleet charges)
``DELETE /dispatch``       cancel the request
=========================  =======================================================================

HTTP/1.1, one request per connection, JSON bodies up to 64 KiB, lines up to 64 KiB, the whole
request within :data:`READ_TIMEOUT` s; errors answer 4xx (5xx when the state directory cannot take
the request, or an answer would hold a number that strict JSON cannot carry) with
``{"error": "..."}``. Bind it to loopback or a management network: it has no authentication.

A request is at most :data:`MAX_REQUEST_KW` either way for at most :data:`MAX_REQUEST_S` (``vpp
dispatch`` and ``vpp serve --dispatch-kw`` check the same bounds).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

from v2gtool.ocpp.csms import CsmsError, Vpp

MAX_BODY = 64 * 1024
MAX_LINE = 64 * 1024  # the stream's limit: a longer request or header line is refused
READ_TIMEOUT = 10.0  # s for the whole request, from the connection on
MAX_REQUEST_KW = 1e6  # 1 GW either way: above any fleet of vehicles one aggregator serves
MAX_REQUEST_S = 7 * 86_400.0  # a week: a grid request lasts minutes to hours; a longer plan is several
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    413: "Payload Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}


class _HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


EXPECTED = 'expected {"power_kw": number, "duration_s": number}'


JSON_TYPES = {str: "a string", list: "an array", dict: "an object", bool: "a boolean", type(None): "null"}


def _number(data: dict[str, Any], name: str, default: float | None = None) -> float:
    """A JSON number member of the body (RFC 8259 6): an int or float, not a bool or a string."""
    if name not in data and default is None:
        raise _HttpError(400, f"{EXPECTED}: no {name}")
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _HttpError(400, f"{EXPECTED}: {name} is {JSON_TYPES.get(type(value), 'no number')}")
    try:
        return float(value)
    except OverflowError:
        raise _HttpError(400, f"{EXPECTED}: {name} is too large") from None


def parse_dispatch(body: bytes) -> tuple[float, float]:
    """``{"power_kw": P, "duration_s": D}`` as (signed W for the fleet, seconds): +P kW delivered
    into the grid is -P kW for the vehicles."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        raise _HttpError(400, f"{EXPECTED}: the body is not JSON") from None
    if not isinstance(data, dict):
        raise _HttpError(400, f"{EXPECTED}: the body is no JSON object")
    power_kw = _number(data, "power_kw")
    duration = _number(data, "duration_s", 900)
    if not abs(power_kw) <= MAX_REQUEST_KW:  # not: nan passes no comparison
        raise _HttpError(400, f"power_kw must be finite, within ±{MAX_REQUEST_KW:.0f}, not {power_kw:g}")
    if not 0 < duration <= MAX_REQUEST_S:
        raise _HttpError(400, f"duration_s must be over 0 and at most {MAX_REQUEST_S:.0f}, not {duration:g}")
    return -power_kw * 1000.0, duration


async def serve_control(vpp: Vpp, host: str, port: int, read_timeout: float = READ_TIMEOUT) -> asyncio.Server:
    """Start the endpoint; the server's socket says the bound port."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, body = await _route(vpp, reader, read_timeout)
        except _HttpError as exc:
            status, body = exc.status, {"error": str(exc)}
        except ConnectionError:
            writer.close()
            return
        try:  # RFC 8259 has no Infinity or NaN: never send them
            data = json.dumps(body, allow_nan=False).encode()
        except ValueError:
            status, data = 500, b'{"error": "the answer holds a number that is not finite"}'
        head = (
            f"HTTP/1.1 {status} {REASONS.get(status, '')}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\nConnection: close\r\n\r\n"
        )
        writer.write(head.encode() + data)
        try:
            with contextlib.suppress(ConnectionError):
                await writer.drain()
        finally:
            writer.close()

    try:
        return await asyncio.start_server(handle, host, port, limit=MAX_LINE)
    except OSError as exc:
        raise CsmsError(f"cannot listen on {host}:{port} (HTTP): {exc.strerror}") from None


async def _line(reader: asyncio.StreamReader, what: str, status: int) -> str:
    """One CRLF-terminated line; *status* when it is over :data:`MAX_LINE` (RFC 9112 2.3, 5)."""
    try:
        return (await reader.readline()).decode("latin-1")
    except ValueError:  # the stream's LimitOverrunError
        raise _HttpError(status, f"{what} over {MAX_LINE} bytes") from None


async def _read(reader: asyncio.StreamReader) -> tuple[str, str, bytes]:
    """The method, path and body of one request."""
    request_line = (await _line(reader, "request line", 400)).split()
    if len(request_line) != 3:
        raise _HttpError(400, "malformed request line")
    method, path, _ = request_line
    length = 0
    while True:
        line = await _line(reader, "header line", 431)
        if not line.endswith("\n"):
            raise _HttpError(400, "the request ended inside its headers")
        line = line.strip()
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
    try:
        body = await reader.readexactly(length) if length else b""
    except asyncio.IncompleteReadError as exc:
        raise _HttpError(400, f"body of {len(exc.partial)} bytes, Content-Length {length}") from None
    return method, path.split("?", 1)[0], body


async def _route(vpp: Vpp, reader: asyncio.StreamReader, timeout: float = READ_TIMEOUT) -> tuple[int, Any]:
    """Read one request (408 when it takes over *timeout* s) and answer it."""
    try:
        method, path, body = await asyncio.wait_for(_read(reader), timeout)
    except TimeoutError:
        raise _HttpError(408, f"no complete request within {timeout:g} s") from None
    if path == "/fleet" and method == "GET":
        return 200, vpp.snapshot()
    if path == "/dispatch" and method == "POST":
        power, duration = parse_dispatch(body)
        _apply(vpp.dispatch, power, duration)
        return 200, {"accepted": True, "power_w": power, "duration_s": duration}
    if path == "/dispatch" and method == "DELETE":
        _apply(vpp.cancel)
        return 200, {"cancelled": True}
    if path in ("/fleet", "/dispatch"):
        raise _HttpError(405, f"{method} not allowed on {path}")
    raise _HttpError(404, f"no such resource {path}")


def _apply(change: Callable[..., None], *args: float) -> None:
    """Run a change of the grid request; 500 naming the problem when it could not be saved."""
    try:
        change(*args)
    except CsmsError as exc:
        raise _HttpError(500, str(exc)) from None
