"""``v2gtool ocpp-bridge``: the station's SECC sessions on an OCPP 2.0.1 / 2.1 central system.

``--iface IF`` is this charger: the SECC of ``v2g-message-handler serve`` (SDP, TCP, TLS 1.3 on
the PLC interface) with every session bridged to the CSMS.
``--sim`` runs simulated stations, each a whole ``session run --sim`` engine (EVCC and SECC over
TCP on loopback, the ``sim`` plant behind the interlock) one session after another, each with its
own bridge to the CSMS: a charging park for trying a CSMS or a VPP. The bridge maps every session
to BootNotification, StatusNotification, TransactionEvent (meter values for imported and exported
energy) and NotifyEVChargingNeeds, and applies SetChargingProfile to the running session's
Dynamic-mode loop (see :mod:`v2gtool.ocpp.station`). A simulated station's first session waits for
the outcome of its first connection attempt (at most :data:`BOOT_WAIT_S` s), so that its
TransactionEvents are flagged ``offline`` only when the station indeed had no connection to send
them on. InstallCertificate writes into the SECC's trust directory (``--iface``: ``--trust-dir``,
else ``[pki] trust_dir``, else the default); a simulated station has one only when ``--trust-dir``
names it.

A station restarted after a kill (same ``--outbox-dir`` and ``--station-id``) first ends the
transaction the killed run left open, behind that transaction's queued events and before any new
one (TransactionEvent Ended, stoppedReason PowerLoss).

SIGTERM or SIGINT stops the station as a charger stops: no new session starts, the running one is
asked to end (EVSENotification Terminate; its TransactionEvent Ended says stoppedReason Local), and
after at most :data:`STOP_GRACE_S` s the bridge ends any transaction still open itself. Every
Ended is on disk in the outbox before the process exits; a connected CSMS gets
:data:`DELIVER_S` s to take it (the rest is replayed at the next start, E04). The exit status is
130 after SIGINT (interrupted), and after SIGTERM that of a finished run, as ``serve`` and
``vpp serve`` do for the daemon's stop: 0, or 1 when a counted session failed.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import signal
import ssl
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from v2gtool.cli.configured import secc_tcp_port, tls_dirs
from v2gtool.cli.context import AppContext, app_context
from v2gtool.cli.live import Plant, configured_plant, serve_sessions, tls_options
from v2gtool.cli.output import emit_json, json_option, use_json, wire_text
from v2gtool.cli.params import FiniteFloatRange
from v2gtool.iso20.events import PowerFlow, SessionEnded
from v2gtool.ocpp import rpc
from v2gtool.ocpp.outbox import Outbox, OutboxError
from v2gtool.ocpp.payloads import OCPP21, OCPP201, check_station_identity
from v2gtool.ocpp.profile import NegativeLimits, ProfileSetpoint
from v2gtool.ocpp.rpc_errors import FrameRejected
from v2gtool.ocpp.security import client_context
from v2gtool.ocpp.station import (
    BridgeConfig,
    ChargingProfileReceived,
    CsmsConnected,
    CsmsDisconnected,
    CsmsRefused,
    StationBridge,
    TransactionEventDiscarded,
    VariableSet,
)
from v2gtool.pki.profiles import Protocol
from v2gtool.pki.tls import server_context as v2g_server_context
from v2gtool.sdp import DEFAULT_TCP_PORT, TCP_PORT_RANGE
from v2gtool.session import scenario as scenarios
from v2gtool.session.events import Event
from v2gtool.session.runner import run_sim

DEFAULT_OUTBOX = Path("/var/lib/v2g/ocpp")
STOP_GRACE_S = 10.0  # a stopped station's running session has this long to end on its own
DELIVER_S = 5.0  # and the last transaction events this long to reach a connected CSMS
BOOT_WAIT_S = 5.0  # a simulated station's first session waits this long at most for the CSMS's first answer
VERSIONS = {"auto": rpc.SUBPROTOCOLS, "2.1": (OCPP21,), "2.0.1": (OCPP201,)}


@dataclass(frozen=True, kw_only=True)
class StationSession(Event):
    """One simulated station's session, as the vehicle saw it (SoC in %, energy signed Wh)."""

    station: str
    ok: bool
    reason: str
    energy_wh: float
    soc_start: float
    soc_end: float
    soc_min: float
    min_soc: float


def _printer(app: AppContext, as_json: bool) -> Callable[[Event], None]:
    """Each event as one line (never wrapped, a pipe reads it whole; CSMS text shown as text, its
    control characters escaped): the CSMS's answers on stderr, the sessions and what the CSMS set
    on stdout."""

    def show(event: Event) -> None:
        if as_json:
            emit_json(event.to_json())
            return
        line = _line(event)
        if line is not None:
            text, to_stderr = line
            console = app.err_console if to_stderr else app.console
            console.print(wire_text(text), highlight=False, soft_wrap=True)

    return show


