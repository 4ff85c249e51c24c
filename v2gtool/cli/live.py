"""``v2g-message-handler serve`` and ``connect``: the SECC and the EVCC on a real interface.

``serve`` answers SDP on the interface (UDP 15118, ff02::1) and serves V2GTP over TCP on its IPv6
link-local address, TLS 1.3 with mutual authentication unless ``--no-tls``, one session after
another until SIGTERM or SIGINT. ``connect`` finds the SECC by SDP (or takes ``--host``/``--port``)
and runs one EVCC session. Both run their power path on the ``sim`` plant in real time.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import signal
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import click
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from rich.markup import escape

from v2gtool.cli.configured import secc_tcp_port, tls_dirs
from v2gtool.cli.context import AppContext, app_context
from v2gtool.cli.hw_common import station_config
from v2gtool.cli.output import emit_json, json_option, use_json
from v2gtool.cli.params import FiniteFloatRange
from v2gtool.cli.progress import spinner
from v2gtool.cli.realtime import apply_options, realtime_options
from v2gtool.errors import V2GToolError
from v2gtool.exi import namespaces
from v2gtool.exit_codes import ExitCode
from v2gtool.hw.backends import sim_station
from v2gtool.hw.interlock import Condition
from v2gtool.hw.station import Station, StationConfig
from v2gtool.hw.weldcheck import settle_contactors
from v2gtool.iso20.evcc import Direction, Evcc, EvccConfig
from v2gtool.iso20.events import SessionPaused, SessionResumed
from v2gtool.iso20.pnc import Contract
from v2gtool.iso20.ports import GridRequest
from v2gtool.iso20.secc import Secc, SessionStore
from v2gtool.iso20.timeouts import Timeouts
from v2gtool.iso20.values import ControlMode, ServiceID, service_from_name
from v2gtool.net.sdp_transport import discover, serve_sdp, usable_link_local_address
from v2gtool.net.v2g_tcp import (
    Ending,
    Outcome,
    TlsHandshakeFailed,
    handshake_error,
    run_evcc,
    serve_connection,
    start_server,
)
from v2gtool.pki.create import DEFAULT_CERTS_DIR
from v2gtool.pki.profiles import PkiError, Protocol
from v2gtool.pki.tls import client_context, encrypted_key, server_context
from v2gtool.pki.trust import DEFAULT_TRUST_DIR, TrustStore, load_pem_chain
from v2gtool.sdp import DEFAULT_TCP_PORT, SDP_SERVER_PORT, Security
from v2gtool.session import scenario as scenarios
from v2gtool.session.events import Event
from v2gtool.session.journal import journal_log
from v2gtool.session.plant import RemoteChargerVehicle, SimVehiclePort, StationCharger
from v2gtool.session.render import describe
from v2gtool.session.runner import default_station, evcc_config, finish_stop_actions, secc_config


class SessionFailed(V2GToolError):
    """A session (SLAC, EVCC or SECC) did not end with SessionStop."""


class SessionTimeout(SessionFailed):
    """The peer stayed silent past a -20 timeout (message, sequence or communication setup)."""

    exit_code = ExitCode.TIMEOUT


class SessionTlsFailed(SessionFailed):
    """The TLS handshake failed, or the peer ended the connection with a TLS alert."""

    exit_code = ExitCode.SECURITY


class ContractRefused(SessionFailed):
    """The SECC refused the EV's Plug & Charge contract: its chain, its signature or the challenge."""

    exit_code = ExitCode.SECURITY


class ContractUnusable(V2GToolError):
    """``--pnc``: the EV's contract chain or key cannot be read, or the key is not of a -20 key type."""

    exit_code = ExitCode.SECURITY


class SafetyTripped(SessionFailed):
    """A safety rule of the station's interlock ended the session: an isolation fault, Contactor
    Stuck (a weld), the emergency stop. Inspect the hardware before retrying."""

    exit_code = ExitCode.SAFETY


class SessionInterrupted(SessionFailed):
    """SIGTERM or SIGINT stopped the side before its session ended."""

    exit_code = ExitCode.INTERRUPTED


