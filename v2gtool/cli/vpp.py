"""``v2gtool vpp``: many stations' discharge capacity as one virtual power plant.

``serve`` is the aggregating CSMS (:mod:`v2gtool.ocpp.csms`) with its HTTP endpoint
(:mod:`v2gtool.ocpp.control_api`); ``dispatch`` sends it a grid request; ``status`` shows the fleet.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import signal
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from v2gtool.cli.context import AppContext, app_context
from v2gtool.cli.lines import NotJson, json_value
from v2gtool.cli.output import emit_json, json_option, use_json
from v2gtool.cli.params import FiniteFloatRange
from v2gtool.errors import ConfigError, V2GToolError
from v2gtool.exit_codes import ExitCode
from v2gtool.ocpp.control_api import MAX_REQUEST_KW, MAX_REQUEST_S, serve_control
from v2gtool.ocpp.csms import Dispatched, StationConnected, StationLeft, Vpp, VppConfig
from v2gtool.ocpp.rpc_errors import FrameRejected
from v2gtool.ocpp.security import server_context
from v2gtool.session.events import Event

DEFAULT_STATE = Path("/var/lib/v2g/vpp")
DEFAULT_HTTP = "http://127.0.0.1:9001"
# a grid request's bounds, as the HTTP endpoint checks them (control_api.parse_dispatch)
REQUEST_KW = FiniteFloatRange(min=-MAX_REQUEST_KW, max=MAX_REQUEST_KW)
REQUEST_S = FiniteFloatRange(min=1, max=MAX_REQUEST_S)


class VppUnreachable(V2GToolError):
    """No connection to the aggregator's HTTP endpoint (refused, unreachable): exit 1, as
    ``tls-verify`` without a TCP connection to its peer."""


class VppTimeout(VppUnreachable):
    """The aggregator's HTTP endpoint stayed silent past the request's timeout."""

    exit_code = ExitCode.TIMEOUT


@click.group("vpp")
def vpp() -> None:
    """A virtual power plant: aggregate connected vehicles' discharge capacity and dispatch it.

    \b
    Examples:
      v2gtool vpp serve --port 9000 --http-port 9001 --state-dir /var/lib/v2g/vpp
      v2gtool vpp dispatch --power-kw 200 --duration 900      # deliver 200 kW for 15 minutes
      v2gtool vpp status                                      # the fleet, live
      curl -s localhost:9001/fleet | jq '.vehicles[] | {station, soc, power_w}'
    """


def _passwords(path: Path | None) -> dict[str, str] | None:
    """``station-id:password`` lines (security profile 1/2)."""
    if path is None:
        return None
    out: dict[str, str] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        station, sep, password = line.partition(":")
        if not sep or not station:
            raise ConfigError(f"{path}:{number}: expected station-id:password")
        out[station.strip()] = password.strip()
    return out


def _printer(app: AppContext, as_json: bool) -> Callable[[Event], None]:
    def show(event: Event) -> None:
        if as_json:
            emit_json(event.to_json())
        elif isinstance(event, StationConnected):
            # station ids come from the stations' URLs: text, not markup
            app.console.print(escape(f"+ {event.station} ({event.subprotocol})"), highlight=False, soft_wrap=True)
        elif isinstance(event, StationLeft):
            app.console.print(escape(f"- {event.station}: {event.reason}"), highlight=False, soft_wrap=True)
        elif isinstance(event, FrameRejected):
            app.err_console.print(
                escape(f"! {event.station}: {event.code} ({event.reason}) to message {event.message_id!r}"),
                highlight=False,
                soft_wrap=True,
            )
        elif isinstance(event, Dispatched):
            app.console.print(
                f"dispatch: {event.allocated_w / 1000:.1f} kW over {event.vehicles} vehicles ({event.changed} changed)",
                highlight=False,
                soft_wrap=True,
            )

    return show


@vpp.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address for the stations' websockets.")
@click.option("--port", type=click.IntRange(0, 65535), default=9000, show_default=True, help="OCPP port (0: any).")
@click.option("--http-host", default="127.0.0.1", show_default=True, help="Address of the HTTP endpoint.")
@click.option("--http-port", type=click.IntRange(0, 65535), default=9001, show_default=True, help="HTTP port.")
@click.option(
    "--state-dir", type=click.Path(file_okay=False, path_type=Path), help="Transaction log [default: /var/lib/v2g/vpp]."
)
@click.option("--period", type=FiniteFloatRange(min=0.05), default=1.0, show_default=True, help="Control period, s.")
@click.option(
    "--cert", type=click.Path(dir_okay=False, path_type=Path), help="Server certificate (wss://)."
)
@click.option("--key", type=click.Path(dir_okay=False, path_type=Path), help="Its private key.")
@click.option(
    "--client-ca",
    type=click.Path(dir_okay=False, path_type=Path),
    help="CA of the stations' client certificates (security profile 3).",
)
@click.option(
    "--passwords",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="station-id:password lines (HTTP Basic, security profile 1/2).",
)
@click.option("--dispatch-kw", type=REQUEST_KW, help="Deliver this many kW into the grid from the start.")
@click.option("--dispatch-duration", type=REQUEST_S, default=900, show_default=True, help="Seconds.")
@json_option
@click.pass_context
def serve_cmd(
    ctx: click.Context,
    host: str,
    port: int,
    http_host: str,
    http_port: int,
    state_dir: Path | None,
    period: float,
    cert: Path | None,
    key: Path | None,
    client_ca: Path | None,
    passwords: Path | None,
    dispatch_kw: float | None,
    dispatch_duration: float,
    json_out: bool,
) -> None:
    """Accept stations over OCPP 2.0.1 / 2.1, keep every vehicle's discharge capacity, and dispatch
    grid requests across them (until SIGTERM/SIGINT)."""
    app = app_context(ctx)
    as_json = use_json(ctx, json_out)
    if cert is None and (key is not None or client_ca is not None):
        raise click.UsageError("--key and --client-ca need --cert (wss://)")
    config = VppConfig(
        state_dir=state_dir or Path(app.config.get("vpp", "state_dir", DEFAULT_STATE)),
        period=period,
        ssl=server_context(cert, key, client_ca) if cert is not None else None,
        passwords=_passwords(passwords),
        debug=app.debug,
    )
    asyncio.run(
        _serve(
            config,
            host,
            port,
            http_host,
            http_port,
            dispatch_kw,
            dispatch_duration,
            _printer(app, as_json),
            app,
            as_json,
        )
    )


async def _serve(
    config: VppConfig,
    host: str,
    port: int,
    http_host: str,
    http_port: int,
    dispatch_kw: float | None,
    dispatch_duration: float,
    show: Callable[[Event], None],
    app: AppContext,
    as_json: bool,
) -> None:
    plant = Vpp(config, listener=show)
    stations = await plant.serve(host, port)
    control = await serve_control(plant, http_host, http_port)
    ws_port = next(iter(stations.sockets)).getsockname()[1]
    api_port = control.sockets[0].getsockname()[1]
    scheme = "wss" if config.ssl else "ws"
    ready = {
        "event": "VppListening",
        "ocpp": f"{scheme}://{host}:{ws_port}/ocpp",
        "http": f"http://{http_host}:{api_port}",
    }
    if as_json:
        emit_json(ready)
    else:
        app.console.print(f"OCPP {ready['ocpp']}/<station-id>   HTTP {ready['http']}", highlight=False, soft_wrap=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    controller = asyncio.create_task(plant.control_loop())
    stopped = asyncio.create_task(stop.wait())
    try:
        if dispatch_kw is not None:
            plant.dispatch(-dispatch_kw * 1000.0, dispatch_duration)
        # until the signal, or until the control loop ends, which it does only by failing
        await asyncio.wait([controller, stopped], return_when=asyncio.FIRST_COMPLETED)
    finally:
        controller.cancel()
        stopped.cancel()
        stations.close()
        control.close()
        await asyncio.gather(controller, stopped, return_exceptions=True)
        plant.log.close()
    if not controller.cancelled() and (failure := controller.exception()) is not None:
        raise failure  # dispatching stopped: not a run that ends as if stopped by SIGTERM


def _one_line(text: str, limit: int = 120) -> str:
    """*text* (an answer's body, an exception) as one short printable line."""
    line = "".join(c if c.isprintable() else " " for c in " ".join(text.split()))
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _http_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    """``--http``: an http:// or https:// URL with a host (the endpoint's paths are added to it)."""
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise click.BadParameter(f"{_one_line(value, 60)!r} is not an http:// or https:// URL with a host")
    return value.rstrip("/")


def _request(url: str, method: str = "GET", body: dict[str, Any] | None = None) -> Any:
    """One request to the VPP's endpoint: its JSON answer, or one line naming the endpoint and
    what went wrong (no connection: :class:`VppUnreachable`, no answer in time: :class:`VppTimeout`)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        raise V2GToolError(f"{method} {url}: HTTP {exc.code} {_error_detail(exc)}") from None
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        unreachable = VppTimeout if isinstance(reason, TimeoutError) else VppUnreachable
        raise unreachable(f"{method} {url}: {_one_line(str(reason))}") from None
    try:  # strict RFC 8259: an Infinity or NaN would make our own --json output invalid
        return json_value(raw)
    except NotJson:
        raise V2GToolError(
            f"{method} {url}: the answer is not JSON: {_one_line(raw.decode(errors='replace'))}"
        ) from None


def _error_detail(exc: urllib.error.HTTPError) -> str:
    """An error answer's ``{"error": ...}`` (what ``vpp serve`` says), else its reason phrase: an
    HTML or text page of another server is not shown."""
    try:
        answer = json_value(exc.read())
    except (NotJson, OSError, http.client.HTTPException):
        answer = None
    if isinstance(answer, dict) and isinstance(answer.get("error"), str):
        return _one_line(answer["error"])
    return _one_line(str(exc.reason))


def _answer(url: str, method: str, read: Callable[[Any], Any], answer: Any) -> Any:
    """*read* applied to what the endpoint answered; one line naming the endpoint when the answer
    is not what a ``vpp serve`` says (another service behind the URL)."""
    try:
        return read(answer)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        what = f"no {exc.args[0]!r}" if isinstance(exc, KeyError) else _one_line(str(exc))
        raise V2GToolError(f"{method} {url}: not an answer of vpp serve ({what})") from None


http_option = click.option(
    "--http", "http_url", default=DEFAULT_HTTP, show_default=True, callback=_http_url, help="The VPP's HTTP endpoint."
)


@vpp.command("dispatch")
@http_option
@click.option("--power-kw", type=REQUEST_KW, help="kW into the grid (negative: the fleet absorbs); not with --cancel.")
@click.option("--duration", type=REQUEST_S, default=900, show_default=True, help="Seconds.")
@click.option("--cancel", is_flag=True, help="Cancel the running request instead.")
@json_option
@click.pass_context
def dispatch_cmd(
    ctx: click.Context, http_url: str, power_kw: float | None, duration: float, cancel: bool, json_out: bool
) -> None:
    """Send a grid request (--power-kw) to a running ``vpp serve``, or cancel it (--cancel)."""
    app = app_context(ctx)
    if cancel == (power_kw is not None):
        raise click.UsageError("give either --power-kw or --cancel")
    url = f"{http_url}/dispatch"
    if power_kw is None:
        answer = _request(url, "DELETE")
        _answer(url, "DELETE", lambda a: a["cancelled"], answer)
        message = "grid request cancelled: every vehicle back to its own plan"
    else:
        answer = _request(url, "POST", {"power_kw": power_kw, "duration_s": duration})
        message = _answer(url, "POST", _dispatched, answer)
    if use_json(ctx, json_out):
        emit_json(answer)
    else:
        app.console.print(message, highlight=False, soft_wrap=True)


def _dispatched(answer: Any) -> str:
    way = "into the grid" if answer["power_w"] < 0 else "from the grid"
    return f"dispatching {abs(answer['power_w']) / 1000:.1f} kW {way} for {answer['duration_s']:.0f} s"


def fleet_table(snapshot: dict[str, Any]) -> Table:
    """The fleet as a table: one row per vehicle, the totals in the title."""
    request = snapshot.get("request")
    asked = f"{-request['power_w'] / 1000:.1f} kW asked" if request else "no request"
    met = " (met)" if snapshot.get("met_at") else ""
    table = Table(
        title=f"{snapshot['stations']} stations, {len(snapshot['vehicles'])} vehicles: "
        f"{-snapshot['power_w'] / 1000:.1f} kW delivered, {asked}{met}, "
        f"capacity {snapshot['discharge_capacity_w'] / 1000:.1f} kW"
    )
    names = [f"{v['station']}/{v['evse_id']}" for v in snapshot["vehicles"]]
    for name in ("station", "SoC %", "floor %", "power kW", "asked kW", "capacity kW", "left kWh", "departs in"):
        if name == "station":  # whole, however narrow the output (a pipe is 80 columns): rows stay apart
            table.add_column(name, no_wrap=True, min_width=max(map(len, names), default=7))
        else:
            table.add_column(name, justify="right")
    now = snapshot["time"]
    for station, v in zip(names, snapshot["vehicles"], strict=True):
        departs = "" if v["departure"] is None else f"{(v['departure'] - now) / 60:.0f} min"
        # A station that refused its share, or lost its connection, keeps running its last profile
        # (K01): held, not asked.
        asked_kw = f"{v['allocation_w'] / 1000:.2f}" + ("*" if _held(v) else "")
        table.add_row(
            escape(station),
            "" if v["soc"] is None else f"{v['soc']:.1f}",
            "" if v["min_soc"] is None else str(v["min_soc"]),
            f"{v['power_w'] / 1000:.2f}",
            asked_kw,
            f"{v['capacity_w'] / 1000:.2f}",
            f"{v['remaining_wh'] / 1000:.2f}",
            departs,
        )
    if any(map(_held, snapshot["vehicles"])):
        table.caption = (
            "* held: its station refused its share or lost its connection; it runs its last accepted profile"
        )
    return table


def _held(vehicle: dict[str, Any]) -> bool:
    """Whether a /fleet vehicle is counted at what it runs rather than offered a share."""
    return bool(vehicle.get("refused") or vehicle.get("link_lost"))


def _fleet(http_url: str) -> tuple[dict[str, Any], Table]:
    """GET /fleet: the snapshot and its table (checked to be a fleet snapshot)."""
    url = f"{http_url}/fleet"
    snapshot = _request(url)
    return snapshot, _answer(url, "GET", fleet_table, snapshot)


@vpp.command("status")
@http_option
@click.option("--once", is_flag=True, help="One snapshot, then exit.")
@click.option("--interval", type=FiniteFloatRange(min=0.1), default=1.0, show_default=True, help="Refresh, s.")
@json_option
@click.pass_context
def status_cmd(ctx: click.Context, http_url: str, once: bool, interval: float, json_out: bool) -> None:
    """The fleet as a live table (or JSON lines, one snapshot per refresh; not on a terminal, one
    table per refresh, as ``top -b`` does)."""
    app = app_context(ctx)
    as_json = use_json(ctx, json_out)
    if once or as_json or not app.console.is_terminal:  # a Live draws nothing into a pipe or file
        while True:
            snapshot, table = _fleet(http_url)
            if as_json:
                emit_json(snapshot)
            else:
                app.console.print(table)
            if once:
                return
            time.sleep(interval)
    with Live(_fleet(http_url)[1], console=app.console, refresh_per_second=4) as live:
        try:
            while True:
                time.sleep(interval)
                live.update(_fleet(http_url)[1])
        except KeyboardInterrupt:
            return
