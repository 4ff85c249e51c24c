"""The aggregator's HTTP endpoint, through a real ``serve_control`` on loopback (port 0) in front of a
:class:`Vpp` with its state in a temporary directory; and ``parse_dispatch`` fuzzed with untrusted
bodies (only the endpoint's own HTTP error may escape)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2gtool.ocpp.control_api import MAX_BODY, MAX_LINE, _HttpError, _route, parse_dispatch, serve_control
from v2gtool.ocpp.csms import Vpp, VppConfig
from v2gtool.ocpp.fleet import Vehicle
from v2gtool.ocpp.payloads import VehicleNeeds

Send = Callable[[bytes], Awaitable[tuple[int, Any]]]


def with_endpoint(
    tmp_path: Path, test: Callable[[Vpp, Send], Awaitable[None]], read_timeout: float = 10.0, eof: bool = True
) -> None:
    """Run *test* against a live endpoint: it gets the Vpp and a function sending raw request bytes
    (then the end of the stream, when *eof*) that returns (status, decoded JSON body)."""

    async def main() -> None:
        vpp = Vpp(VppConfig(state_dir=tmp_path / "state"))
        server = await serve_control(vpp, "127.0.0.1", 0, read_timeout=read_timeout)
        port = server.sockets[0].getsockname()[1]

        async def send(raw: bytes) -> tuple[int, Any]:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(raw)
            await writer.drain()
            if eof:
                writer.write_eof()
            response = await asyncio.wait_for(reader.read(), 5)
            writer.close()
            head, _, body = response.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            version, status, _ = lines[0].split(" ", 2)
            assert version == "HTTP/1.1"
            headers = dict(line.split(": ", 1) for line in lines[1:])
            assert headers["Content-Type"] == "application/json" and headers["Connection"] == "close"
            assert int(headers["Content-Length"]) == len(body)
            return int(status), json.loads(body)

        try:
            await test(vpp, send)
        finally:
            server.close()
            await server.wait_closed()
            vpp.log.close()

    asyncio.run(main())


def request(method: str, path: str, body: bytes = b"", headers: str = "") -> bytes:
    length = f"Content-Length: {len(body)}\r\n" if body else ""
    return f"{method} {path} HTTP/1.1\r\nHost: vpp\r\n{headers}{length}\r\n".encode() + body


def test_get_fleet_shows_the_vehicles_and_the_request(tmp_path: Path) -> None:
    async def test(vpp: Vpp, send: Send) -> None:
        status, body = await send(request("GET", "/fleet"))
        assert status == 200 and body["vehicles"] == [] and body["request"] is None and body["stations"] == 0
        v = Vehicle("cs-1", 1, "tx-1")
        v.update_needs(VehicleNeeds(True, 11_000.0, 7_000.0, None, 80, 20, 3_500.0))
        vpp.fleet.arrive(v)
        status, body = await send(request("GET", "/fleet?pretty=1"))
        assert status == 200 and body["discharge_capacity_w"] == 7_000.0  # 3.5 kWh over the 15 min horizon: 14 kW
        [row] = body["vehicles"]
        assert (row["station"], row["transaction_id"], row["min_soc"], row["remaining_wh"]) == (
            "cs-1", "tx-1", 20, 3_500.0,
        )  # fmt: skip

    with_endpoint(tmp_path, test)


def test_post_dispatch_sets_the_grid_request_and_delete_cancels_it(tmp_path: Path) -> None:
    async def test(vpp: Vpp, send: Send) -> None:
        status, body = await send(request("POST", "/dispatch", b'{"power_kw": 200, "duration_s": 900}'))
        assert (status, body) == (200, {"accepted": True, "power_w": -200_000.0, "duration_s": 900.0})
        req = vpp.fleet.request
        assert req is not None and req.power == -200_000.0 and req.until - req.start == pytest.approx(900.0)
        assert vpp.fleet.dispatched_at == req.start
        status, body = await send(request("GET", "/fleet"))
        assert body["request"]["power_w"] == -200_000.0
        status, body = await send(request("POST", "/dispatch", b'{"power_kw": -50}'))  # absorb, default 15 min
        assert (status, body["power_w"], body["duration_s"]) == (200, 50_000.0, 900.0)
        status, body = await send(request("DELETE", "/dispatch"))
        assert (status, body) == (200, {"cancelled": True}) and vpp.fleet.request is None

    with_endpoint(tmp_path, test)


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{power_kw: 200}", 'expected {"power_kw": number, "duration_s": number}'),
        (b'{"duration_s": 60}', 'expected {"power_kw": number'),
        (b'[200, 60]', 'expected {"power_kw": number'),
        (b'{"power_kw": "lots"}', 'expected {"power_kw": number'),
        (b'{"power_kw": 10, "duration_s": -60}', "duration_s must be over 0 and at most 604800, not -60"),
        (b'{"power_kw": 10, "duration_s": 0}', "duration_s must be over 0"),
        (b'{"power_kw": NaN}', "power_kw must be finite"),
        (b'{"power_kw": -Infinity}', "power_kw must be finite"),
        (b'{"power_kw": 10, "duration_s": Infinity}', "duration_s"),
        (b'{"power_kw": 1' + b"0" * 400 + b"}", 'expected {"power_kw": number'),
        (b'{"power_kw": 1e306}', "power_kw must be finite, within ±1000000, not 1e+306"),
        (b"\xff\xfe{}", 'expected {"power_kw": number'),
        (b'{"power_kw": true}', "power_kw is a boolean"),
        (b'{"power_kw": "5"}', "power_kw is a string"),
        (b'{"power_kw": "1_000"}', "power_kw is a string"),
        (b'{"power_kw": 5, "duration_s": "60"}', "duration_s is a string"),
        (b'{"power_kw": 5, "duration_s": null}', "duration_s is null"),
        (b'{"power_kw": [5]}', "power_kw is an array"),
    ],
)
def test_bad_dispatch_bodies_are_400_and_change_nothing(tmp_path: Path, body: bytes, error: str) -> None:
    async def test(vpp: Vpp, send: Send) -> None:
        status, answer = await send(request("POST", "/dispatch", body))
        assert status == 400 and error in answer["error"] and vpp.fleet.request is None

    with_endpoint(tmp_path, test)


def test_a_body_over_the_limit_is_413_without_reading_it(tmp_path: Path) -> None:
    async def test(vpp: Vpp, send: Send) -> None:
        status, answer = await send(
            f"POST /dispatch HTTP/1.1\r\nContent-Length: {MAX_BODY + 1}\r\n\r\n".encode() + b'{"power_kw": 1'
        )
        assert status == 413 and str(MAX_BODY) in answer["error"] and vpp.fleet.request is None
        status, _ = await send(request("POST", "/dispatch", b'{"power_kw": 1}' + b" " * (MAX_BODY - 15)))
        assert status == 200  # exactly at the limit is fine

    with_endpoint(tmp_path, test)


@pytest.mark.parametrize(
    ("raw", "status", "error"),
    [
        (request("GET", "/nothing-here"), 404, "no such resource /nothing-here"),
        (request("PUT", "/dispatch", b"{}"), 405, "PUT not allowed on /dispatch"),
        (request("POST", "/fleet", b"{}"), 405, "POST not allowed on /fleet"),
        (request("DELETE", "/fleet"), 405, "DELETE not allowed on /fleet"),
        (b"GET /fleet\r\n\r\n", 400, "malformed request line"),
        (b"\r\n", 400, "malformed request line"),
        (b"", 400, "malformed request line"),
        (b"POST /dispatch HTTP/1.1\r\nContent-Length: many\r\n\r\n", 400, "Content-Length"),
        (b"POST /dispatch HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400, "bad Content-Length '-5'"),
        (b"POST /dispatch HTTP/1.1\r\nContent-Length: \xb2\r\n\r\n", 400, "bad Content-Length"),
        (b"POST /dispatch HTTP/1.1\r\nContent-Length: " + b"9" * 5000 + b"\r\n\r\n", 413, "body over"),
        (b"GET /fleet HTTP/1.1\r\nX-Long: " + b"a" * MAX_LINE + b"\r\n\r\n", 431, "header line over 65536"),
        (b"GET /" + b"a" * MAX_LINE + b" HTTP/1.1\r\n\r\n", 400, "request line over 65536"),
        (b"POST /dispatch HTTP/1.1\r\nContent-Length: 20\r\n\r\n{", 400, "body of 1 bytes, Content-Length 20"),
        (b"GET /fleet HTTP/1.1\r\nHost: vpp", 400, "the request ended inside its headers"),
    ],
)
def test_requests_the_endpoint_does_not_serve(tmp_path: Path, raw: bytes, status: int, error: str) -> None:
    async def test(vpp: Vpp, send: Send) -> None:
        got, answer = await send(raw)
        assert (got, answer) == (status, {"error": answer["error"]}) and error in answer["error"]

    with_endpoint(tmp_path, test)


@pytest.mark.parametrize(
    "raw",
    [
        b"POST /dispatch HTTP/1.1\r\nContent-Length: 20\r\n\r\n{",  # a short body
        b"GET /fleet HTTP/1.1\r\nHost: vpp",  # unterminated headers
        b"GET /fle",  # not even a request line
    ],
)
def test_a_request_that_stalls_is_answered_408_and_closed(tmp_path: Path, raw: bytes) -> None:
    async def test(vpp: Vpp, send: Send) -> None:
        started = time.monotonic()
        status, answer = await send(raw)
        assert (status, answer) == (408, {"error": "no complete request within 0.3 s"})
        assert time.monotonic() - started < 3

    with_endpoint(tmp_path, test, read_timeout=0.3, eof=False)


def test_a_request_the_state_directory_cannot_take_is_500_and_not_applied(tmp_path: Path) -> None:
    async def test(vpp: Vpp, send: Send) -> None:
        (tmp_path / "state" / "request.tmp").mkdir()
        status, answer = await send(request("POST", "/dispatch", b'{"power_kw": 200}'))
        assert status == 500 and "cannot save the grid request" in answer["error"]
        assert "Is a directory" in answer["error"]
        assert vpp.fleet.request is None
        status, body = await send(request("GET", "/fleet"))
        assert status == 200 and body["request"] is None

    with_endpoint(tmp_path, test)


def _json_values() -> st.SearchStrategy[Any]:
    scalars = (
        st.none() | st.booleans() | st.integers() | st.integers(10**300, 10**400) | st.floats()
        | st.text(max_size=6)
    )  # fmt: skip
    return st.recursive(scalars, lambda inner: st.lists(inner, max_size=3), max_leaves=4)


BODIES = (
    st.binary(max_size=64)
    | st.dictionaries(st.sampled_from(["power_kw", "duration_s", "x"]), _json_values(), max_size=3).map(
        lambda d: json.dumps(d).encode()
    )
    | _json_values().map(lambda v: json.dumps(v).encode())
)


@settings(max_examples=500, deadline=None)
@given(BODIES)
def test_parse_dispatch_raises_only_its_http_error(body: bytes) -> None:
    try:
        power, duration = parse_dispatch(body)
    except _HttpError as exc:
        assert exc.status == 400 and "\n" not in str(exc)
        return
    assert math.isfinite(power) and math.isfinite(duration) and duration > 0
    data = json.loads(body)
    assert power == -float(data["power_kw"]) * 1000.0


HEAD_LINES = st.lists(
    st.sampled_from([b"GET /fleet HTTP/1.1", b"POST /dispatch HTTP/1.1", b"DELETE /dispatch HTTP/1.1",
                     b"Content-Length: 16", b"Content-Length: 99999", b"content-length:-1", b"Host: x", b""])
    | st.binary(max_size=40),
    max_size=5,
)  # fmt: skip


@pytest.fixture(scope="module")
def shared_vpp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Vpp]:
    vpp = Vpp(VppConfig(state_dir=tmp_path_factory.mktemp("fuzz-state")))
    yield vpp
    vpp.log.close()


@settings(max_examples=300, deadline=None)
@given(lines=HEAD_LINES, body=st.binary(max_size=40))
def test_any_request_bytes_get_an_answer(shared_vpp: Vpp, lines: list[bytes], body: bytes) -> None:
    """The router raises only what the connection handler turns into an answer (its HTTP error),
    also for a truncated request or a line over the stream limit."""

    async def route(raw: bytes) -> None:
        reader = asyncio.StreamReader(limit=256)
        reader.feed_data(raw)
        reader.feed_eof()
        with contextlib.suppress(_HttpError):
            status, answer = await _route(shared_vpp, reader)
            assert status == 200 and json.dumps(answer)

    asyncio.run(route(b"\r\n".join(lines) + b"\r\n\r\n" + body))


def test_an_answer_never_carries_infinity_or_nan(tmp_path: Path) -> None:
    async def test(vpp: Vpp, send: Send) -> None:
        v = Vehicle("cs-1", 1, "tx-1")
        v.power = math.inf  # what no reading can set any more: the answer still stays strict JSON
        vpp.fleet.arrive(v)
        status, body = await send(request("GET", "/fleet"))
        assert status == 500 and "not finite" in body["error"]

    with_endpoint(tmp_path, test)