def _line(event: Event) -> tuple[str, bool] | None:
    """*event* as a person reads it, and whether it goes to stderr; None: not shown."""
    if isinstance(event, CsmsConnected):
        return f"connected to {event.url} ({event.subprotocol})", True
    if isinstance(event, CsmsDisconnected):
        return f"CSMS {event.url}: {event.reason}; {event.queued} queued", True
    if isinstance(event, CsmsRefused):
        return f"CSMS {event.url}: {event.action} refused: {event.reason}", True
    if isinstance(event, TransactionEventDiscarded):
        return (
            f"CSMS {event.url}: TransactionEvent {event.event_type} (seqNo {event.seq_no}) of {event.transaction_id} "
            f"given up after {event.attempts} refusals: {event.reason}",
            True,
        )
    if isinstance(event, FrameRejected):
        return f"{event.station}: CSMS frame {event.message_id} refused: {event.code} {event.reason}", True
    if isinstance(event, VariableSet):
        return f"{event.station}: CSMS set {event.component}.{event.variable} = {event.value}", False
    if isinstance(event, ChargingProfileReceived):
        capped = f" ({event.reason})" if event.reason else ""
        verdict = f"applied{capped}, now {event.power_now} W" if event.accepted else f"rejected: {event.reason}"
        return f"{event.station}: charging profile {event.profile_id} {verdict}", False
    if isinstance(event, StationSession):
        return (
            f"{event.station}: {event.reason}; {event.energy_wh:+.1f} Wh, "
            f"SoC {event.soc_start:.2f} -> {event.soc_end:.2f} % (lowest {event.soc_min:.2f} %)",
            False,
        )
    return None


@click.command("ocpp-bridge")
@click.option("--csms", "url", required=True, help="CSMS websocket URL up to the station id (ws:// or wss://).")
@click.option(
    "--station-id", default="V2GTOOL", show_default=True, help="Station identity (with --stations N: -001...)."
)
@click.option("--sim", is_flag=True, help="Simulated stations: each a session run --sim engine with its own vehicle.")
@click.option("--iface", help="Be the SECC on this interface (SDP, TCP, TLS: like serve), bridged to the CSMS.")
@click.option(
    "--port",
    type=click.IntRange(TCP_PORT_RANGE.start, TCP_PORT_RANGE.stop - 1),
    help=f"With --iface: TCP port [default: [sdp] tcp_port, else {DEFAULT_TCP_PORT}].",
)
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
    type=FiniteFloatRange(min=0.1),
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
@click.option("--ca", type=click.Path(dir_okay=False, path_type=Path), help="CSMS root CA (wss://).")
@click.option(
    "--cert",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Client certificate chain (security profile 3).",
)
@click.option("--key", type=click.Path(dir_okay=False, path_type=Path), help="Its private key.")
@click.option(
    "--stagger",
    type=FiniteFloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Seconds between the stations' first sessions (cars do not all plug in at once).",
)
@click.option(
    "--tick-ms",
    type=FiniteFloatRange(min=0.1, max=10),
    default=1.0,
    show_default=True,
    help="The simulated stations' control-loop period (a large park may run coarser).",
)
@click.option(
    "--speed",
    type=FiniteFloatRange(min=0.01),
    default=1.0,
    show_default=True,
    help="Simulated seconds per wall second (OCPP timestamps stay wall-clock).",
)
@tls_options
@json_option
@click.pass_context
def ocpp_bridge(
    ctx: click.Context,
    url: str,
    station_id: str,
    sim: bool,
    iface: str | None,
    port: int | None,
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
    stagger: float,
    tick_ms: float,
    speed: float,
    no_tls: bool,
    certs_dir: Path | None,
    trust_dir: Path | None,
    keylog: Path | None,
    json_out: bool,
) -> None:
    """Bridge SECC sessions to an OCPP 2.0.1 / 2.1 CSMS: transactions with imported and exported
    energy, the EV's charging needs, and charging profiles applied as the session's grid request.

    \b
    Examples:
      v2gtool ocpp-bridge --iface eth1 --csms wss://csms.example/ocpp --station-id CS01 --sessions 0 \\
          --ca csms-root.pem --cert station.pem --key station.key
      v2gtool ocpp-bridge --sim --csms ws://127.0.0.1:9000/ocpp --station-id CS01 --sessions 0
      v2gtool ocpp-bridge --sim --stations 50 --csms wss://csms.example/ocpp --ca csms-root.pem \\
          --cert station.pem --key station.key --scenario v2g-park.toml
    """
    app = app_context(ctx)
    if sim == (iface is not None):
        raise click.UsageError("give --sim (simulated stations) or --iface IF (this SECC on a real link)")
    if iface is not None and stations != 1:
        raise click.UsageError("--stations is for --sim; a SECC on a link is one station")
    if not url.startswith(("ws://", "wss://")):
        raise click.BadParameter(f"{url!r} is not a ws:// or wss:// URL", param_hint="--csms")
    if (cert is None) != (key is None):
        raise click.UsageError("--cert and --key go together (security profile 3)")
    context = client_context(ca, cert, key) if url.startswith("wss://") else None
    scenario = scenarios.load(scenario_path)
    directory = outbox_dir or Path(app.config.get("ocpp", "outbox_dir", DEFAULT_OUTBOX))
    show = _printer(app, use_json(ctx, json_out))
    ids = [station_id] if stations == 1 else [f"{station_id}-{i:03d}" for i in range(1, stations + 1)]
    try:
        ids = [check_station_identity(sid) for sid in ids]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--station-id") from None
    # InstallCertificate's trust directory: this SECC's (--iface: --trust-dir, else [pki] trust_dir,
    # else the default); a simulated station has one only when --trust-dir names it.
    certs, trust = tls_dirs(app, certs_dir, trust_dir)
    station_trust = trust if iface is not None else trust_dir
    configs = [
        BridgeConfig(
            url=url,
            station_id=sid,
            subprotocols=VERSIONS[ocpp_version],
            password=password,
            ssl=context,
            meter_interval=meter_interval,
            services=scenario.services,
            trust_dir=station_trust,
            debug=app.debug,
        )
        for sid in ids
    ]
    park = Park(scenario, directory, NegativeLimits(negative_limits), sessions, speed, stagger, tick_ms / 1000, show)
    if iface is not None:
        v2g_tls = None if no_tls else v2g_server_context(certs, trust, Protocol.ISO20, keylog=keylog)
        plant = configured_plant(app, scenario_path, remote_ev=True)
        results = asyncio.run(_secc_on_link(park, configs[0], iface, secc_tcp_port(app, port), v2g_tls, plant))
    else:
        results = asyncio.run(_run_park(park, configs))
    if park.stop.signal == signal.SIGINT:
        raise click.Abort
    if sessions and not all(results):
        raise click.exceptions.Exit(1)


