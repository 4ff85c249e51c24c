"""``v2gtool ocpp-bridge``: the station's SECC sessions on an OCPP 2.0.1 / 2.1 central system.

``--sim`` runs simulated stations, each a whole ``session run --sim`` engine (EVCC and SECC over
TCP on loopback, the ``sim`` plant behind the interlock) one session after another, each with its
own bridge to the CSMS: a charging park for trying a CSMS or a VPP. The bridge maps every session
to BootNotification, StatusNotification, TransactionEvent (meter values for imported and exported
energy) and NotifyEVChargingNeeds, and applies SetChargingProfile to the running session's
Dynamic-mode loop (see :mod:`v2gtool.ocpp.station`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import ssl
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from v2gtool.cli.context import AppContext, app_context
from v2gtool.cli.output import emit_json, json_option, use_json
from v2gtool.errors import ConfigError
from v2gtool.iso20.events import SessionEnded
from v2gtool.ocpp import rpc
from v2gtool.ocpp.outbox import Outbox
from v2gtool.ocpp.payloads import OCPP21, OCPP201
from v2gtool.ocpp.profile import NegativeLimits, ProfileSetpoint
from v2gtool.ocpp.station import (
    BridgeConfig,
    ChargingProfileReceived,
    CsmsConnected,
    CsmsDisconnected,
    StationBridge,
)
from v2gtool.session import scenario as scenarios
from v2gtool.session.events import Event
from v2gtool.session.runner import run_sim

DEFAULT_OUTBOX = Path("/var/lib/v2g/ocpp")
VERSIONS = {"auto": rpc.SUBPROTOCOLS, "2.1": (OCPP21,), "2.0.1": (OCPP201,)}


def client_tls(ca: Path | None, cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    """The TLS context for wss:// (security profile 2; with a client certificate, profile 3)."""
    if ca is None and cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # OCPP 2.0.1 part 2 A00.FR.309: TLS 1.2 or above
    try:
        if ca is not None:
            context.load_verify_locations(cafile=str(ca))
        if cert is not None:
            context.load_cert_chain(str(cert), str(key) if key else None)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"TLS files ({ca or ''} {cert or ''}): {getattr(exc, 'strerror', None) or exc}") from None
    return context


def _printer(app: AppContext, as_json: bool) -> Callable[[Event], None]:
    def show(event: Event) -> None:
        if as_json:
            emit_json(event.to_json())
        elif isinstance(event, CsmsConnected):
            app.err_console.print(f"connected to {event.url} ({event.subprotocol})", highlight=False)
        elif isinstance(event, CsmsDisconnected):
            app.err_console.print(f"CSMS {event.url}: {event.reason}; {event.queued} queued", highlight=False)
        elif isinstance(event, ChargingProfileReceived):
            verdict = f"applied, now {event.power_now} W" if event.accepted else f"rejected: {event.reason}"
            app.console.print(f"{event.station}: charging profile {event.profile_id} {verdict}", highlight=False)
        elif isinstance(event, SessionEnded) and event.role == "SECC":
            app.console.print(f"session ended: {event.reason}", highlight=False)

    return show


