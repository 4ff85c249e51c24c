"""``v2gtool sdp-discovery``: find the SECC on a PLC interface (EV role) or answer as one (EVSE role)."""

from __future__ import annotations

import asyncio
import contextlib

import click
from rich.markup import escape

from v2gtool.cli.configured import secc_tcp_port
from v2gtool.cli.context import AppContext, app_context
from v2gtool.cli.output import emit_json, json_option, use_json
from v2gtool.cli.params import FiniteFloatRange
from v2gtool.cli.progress import Spinner, spinner
from v2gtool.net.sdp_transport import discover, serve_sdp
from v2gtool.sdp import (
    DEFAULT_TCP_PORT,
    SDP_MAX_REQUESTS,
    SDP_REQUEST_TIMEOUT,
    SDP_SERVER_PORT,
    TCP_PORT_RANGE,
    SdpFailed,
    SdpMalformedDatagram,
    SdpRequestAnswered,
    SdpRequestSent,
    SdpResponseReceived,
    SdpResult,
    Security,
)
from v2gtool.session.events import Event

SECURITY_CHOICES = {"tls": Security.TLS, "none": Security.NO_TLS}


class _Renderer:
    """Turns SDP events into rich lines for people or JSON lines for pipes."""

    def __init__(self, app: AppContext, as_json: bool) -> None:
        self._app = app
        self._json = as_json
        self._t0: float | None = None

    def __call__(self, event: Event) -> None:
        if self._json:
            emit_json(event.to_json())
            return
        if self._t0 is None:
            self._t0 = event.t
        at = f"+{event.t - self._t0:7.3f} s"
        say = self._say
        if isinstance(event, SdpRequestSent):
            say(f"{at}  request {event.attempt}: security {event.request.security.name}")
        elif isinstance(event, SdpResponseReceived):
            r = event.response
            say(
                escape(
                    f"{at}  response from {event.source} after {event.elapsed * 1000:.1f} ms: "
                    f"[{r.address}]:{r.port} {r.security.name} {r.transport.name}"
                )
            )
        elif isinstance(event, SdpMalformedDatagram):
            say(
                f"{at}  [yellow]"
                + escape(f"dropped malformed datagram #{event.count} from {event.source}: {event.reason}")
            )
        elif isinstance(event, SdpRequestAnswered):
            note = "" if event.request.security == event.response.security else " (offered instead)"
            say(
                f"{at}  request from {event.source} for {event.request.security.name}: "
                f"answered {event.response.security.name}{note}"
            )
        elif isinstance(event, SdpFailed):
            say(f"{at}  [red]no response after {event.attempts} requests")

    def serving(self, iface: str, port: int, supported: frozenset[Security]) -> None:
        """The SECC answers on *iface* now (said once its socket is open, not before)."""
        if not self._json:
            names = ", ".join(s.name for s in supported)
            self._say(f"answering SDP on {iface}, announcing TCP port {port} ({names})")

    def _say(self, text: str) -> None:
        """One event, one line, whatever the terminal width."""
        self._app.console.print(text, soft_wrap=True, highlight=False)


def _render_result(app: AppContext, result: SdpResult) -> None:
    r = result.response
    found = escape(
        f"[{r.address}%{result.interface}]:{r.port} security {r.security.name}, "
        f"transport {r.transport.name}, after {result.attempts} request(s) in {result.elapsed * 1000:.1f} ms"
    )
    app.console.print(f"[bold green]SECC found[/]: {found}", soft_wrap=True, highlight=False)
    if result.security_differs:
        asked = result.requested.security.name
        app.console.print(f"[yellow]the SECC offered {r.security.name} although {asked} was asked for")