# The interlock rules that are safety trips (DESIGN.md rule 6; README "Exit status" 6), unlike a
# session stop or the CP leaving state C/D (an unplug).
SAFETY_CONDITIONS = frozenset({Condition.EMERGENCY_STOP, Condition.ISOLATION_FAULT, Condition.CONTACTOR_STUCK})


def safety_fault(station: Station) -> str | None:
    """The safety rule of *station*'s interlock that holds now (:data:`SAFETY_CONDITIONS`), as a
    reason; None when none does."""
    interlock = station.interlock
    if interlock.stuck is not None:
        return f"Contactor Stuck: {interlock.stuck.pole.name}"
    held = {
        Condition.EMERGENCY_STOP: interlock.emergency_stop,
        Condition.ISOLATION_FAULT: interlock.isolation_fault,
    }
    condition = next((c for c, active in held.items() if active), None)
    return None if condition is None else f"interlock tripped: {condition.name} ({condition.value})"


# The ISO 15118-20 responseCodeType values by which an AuthorizationRes refuses a PnC contract or its signature.
CONTRACT_REFUSALS = frozenset(
    {
        "WARNING_CertificateExpired",
        "WARNING_CertificateNotYetValid",
        "WARNING_CertificateRevoked",
        "WARNING_CertificateValidationError",
        "WARNING_ChallengeInvalid",
        "WARNING_GeneralPnCAuthorizationError",
        "WARNING_NoContractMatchingPCIDFound",
        "FAILED_SignatureError",
    }
)


def check_session(role: str, outcome: Outcome, fault: str | None = None) -> None:
    """Raise the one-line error a failed session exits with: :attr:`ExitCode.SAFETY` when a safety
    rule of the station's interlock held as it ended (*fault*, :func:`safety_fault`),
    :attr:`ExitCode.TIMEOUT` when the peer stayed silent, :attr:`ExitCode.SECURITY` for a TLS failure
    or a refused contract, 1 otherwise."""
    if outcome.ok:
        return
    if fault is not None:
        raise SafetyTripped(f"{role} session failed: {fault}")
    reason = outcome.ended.reason if outcome.ended is not None else "no SessionStop"
    if outcome.ending is Ending.TIMEOUT:
        raise SessionTimeout(f"{role} session failed: {reason}")
    if outcome.ended is not None and outcome.ended.response_code in CONTRACT_REFUSALS:
        raise ContractRefused(f"{role} session failed: Plug & Charge contract {reason}")
    if outcome.ending is Ending.FAILED:
        error = SessionTlsFailed if outcome.tls_error else SessionFailed
        raise error(f"{role} session failed: the connection failed: {outcome.error}")
    if outcome.ending is Ending.CLOSED:
        raise SessionFailed(f"{role} session failed: the peer closed the connection ({reason})")
    raise SessionFailed(f"{role} session failed: {reason}")


class Served(NamedTuple):
    """How one session :func:`serve_sessions` served ended, and the safety rule of the station's
    interlock that held then (:func:`safety_fault`)."""

    outcome: Outcome
    fault: str | None


def check_served(served: list[Served], sessions: int) -> None:
    """The exit of an SECC that was to serve *sessions* sessions (``serve --sessions N``,
    ``session run --role evse``): the first failed session's error (:func:`check_session`), or
    :attr:`ExitCode.INTERRUPTED` when a signal stopped it before they all ended."""
    for session in served:
        check_session("SECC", session.outcome, session.fault)
    if len(served) < sessions:
        raise SessionInterrupted(f"SECC stopped after {len(served)} of {sessions} session(s)")


def scoped_host(host: str, iface: str) -> str:
    """*host* with the interface as zone index where it needs one: link-local addresses that have none."""
    try:
        address = ipaddress.IPv6Address(host)
    except ValueError:
        return host
    return f"{host}%{iface}" if address.is_link_local and address.scope_id is None else host