@click.command("ocpp-bridge")
@click.option("--csms", "url", required=True, help="CSMS websocket URL up to the station id (ws:// or wss://).")
@click.option(
    "--station-id", default="V2GTOOL", show_default=True, help="Station identity (with --stations N: -001...)."
)
@click.option("--sim", is_flag=True, help="Simulated stations: each a session run --sim engine with its own vehicle.")
@click.option("--stations", type=click.IntRange(1, 1000), default=1, show_default=True, help="How many (--sim).")
@click.option(
    "--sessions",
    type=click.IntRange(min=0),
    default=1,
    show_default=True,
    help="Sessions per station, one after another (0: until SIGTERM/SIGINT).",
)
@click.option(
    "--scenario",
    "scenario_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML scenario of each station's vehicle and charger (see session run).",
)
@click.option(
    "--ocpp-version",
    type=click.Choice(list(VERSIONS)),
    default="auto",
    show_default=True,
    help="Subprotocols offered: auto offers ocpp2.1 then ocpp2.0.1.",
)
@click.option(
    "--negative-limits",
    type=click.Choice([n.value for n in NegativeLimits]),
    default="discharge",
    show_default=True,
    help="OCPP 2.0.1 limit < 0: discharge at that power, or reject the profile.",
)
@click.option(
    "--meter-interval",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds between TransactionEvent meter values (SampledDataTxUpdatedInterval).",
)
@click.option(
    "--outbox-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Durable queue of transaction events, per station [default: /var/lib/v2g/ocpp].",
)
@click.option("--password", envvar="V2GTOOL_OCPP_PASSWORD", help="HTTP Basic password (security profile 1/2).")
@click.option("--ca", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="CSMS root CA (wss://).")
@click.option(
    "--cert",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Client certificate chain (security profile 3).",
)
@click.option("--key", type=click.Path(exists=True, dir_okay=False, path_type=Path), help="Its private key.")
@click.option(
    "--speed",
    type=click.FloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="Simulated seconds per wall second (OCPP timestamps stay wall-clock).",
)
@json_option
@click.pass_context
def ocpp_bridge(
    ctx: click.Context,
    url: str,
    station_id: str,
    sim: bool,
    stations: int,
    sessions: int,
    scenario_path: Path | None,
    ocpp_version: str,
    negative_limits: str,
    meter_interval: float,
    outbox_dir: Path | None,
    password: str | None,
    ca: Path | None,
    cert: Path | None,
    key: Path | None,
    speed: float,
    json_out: bool,
) -> None:
    """Bridge SECC sessions to an OCPP 2.0.1 / 2.1 CSMS: transactions with imported and exported
    energy, the EV's charging needs, and charging profiles applied as the session's grid request.

    \b
    Examples:
      v2gtool ocpp-bridge --sim --csms ws://127.0.0.1:9000/ocpp --station-id CS01 --sessions 0
      v2gtool ocpp-bridge --sim --stations 50 --csms wss://csms.example/ocpp --ca csms-root.pem \\
          --cert station.pem --key station.key --scenario v2g-park.toml
    """
    app = app_context(ctx)
    if not sim:
        raise click.UsageError("give --sim (simulated stations); a SECC on a real link: serve --csms")
    if not url.startswith(("ws://", "wss://")):
        raise click.BadParameter(f"{url!r} is not a ws:// or wss:// URL", param_hint="--csms")
    if (cert is None) != (key is None):
        raise click.UsageError("--cert and --key go together (security profile 3)")
    context = client_tls(ca, cert, key) if url.startswith("wss://") else None
    scenario = scenarios.load(scenario_path)
    directory = outbox_dir or Path(app.config.get("ocpp", "outbox_dir", DEFAULT_OUTBOX))
    show = _printer(app, use_json(ctx, json_out))
    ids = [station_id] if stations == 1 else [f"{station_id}-{i:03d}" for i in range(1, stations + 1)]
    configs = [
        BridgeConfig(
            url=url,
            station_id=sid,
            subprotocols=VERSIONS[ocpp_version],
            password=password,
            ssl=context,
            meter_interval=meter_interval,
        )
        for sid in ids
    ]
    ended = asyncio.run(_run_park(configs, scenario, directory, NegativeLimits(negative_limits), sessions, speed, show))
    failed = [e for e in ended if not e.ok]
    if failed and sessions:
        raise click.exceptions.Exit(1)


async def _run_park(
    configs: list[BridgeConfig],
    scenario: scenarios.SessionScenario,
    directory: Path,
    negative: NegativeLimits,
    sessions: int,
    speed: float,
    show: Callable[[Event], None],
) -> list[SessionEnded]:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    ended: list[SessionEnded] = []
    stations = [
        asyncio.create_task(_station(c, scenario, directory, negative, sessions, speed, show, ended)) for c in configs
    ]
    stopper: asyncio.Future[Any] = asyncio.create_task(stop.wait())
    everyone: asyncio.Future[Any] = asyncio.gather(*stations)
    await asyncio.wait([stopper, everyone], return_when=asyncio.FIRST_COMPLETED)
    for task in [stopper, everyone, *stations]:
        task.cancel()
    await asyncio.gather(stopper, everyone, *stations, return_exceptions=True)
    return ended


async def _station(
    config: BridgeConfig,
    scenario: scenarios.SessionScenario,
    directory: Path,
    negative: NegativeLimits,
    sessions: int,
    speed: float,
    show: Callable[[Event], None],
    ended: list[SessionEnded],
) -> None:
    """One simulated station: its bridge, and its sessions one after another."""
    outbox = Outbox(directory / config.station_id)
    setpoint = ProfileSetpoint(fallback=scenario.grid_request(), negative=negative)
    bridge = StationBridge(config, outbox, setpoint, listener=show)
    setpoint.voltage = lambda: bridge.transaction.meter.voltage if bridge.transaction else 400.0
    link = asyncio.create_task(bridge.run())

    def listen(event: Event) -> None:
        bridge.on_event(event)
        if isinstance(event, SessionEnded) and event.role == "SECC":
            ended.append(event)
            show(event)

    try:
        done = 0
        while sessions == 0 or done < sessions:
            await run_sim(scenario, speed=speed, listener=listen, grid=setpoint)
            done += 1
        await _drain(bridge)
    finally:
        link.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await link
        outbox.close()


async def _drain(bridge: StationBridge, patience: float = 10.0) -> None:
    """Give the CSMS a moment to take the last transaction events (they stay on disk if not)."""
    waited = 0.0
    while len(bridge.outbox) and waited < patience:
        await asyncio.sleep(0.05)
        waited += 0.05