async def _serve(
    iface: str, port: int, supported: frozenset[Security], answers: int, render: _Renderer, waiting: Spinner
) -> None:
    answered = asyncio.Event()
    count = 0
    waiting_for = f"waiting for SDP requests on {iface} (UDP {SDP_SERVER_PORT})"

    def on_event(event: Event) -> None:
        nonlocal count
        render(event)
        if isinstance(event, SdpRequestAnswered):
            count += 1
            if answers and count >= answers:
                answered.set()
            waiting.update(f"{waiting_for}; {count} answered")

    responder = await serve_sdp(iface, port, supported, on_event=on_event)
    render.serving(iface, port, supported)
    waiting.update(waiting_for)
    try:
        await answered.wait()
    finally:
        responder.close()


@click.command("sdp-discovery")
@click.option("--iface", help="PLC network interface (IPv6 link-local scope) [default: config [sdp] iface].")
@click.option("--role", type=click.Choice(["ev", "evse"]), default="ev", show_default=True)
@click.option(
    "--security",
    type=click.Choice(["tls", "none", "both"]),
    default="tls",
    show_default=True,
    help="EV: the mode requested. EVSE: the mode(s) supported; others are answered with a supported one.",
)
@click.option(
    "--tries", type=click.IntRange(1), default=SDP_MAX_REQUESTS, show_default=True, help="EV: requests."
)
@click.option(
    "--timeout",
    type=FiniteFloatRange(min=0.001),
    default=SDP_REQUEST_TIMEOUT,
    show_default=True,
    help="EV: seconds to wait per request.",
)
@click.option(
    "--port",
    type=click.IntRange(TCP_PORT_RANGE.start, TCP_PORT_RANGE.stop - 1),
    help=f"EVSE: TCP port announced for the V2G session [default: [sdp] tcp_port, else {DEFAULT_TCP_PORT}].",
)
@click.option(
    "--answers",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="EVSE: stop after this many answered requests (0: run until interrupted).",
)
@json_option
@click.pass_context
def sdp_discovery(
    ctx: click.Context,
    iface: str | None,
    role: str,
    security: str,
    tries: int,
    timeout: float,
    port: int | None,
    answers: int,
    json_out: bool,
) -> None:
    """Run the SECC Discovery Protocol (UDP [ff02::1]:15118) on IFACE.

    \b
    EV role: multicast SDP requests until an SECC answers; print where it listens.
    EVSE role: answer SDP requests by unicast with this host's link-local address and --port.
    With --json every step is a JSON line and the last line is the record that
    `v2gtool tls-verify --from-sdp -` reads.

    \b
    Exit codes:
      0  EV: an SECC answered; EVSE: --answers requests answered, or stopped by Ctrl-C
      2  bad option or configuration (e.g. no interface given)
      3  EV: no SDP response after --tries requests of --timeout each (timeout)
      4  the interface does not exist, has no usable IPv6 link-local address, or refuses
         the SDP socket (environment)
      130  EV: interrupted (SIGINT)
    """
    app = app_context(ctx)
    iface = iface or app.config.get("sdp", "iface")
    if not iface:
        raise click.UsageError("no interface: give --iface or set [sdp] iface in the config")
    as_json = use_json(ctx, json_out)
    render = _Renderer(app, as_json)
    if role == "ev":
        if security == "both":
            raise click.BadParameter("the EV requests one mode: tls or none", param_hint="--security")
        with spinner(ctx, f"discovering the SECC on {iface}: SDP requests to [ff02::1]:{SDP_SERVER_PORT}", as_json):
            result = asyncio.run(
                discover(
                    iface,
                    SECURITY_CHOICES[security],
                    request_timeout=timeout,
                    max_requests=tries,
                    on_event=render,
                )
            )
        if as_json:
            emit_json(result.to_json())
        else:
            _render_result(app, result)
        return
    modes = SECURITY_CHOICES.values() if security == "both" else (SECURITY_CHOICES[security],)
    supported = frozenset(modes)
    starting = f"opening UDP {SDP_SERVER_PORT} on {iface}"
    with contextlib.suppress(KeyboardInterrupt), spinner(ctx, starting, as_json) as waiting:
        asyncio.run(_serve(iface, secc_tcp_port(app, port), supported, answers, render, waiting))