class Stop:
    """SIGTERM/SIGINT: the first one that came (:attr:`signal`), and the stations it stops."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self.event = asyncio.Event()
        self._bridges: list[StationBridge] = []

    def install(self) -> None:
        """Catch SIGTERM and SIGINT in the running loop from now on."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self.stop, signum)

    def watch(self, bridge: StationBridge) -> None:
        """*bridge* stops its sessions on the signal (at once when it already came)."""
        self._bridges.append(bridge)
        if self.signal is not None:
            bridge.stop_locally()

    def stop(self, signum: int) -> None:
        """The signal handler: the first signal stops every watched bridge."""
        if self.signal is None:
            self.signal = signum
            self.event.set()
            for bridge in self._bridges:
                bridge.stop_locally()

    async def wait(self, work: asyncio.Future[Any], done: Callable[[], bool]) -> None:
        """Until *work* is done; after the signal until *done* too, for at most :data:`STOP_GRACE_S`
        s: then *work* is cancelled. What *work* raised (it could not listen, a station's outbox
        is unusable) is raised here."""
        stopped = asyncio.create_task(self.event.wait())
        await asyncio.wait([work, stopped], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        deadline = time.monotonic() + STOP_GRACE_S
        while not work.done() and not done() and time.monotonic() < deadline:
            await asyncio.wait([work], timeout=0.05)
        work.cancel()
        await asyncio.gather(work, stopped, return_exceptions=True)
        # A cancelled gather() holds a CancelledError as its exception rather than being cancelled.
        failure = None if work.cancelled() else work.exception()
        if failure is not None and not isinstance(failure, asyncio.CancelledError):
            raise failure


@dataclass(frozen=True)
class Park:
    """What every simulated station of one ``ocpp-bridge --sim`` shares."""

    scenario: scenarios.SessionScenario
    outbox_dir: Path
    negative: NegativeLimits
    sessions: int
    speed: float
    stagger: float
    tick_s: float
    show: Callable[[Event], None]
    stop: Stop = field(default_factory=Stop)


async def _run_park(park: Park, configs: list[BridgeConfig]) -> list[bool]:
    """Run every station until their sessions are done, or they are stopped (SIGTERM/SIGINT, see
    the module); each session's ok."""
    park.stop.install()
    results: list[bool] = []
    stations = [asyncio.create_task(_station(park, c, i * park.stagger, results)) for i, c in enumerate(configs)]
    everyone: asyncio.Future[Any] = asyncio.gather(*stations)
    try:
        await park.stop.wait(everyone, lambda: False)
    finally:  # a station that failed ends the park: the others end their transactions and stop
        for station in stations:
            station.cancel()
        await asyncio.gather(*stations, return_exceptions=True)
    return results


@contextlib.asynccontextmanager
async def _bridged(park: Park, config: BridgeConfig) -> AsyncIterator[StationBridge]:
    """A station's bridge, connected (and reconnecting) while the block runs; at its start, the
    transaction a killed run of it left open is ended (:meth:`StationBridge.end_interrupted_transaction`);
    at its end, however it ends, an open transaction is ended (:meth:`StationBridge.end_open_transaction`)
    and the outbox drained (:func:`_drain`) before it closes."""
    outbox = Outbox(park.outbox_dir / config.station_id)
    setpoint = ProfileSetpoint(
        fallback=park.scenario.grid_request(),
        negative=park.negative,
        max_charge=park.scenario.charger.max_charge_power,
        max_discharge=park.scenario.charger.max_discharge_power,
    )
    bridge = StationBridge(config, outbox, setpoint, listener=park.show)
    setpoint.voltage = lambda: bridge.transaction.meter.voltage if bridge.transaction else 400.0
    try:
        bridge.end_interrupted_transaction()
    except OutboxError:
        outbox.close()
        raise
    park.stop.watch(bridge)
    link = asyncio.create_task(bridge.run())
    try:
        yield bridge
    finally:
        try:
            bridge.end_open_transaction()
            await _drain(bridge)
        finally:
            link.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await link
            outbox.close()


async def _station(park: Park, config: BridgeConfig, delay: float, results: list[bool]) -> None:
    """One simulated station: its bridge, and its sessions one after another from *delay* on."""
    lowest = math.inf  # the vehicle's SoC at its lowest in this session
    async with _bridged(park, config) as bridge:

        def listen(event: Event) -> None:
            nonlocal lowest
            bridge.on_event(event)
            if isinstance(event, PowerFlow) and event.role == "EVCC" and event.soc is not None:
                lowest = min(lowest, event.soc)

        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(park.stop.event.wait(), delay)
        with contextlib.suppress(TimeoutError):  # a reachable CSMS has the transaction online from its Started
            await asyncio.wait_for(bridge.attempted.wait(), BOOT_WAIT_S)
        done = 0
        while (park.sessions == 0 or done < park.sessions) and not bridge.stopping:
            done += 1
            lowest = math.inf
            result = await run_sim(
                park.scenario,
                speed=park.speed,
                listener=listen,
                grid=bridge.setpoint,
                tick_s=park.tick_s,
                stop_request=bridge.stop_request,
                allowed_services=bridge.allowed_services,
            )
            results.append(result.ok)
            park.show(
                StationSession(
                    t=time.time(),
                    station=config.station_id,
                    ok=result.ok,
                    reason=result.reason or result.secc_reason,
                    energy_wh=round(result.energy_wh, 3),
                    soc_start=result.soc_start,
                    soc_end=result.soc_end,
                    soc_min=min(lowest, result.soc_end),
                    min_soc=park.scenario.min_soc,
                )
            )


async def _secc_on_link(
    park: Park, config: BridgeConfig, iface: str, port: int, context: ssl.SSLContext | None, plant: Plant
) -> list[bool]:
    """This SECC on *iface* (SDP, TCP, TLS: ``serve``), every session bridged to the CSMS."""
    results: list[bool] = []
    async with _bridged(park, config) as bridge:

        def listen(event: Event) -> None:
            park.show(event)
            bridge.on_event(event)
            if isinstance(event, SessionEnded) and event.role == "SECC":
                results.append(event.ok)

        park.stop.install()  # a signal ends the running session first (see Stop), then serving
        serving: asyncio.Future[Any] = asyncio.create_task(
            serve_sessions(
                iface,
                port,
                context,
                plant,
                park.speed,
                park.sessions,
                listen,
                grid=bridge.setpoint,
                stop_request=bridge.stop_request,
                allowed_services=bridge.allowed_services,
                signals=False,
            )
        )
        await park.stop.wait(serving, lambda: bridge.transaction is None)
    return results


async def _drain(bridge: StationBridge) -> None:
    """Give the CSMS a moment to take the last transaction events (they stay on disk if not): 10 s
    at the end of a run; once stopped, :data:`DELIVER_S` s when connected, none when not."""
    patience = (DELIVER_S if bridge.connected else 0.0) if bridge.stopping else 10.0
    waited = 0.0
    while len(bridge.outbox) and waited < patience:
        await asyncio.sleep(0.05)
        waited += 0.05