def load_contract(certs: Path) -> Contract:
    """The EV's Plug & Charge contract: the chain of *certs*/contract.pem and the key of contract.key,
    of a -20 key type: ECDSA or Ed448 (standards.md §5). A problem with either exits
    :attr:`ExitCode.SECURITY`."""
    path = certs / "contract.key"
    try:
        key = load_pem_private_key(path.read_bytes(), None)
    except TypeError:  # cryptography's word for "encrypted, and no password given"
        raise encrypted_key(path) from None
    except (OSError, ValueError) as exc:
        raise ContractUnusable(f"--pnc: cannot read {path}: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey | ed448.Ed448PrivateKey):
        raise ContractUnusable(f"--pnc: {path} is neither an ECDSA nor an Ed448 key (ISO 15118-20 contract keys)")
    try:
        chain = load_pem_chain(certs / "contract.pem")
    except PkiError as exc:
        raise ContractUnusable(f"--pnc: {exc}") from None
    return Contract(tuple(chain), key)


def contract_roots(trust: Path) -> tuple[x509.Certificate, ...]:
    """The trust anchors the SECC checks contract chains against (the MO and V2G roots in *trust*)."""
    return TrustStore.load(trust).roots


@contextlib.contextmanager
def printer(app: AppContext, as_json: bool) -> Iterator[Callable[[Event], None]]:
    """JSON lines with --json; else, when the output goes to the journal (under systemd), structured
    journal records (its socket closed at the end of the block); else a human line per message and
    the session's end."""
    if not as_json and (journal := journal_log()) is not None:
        with journal:
            yield journal
        return

    def show(event: Event) -> None:
        if as_json:
            emit_json(event.to_json())
        elif (line := describe(event)) is not None:
            app.console.print(f"{event.t:9.3f} {escape(line)}", highlight=False)  # reasons quote the peer

    yield show


Plant = tuple[scenarios.SessionScenario, StationCharger, SimVehiclePort]


def build_plant(
    scenario: Path | scenarios.SessionScenario | None,
    *,
    remote_ev: bool,
    station: StationConfig | None = None,
    listener: Callable[[Event], None] | None = None,
) -> Plant:
    """The ``sim`` plant of one side (*remote_ev*: this is the SECC and the EV is across the link;
    else this is the EV, whose battery follows the current the SECC reports: :class:`RemoteChargerVehicle`).
    *scenario* is a scenario file or one already loaded (with the command line's overrides); *station*
    the station's ``[hw]`` settings (:func:`v2gtool.cli.hw_common.station_config`; default
    :func:`~v2gtool.session.runner.default_station`); *listener* takes the station's events (the
    interlock, the contactors, the stop actions)."""
    if not isinstance(scenario, scenarios.SessionScenario):
        scenario = scenarios.load(scenario)
    setup = sim_station(station or default_station(scenario), scenario.plant, listener=listener)
    setup.station.run(0.01)
    charger = StationCharger(setup, scenario.charger, mirror_vehicle=remote_ev)
    vehicle = SimVehiclePort if remote_ev else RemoteChargerVehicle
    return scenario, charger, vehicle(setup, scenario.vehicle)


def configured_plant(
    app: AppContext, scenario_path: Path | None, *, remote_ev: bool, listener: Callable[[Event], None] | None = None
) -> Plant:
    """:func:`build_plant` of the scenario file with this machine's ``[hw]`` station settings
    (isolation edition, SoC floor, thermal derating: :func:`v2gtool.cli.hw_common.station_config`)
    at the scenario's charger voltage: what ``serve``, ``connect`` and ``ocpp-bridge --iface`` run."""
    scenario = scenarios.load(scenario_path)
    station = station_config(app, rated_v=scenario.charger.max_voltage)
    return build_plant(scenario, remote_ev=remote_ev, station=station, listener=listener)


def vehicle_config(plant: Plant, **options: Any) -> EvccConfig:
    """The EVCC's configuration: the plant's scenario (:func:`~v2gtool.session.runner.evcc_config`)
    with its battery, and *options*."""
    scenario, _charger, vehicle = plant
    return evcc_config(scenario, vehicle.setup.plant.battery_capacity_wh, **options)


def real_time(charger: StationCharger, speed: float = 1.0) -> Callable[[], float]:
    """Seconds on the plant's time line, advancing *speed* times as fast as the wall clock. The plant
    runs in whole ticks, so a step of it (a slice of the cable check, run at one of the EV's polls)
    can end up to a tick past the time asked: the clock then moves forward with it, never back."""
    offset = charger.now() - time.monotonic() * speed

    def now() -> float:
        nonlocal offset
        t = time.monotonic() * speed + offset
        if charger.now() > t:
            offset += charger.now() - t
            t = charger.now()
        return t

    return now


iface_option = click.option(
    "--iface",
    callback=lambda ctx, param, value: app_context(ctx).option_or_config(ctx, param, value, "slac", "iface"),
    help="The PLC interface (it needs an IPv6 link-local address) [default: [slac] iface].",
)
_TLS_OPTIONS = [
    click.option("--no-tls", is_flag=True, help="Plain TCP instead of TLS 1.3 with mutual authentication."),
    click.option(
        "--certs-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help=f"Own certificates [default: [pki] certs_dir or {DEFAULT_CERTS_DIR}].",
    ),
    click.option(
        "--trust-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help=f"Trust anchors [default: [pki] trust_dir or {DEFAULT_TRUST_DIR}].",
    ),
    click.option(
        "--keylog",
        type=click.Path(dir_okay=False, path_type=Path),
        help="Append NSS key-log lines (Wireshark decrypts the capture with them).",
    ),
]


F = TypeVar("F", bound=Callable[..., Any])


def tls_options(func: F) -> F:
    """--no-tls, --certs-dir, --trust-dir and --keylog."""
    for option in reversed(_TLS_OPTIONS):
        func = option(func)
    return func


@click.command("serve")
@iface_option
@click.option(
    "--port", type=click.IntRange(49152, 65535), help=f"TCP port [default: [sdp] tcp_port or {DEFAULT_TCP_PORT}]."
)
@click.option(
    "--scenario",
    "scenario_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Charger limits and the plant (see session run).",
)
@click.option(
    "--speed",
    type=FiniteFloatRange(min=1.0),
    default=1.0,
    show_default=True,
    help="Run the simulated power path this many times faster than real time.",
)
@click.option(
    "--sessions",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="Stop after this many sessions, exiting non-zero if one failed (0: serve until SIGTERM/SIGINT).",
)
@click.option(
    "--pnc",
    is_flag=True,
    help="Offer Plug & Charge: check each EV's contract chain and signature against --trust-dir's roots.",
)
@tls_options
@realtime_options
@json_option
@click.pass_context
def serve(
    ctx: click.Context,
    iface: str,
    port: int | None,
    scenario_path: Path | None,
    speed: float,
    sessions: int,
    pnc: bool,
    no_tls: bool,
    certs_dir: Path | None,
    trust_dir: Path | None,
    keylog: Path | None,
    rt: int | None,
    cpu: int | None,
    json_out: bool,
) -> None:
    """Be the SECC on IFACE: answer SDP, serve ISO 15118-20 DC / DC_BPT sessions over TCP (TLS 1.3).

    \b
    Examples:
      sudo v2gtool v2g-message-handler serve --iface eth1 --pnc
    """
    app = app_context(ctx)
    tcp_port = secc_tcp_port(app, port)
    certs, trust = tls_dirs(app, certs_dir, trust_dir)
    context = None if no_tls else server_context(certs, trust, Protocol.ISO20, keylog=keylog)
    roots = contract_roots(trust) if pnc else None
    as_json = use_json(ctx, json_out)
    with printer(app, as_json) as show:
        plant = configured_plant(app, scenario_path, remote_ev=True, listener=show)
        apply_options(ctx, rt, cpu, as_json)
        with spinner(ctx, f"opening {iface}", as_json) as waiting:
            served = asyncio.run(
                serve_sessions(iface, tcp_port, context, plant, speed, sessions, show, waiting.update, pnc_roots=roots)
            )
    if sessions:  # a counted run reports its sessions; a daemon stopped by SIGTERM exits 0
        check_served(served, sessions)


#: How often ``serve`` runs its station up to the clock between requests (wall seconds): the plant and
#: its interlock go on while the EV is silent, so a stop then (the SECC's timeout, SIGTERM) acts on
#: and is stamped with the present, not the time of the last request.
_STATION_STEP_S = 0.01


def _load_grammars() -> None:
    """Load the three grammars of a DC session before the first request arrives (~0.3 s once)."""
    for short in ("apphand", "iso20", "iso20-dc"):
        namespaces.grammar(short)


async def serve_sessions(
    iface: str,
    port: int,
    context: ssl.SSLContext | None,
    plant: Plant,
    speed: float,
    sessions: int,
    show: Callable[[Event], None],
    status: Callable[[str], None] = lambda _: None,
    grid: GridRequest | None = None,
    stop_request: Callable[[], str | None] | None = None,
    pnc_roots: tuple[x509.Certificate, ...] | None = None,
    allowed_services: Callable[[], frozenset[ServiceID]] | None = None,
    signals: bool = True,
) -> list[Served]:
    """SDP responder and V2GTP server on *iface* until *sessions* sessions ended (0: SIGTERM/SIGINT,
    or, with *signals* False, until the caller, who then takes the signals, cancels it); returns how
    each served session ended, in order. The plant and the SECC's timeouts run on one clock, *speed*
    times as fast as the wall clock (``serve --speed``); the station follows that clock between
    requests too. A session still running at the end is ended by its SECC (SessionEnded), and the
    station is stopped and stepped until its interlock has opened the contactors (ContactorsOpened);
    its stop actions (``[hw] on_fault_exec``) are waited for and reported. *status* is told what the SECC
    waits for; *grid* is the Dynamic mode's grid request (an OCPP charging profile, ``ocpp-bridge --iface``);
    *stop_request* the station's wish to end a session (a remote stop); with *pnc_roots* the SECC
    offers Plug & Charge and checks contracts against them; *allowed_services* (an OCPP
    NotifyAllowedEnergyTransfer) overrides the scenario's ``bpt_allowed_from``."""
    _load_grammars()
    scenario, charger, _vehicle = plant
    clock = real_time(charger, speed)
    store = SessionStore()
    stop = asyncio.Event()
    served: list[Served] = []
    one_at_a_time = asyncio.Lock()  # one charging cable: one session at a time

    handlers: set[asyncio.Task[Any]] = set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        handlers.add(handler)
        secc: Secc | None = None
        try:
            async with one_at_a_time:
                peer = writer.get_extra_info("peername")
                status(f"in session with the EV at [{peer[0]}]:{peer[1]} on {iface}")
                config = secc_config(
                    scenario,
                    charger,
                    timeouts=Timeouts(),
                    grid=grid,
                    allowed_services=allowed_services,
                    stop_request=stop_request,
                    pnc_roots=pnc_roots,
                )
                secc = Secc(config, charger, clock(), store)
                outcome = await serve_connection(secc, reader, writer, clock, show, rate=speed)
                served.append(Served(outcome, safety_fault(charger.station)))
                if sessions and len(served) >= sessions:
                    stop.set()
                status(waiting_for)
        except asyncio.CancelledError:
            # Stopped (SIGTERM, SIGINT) in a session: the SECC ends it now (the station's session stop,
            # its SessionEnded), then the connection. Python 3.11's streams would report a cancelled
            # handler as an unhandled exception, with a traceback.
            if secc is not None:
                charger.advance(clock())
                for output in secc.abort(clock(), "the SECC was stopped (SIGTERM or SIGINT)"):
                    if isinstance(output, Event):
                        show(output)
            writer.close()
        finally:
            handlers.discard(handler)

    if signals:
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)

    def handshake_failed(peer: str, reason: str) -> None:
        """Tell why an EV's TLS handshake failed: before any session, so nothing else would."""
        show(TlsHandshakeFailed(t=clock(), role="SECC", peer=peer, error=f"TLS handshake with {peer} failed: {reason}"))

    address = await usable_link_local_address(iface)
    supported = frozenset({Security.NO_TLS if context is None else Security.TLS})
    try:
        server = await start_server(
            handle,
            f"{address}%{iface}",
            port,
            context,
            handshake_timeout=Timeouts().communication_setup,  # TLS fits in communication setup (DESIGN.md)
            handshake_failed=handshake_failed,
        )
    except OSError as exc:
        raise V2GToolError(f"cannot listen on [{address}%{iface}]:{port}: {exc.strerror}") from None
    responder = await serve_sdp(iface, port, supported, address=address)
    waiting_for = f"waiting for an EV on {iface}: SDP on UDP {SDP_SERVER_PORT}, TCP [{address}]:{port}"
    status(waiting_for)
    try:
        while not stop.is_set():  # the station runs on the clock between requests too
            charger.advance(clock())
            await asyncio.sleep(_STATION_STEP_S)
    finally:
        responder.close()
        server.close()
        for handler in handlers:  # a session still running ends with the server
            handler.cancel()
        await asyncio.gather(*handlers, return_exceptions=True)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.wait_closed(), timeout=2.0)
        charger.advance(clock())
        charger.stop()
        settle_contactors(charger.station)  # the interlock opens them on its next samples
        await finish_stop_actions(charger.station)
    return served


@click.command("connect")
@iface_option
@click.option("--host", help="SECC IPv6 address (skips SDP).")
@click.option("--port", type=click.IntRange(1, 65535), help="SECC TCP port (with --host).")
@click.option(
    "--scenario",
    "scenario_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Vehicle limits and plant (see session run).",
)
@click.option("--service", default="DC_BPT", show_default=True, help="DC or DC_BPT (alias DC_V2G).")
@click.option("--control-mode", type=click.Choice(["scheduled", "dynamic"]), default="scheduled", show_default=True)
@click.option("--direction", type=click.Choice(["charge", "discharge"]), default="charge", show_default=True)
@click.option(
    "--duration", type=FiniteFloatRange(min=0), default=10.0, show_default=True, help="Seconds of DC_ChargeLoop."
)
@click.option(
    "--timeout-scale",
    type=FiniteFloatRange(min=1.0),
    default=1.0,
    show_default=True,
    help="Multiply every message timeout (for slow test peers).",
)
@click.option(
    "--precharge-tolerance",
    type=FiniteFloatRange(min=0),
    default=20.0,
    show_default=True,
    help="Volts between EVSEPresentVoltage and the battery before the EV closes its contactors.",
)
@click.option("--pnc", is_flag=True, help="Plug & Charge with --certs-dir's contract.pem/contract.key (else EIM).")
@click.option(
    "--pause", is_flag=True, help="End with SessionStop Pause and print the SessionID that --resume continues."
)
@click.option(
    "--resume",
    "resume_hex",
    metavar="SESSION_ID",
    help="Resume a paused session: its SessionID, 16 hex digits (as --pause printed it).",
)
@tls_options
@json_option
@click.pass_context
def connect(
    ctx: click.Context,
    iface: str,
    host: str | None,
    port: int | None,
    scenario_path: Path | None,
    service: str,
    control_mode: str,
    direction: str,
    duration: float,
    timeout_scale: float,
    precharge_tolerance: float,
    pnc: bool,
    pause: bool,
    resume_hex: str | None,
    no_tls: bool,
    certs_dir: Path | None,
    trust_dir: Path | None,
    keylog: Path | None,
    json_out: bool,
) -> None:
    """Be the EVCC on IFACE: find the SECC by SDP and run one ISO 15118-20 DC / DC_BPT session.

    \b
    Examples:
      sudo v2gtool v2g-message-handler connect --iface eth1 --pnc --direction discharge
      sudo v2gtool --json v2g-message-handler connect --iface eth1 --pause | jq -r 'select(.session_id).session_id'
      sudo v2gtool v2g-message-handler connect --iface eth1 --resume 3f9a0c1d5e7b2486
    """
    app = app_context(ctx)
    if (host is None) != (port is None):
        raise click.UsageError("--host and --port go together")
    try:
        chosen = service_from_name(service)
    except KeyError:
        raise click.BadParameter(f"{service!r} is not DC, DC_BPT or DC_V2G", param_hint="--service") from None
    resume_id = session_id_option(resume_hex) if resume_hex is not None else None
    certs, trust = tls_dirs(app, certs_dir, trust_dir)
    context = None if no_tls else client_context(certs, trust, Protocol.ISO20, keylog=keylog)
    plant = configured_plant(app, scenario_path, remote_ev=False)
    config = vehicle_config(
        plant,
        service=chosen,
        control_mode=ControlMode[control_mode.upper()],
        direction=Direction(direction),
        duration=duration,
        precharge_tolerance=precharge_tolerance,
        timeouts=Timeouts(message_scale=timeout_scale),
        contract=load_contract(certs) if pnc else None,
        pause=pause,
        resume_session_id=resume_id,
    )
    as_json = use_json(ctx, json_out)
    with printer(app, as_json) as show, spinner(ctx, f"starting the EVCC on {iface}", as_json) as waiting:
        asyncio.run(connect_session(iface, host, port, context, plant, config, show, waiting.update))


def session_id_option(text: str) -> bytes:
    """``--resume``'s SessionID: 8 bytes (ISO 15118-20 sessionIDType), not all zero (that asks for a new session)."""
    try:
        session_id = bytes.fromhex(text)
    except ValueError:
        session_id = b""
    if len(session_id) != 8 or not any(session_id):
        raise click.BadParameter(f"{text!r} is not a SessionID: 16 hex digits, not all 0", param_hint="--resume")
    return session_id


async def connect_session(
    iface: str,
    host: str | None,
    port: int | None,
    context: ssl.SSLContext | None,
    plant: Plant,
    config: EvccConfig,
    show: Callable[[Event], None],
    status: Callable[[str], None] = lambda _: None,
) -> Evcc:
    """Find the SECC by SDP (unless *host*/*port*) and run one EVCC session; *status* is told what
    the EVCC waits for. V2G_EVCC_CommunicationSetup_Timeout covers SDP, the connection with its TLS
    handshake and the messages up to SessionSetupRes together (standards.md §2, §4.4): the session
    gets what SDP and the connection left of it. A session that does not end with SessionStop raises
    the error :func:`check_session` picks; one that resumed or paused ends with :class:`SessionResumed`
    / :class:`SessionPaused` (the SessionID to resume with)."""
    _load_grammars()
    _scenario, charger, vehicle = plant
    clock = real_time(charger)
    limit = config.timeouts.communication_setup
    setup_deadline = clock() + limit

    def listener(event: Event) -> None:
        if isinstance(vehicle, RemoteChargerVehicle):
            vehicle.follow(event)
        show(event)

    if host is None or port is None:
        status(f"discovering the SECC on {iface}: SDP requests to [ff02::1]:{SDP_SERVER_PORT}")
        found = await discover(iface, Security.NO_TLS if context is None else Security.TLS)
        host, port = str(found.response.address), found.response.port
    where = f"[{scoped_host(host, iface)}]:{port}"
    status(f"connecting to the SECC at {where}" + ("" if context is None else ", TLS 1.3 handshake"))
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host=scoped_host(host, iface), port=port, ssl=context),
            timeout=max(0.0, setup_deadline - clock()),
        )
    except TimeoutError:
        raise SessionTimeout(
            f"cannot connect to {where}: no connection within {limit:g} s (V2G_EVCC_CommunicationSetup_Timeout)"
        ) from None
    except ssl.SSLError as exc:
        raise SessionTlsFailed(f"cannot connect to {where}: TLS handshake failed: {exc}") from None
    except OSError as exc:
        if context is not None and isinstance(exc, ConnectionResetError | ConnectionAbortedError):
            # The connection was up: the SECC dropped it in the handshake, without a TLS alert.
            raise SessionTlsFailed(f"cannot connect to {where}: TLS handshake failed: {handshake_error(exc)} "
                                   "(a TLS 1.2-only SECC?)") from None
        raise V2GToolError(f"cannot connect to {where}: {exc}") from None
    left = dataclasses.replace(config.timeouts, communication_setup=max(0.0, setup_deadline - clock()))
    evcc = Evcc(dataclasses.replace(config, timeouts=left), vehicle)
    status(f"in session with the SECC at {where}")
    check_session("EVCC", await run_evcc(evcc, reader, writer, clock, listener))
    session_id = evcc.session_id.hex()
    if config.resume_session_id is not None:
        show(SessionResumed(t=clock(), role="EVCC", session_id=session_id, joined=evcc.resumed))
    if config.pause:
        show(SessionPaused(t=clock(), role="EVCC", session_id=session_id))
    return evcc
