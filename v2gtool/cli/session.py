"""``v2gtool session run``: a whole ISO 15118-20 DC / DC_BPT charging session.

With ``--sim`` both roles run in this process on the embedded ``sim`` plant: the SECC's station
(contactors, insulation monitor, power module, all behind the interlock) and the vehicle's battery
are the two ends of one simulated cable, and the two engines talk EXI over V2GTP on real TCP
(loopback). A failed step names the subcommand that debugs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import dataclasses
import errno
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import IO, Any, TextIO, TypeVar

import click
from cryptography import x509
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from v2gtool.cli.configured import secc_tcp_port, tls_dirs
from v2gtool.cli.context import AppContext, app_context
from v2gtool.cli.evse_slac import follow_slac
from v2gtool.cli.hw_common import configured_backend, station_config
from v2gtool.cli.live import (
    SAFETY_CONDITIONS,
    Plant,
    SafetyTripped,
    SessionFailed,
    SessionTimeout,
    build_plant,
    check_served,
    connect_session,
    contract_roots,
    load_contract,
    printer,
    serve_sessions,
    tls_options,
    vehicle_config,
)
from v2gtool.cli.output import emit_json, json_option, use_json
from v2gtool.cli.params import FiniteFloatRange
from v2gtool.cli.progress import Spinner, spinner
from v2gtool.cli.realtime import apply_options, check_options, realtime_options
from v2gtool.errors import V2GToolError
from v2gtool.exit_codes import ExitCode
from v2gtool.hw.events import ContactorStuck, InterlockRefused, InterlockTripped, IsolationFault
from v2gtool.hw.interlock import Condition
from v2gtool.iso20.evcc import Direction
from v2gtool.iso20.events import MessageReceived, MessageSent, NoEnergyTransferred, PhaseChanged, PowerFlow
from v2gtool.iso20.pnc import Contract
from v2gtool.iso20.states import State
from v2gtool.iso20.values import ControlMode, SignConvention, service_from_name, service_name
from v2gtool.net.netns import capture_link, require_netns, veth_pair
from v2gtool.net.pcapwriter import PcapWriteError, PcapWriter
from v2gtool.net.sdp_transport import interface_index
from v2gtool.net.v2g_tcp import Ending
from v2gtool.pki.profiles import Protocol
from v2gtool.pki.tls import client_context, server_context
from v2gtool.session import scenario as scenarios
from v2gtool.session.events import Event
from v2gtool.session.journal import journal_log
from v2gtool.session.link_chain import slac_on_link
from v2gtool.session.plant import CableCheckFinished
from v2gtool.session.render import describe
from v2gtool.session.runner import SessionResult, TraceWriteFailed, no_vehicle, run_sim
from v2gtool.session.trace import SessionTrace
from v2gtool.slac.machine import SlacResult
from v2gtool.slac.states import Role

DEFAULT_TRACE = "/var/log/v2g/trace.pcap"
# ``--trace -``: the pcap goes to stdout (tcpdump's ``-w -``), opened by name so that every trace
# writer takes it as it takes a file.
STDOUT_TRACE = Path("-")
_STDOUT_DEVICE = Path("/dev/stdout")
T = TypeVar("T")

# Which subcommand debugs the step a session failed in.
DEBUG_HINTS = {
    "SLAC": "v2gtool evse-slac",
    "DC_CableCheck": "v2gtool isolation-check",
    "DC_PreCharge": "v2gtool contactor close",
    "DC_ChargeLoop": "v2gtool contactor status",
    "DC_WeldingDetection": "v2gtool contactor weld-check",
    "CP": "v2gtool cp-duty read",
}


@click.group("session")
def session() -> None:
    """Run a whole ISO 15118-20 charging or discharging (V2G) session.

    \b
    Examples:
      v2gtool session run --sim
      v2gtool session run --sim --direction discharge --power 11000 --duration 600
      v2gtool --json session run --sim --control-mode dynamic | jq -c 'select(.event=="PowerFlow")'
      sudo v2gtool session run --role evse --iface eth1 --rt --cpu 1
    """


@session.command(
    "run",
    epilog='With --json each line is one event, its type in "event" and seconds in "t": v2gtool-events(7) '
    "(man/v2gtool-events.7) lists every event type with its fields.",
)
@click.option("--sim", is_flag=True, help="Both roles in this process on the simulated plant (no root, no hardware).")
@click.option(
    "--role",
    type=click.Choice(["both", "evse", "ev"]),
    default="both",
    show_default=True,
    help="Which side(s) to run: both (with --sim or --netns), or one side on --iface.",
)
@click.option("--netns", is_flag=True, help="Both roles as separate processes in two namespaces joined by veth (root).")
@click.option("--iface", help="The PLC interface for --role evse|ev: raw SLAC, SDP, TCP/TLS.")
@click.option(
    "--modem",
    type=click.Choice(["sim", "hw"]),
    default="sim",
    show_default=True,
    help="SLAC through the simulated QCA7000 modem, or a real modem on --iface.",
)
@click.option(
    "--scenario",
    "scenario_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="TOML scenario: [session], [vehicle], [charger], [plant], [[at]] (faults).",
)
@click.option(
    "--service",
    type=click.Choice(["DC", "DC_BPT", "DC_V2G"], case_sensitive=False),
    help="Energy transfer service (DC_V2G is accepted as an alias of DC_BPT).",
)
@click.option("--control-mode", type=click.Choice(["scheduled", "dynamic"]), help="ISO 15118-20 control mode.")
@click.option("--direction", type=click.Choice(["charge", "discharge"]), help="Energy flow (discharge = V2G).")
@click.option(
    "--sign-convention",
    type=click.Choice(["signed", "channel"]),
    help="Discharge on the wire: negative currents (signed) or magnitudes + BPT_ChannelSelection.",
)
@click.option("--power", type=FiniteFloatRange(min=0), help="Requested power in W (Dynamic: the grid request).")
@click.option(
    "--duration",
    type=FiniteFloatRange(min=0, max=2**32 - 1),
    help="Seconds of energy transfer (simulated time; an xs:unsignedInt on the wire).",
)
@click.option(
    "--trace",
    "trace_path",
    type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
    help="pcap of every frame, flushed per packet (- for stdout; the output then goes to stderr); --netns and "
    "--role capture the link [default: [session] trace or /var/log/v2g/trace.pcap; --role: none].",
)
@click.option("--no-trace", is_flag=True, help="Write no trace.")
@click.option(
    "--pnc",
    is_flag=True,
    help="Plug & Charge with --certs-dir's contract.pem/contract.key, checked against --trust-dir "
    "(--role evse: offer it; --role ev: use it).",
)
@click.option(
    "--speed",
    type=FiniteFloatRange(min=0),
    default=0,
    show_default=True,
    help="Simulated seconds per wall second; 0 runs as fast as possible.",
)
@tls_options
@realtime_options
@json_option
@click.pass_context
def run(
    ctx: click.Context,
    sim: bool,
    role: str,
    netns: bool,
    iface: str | None,
    modem: str,
    scenario_path: Path | None,
    service: str | None,
    control_mode: str | None,
    direction: str | None,
    sign_convention: str | None,
    power: float | None,
    duration: float | None,
    trace_path: Path | None,
    no_trace: bool,
    pnc: bool,
    speed: float,
    no_tls: bool,
    certs_dir: Path | None,
    trust_dir: Path | None,
    keylog: Path | None,
    rt: int | None,
    cpu: int | None,
    json_out: bool,
) -> None:
    """Run the chain: CP, SLAC, SDP, (TLS,) the -20 session with cable check, precharge, charge or
    discharge, welding detection, stop. --sim: both roles in this process; --netns: both roles as
    processes in two namespaces over veth; --role evse|ev --iface IF: one side on a real link."""
    app = app_context(ctx)
    _check_mode(sim=sim, netns=netns, role=role)
    if sim:
        _refuse_unused(ctx, "--sim", _SIM_UNUSED if not pnc else _SIM_UNUSED_WITH_PNC)
    if netns:
        _refuse_unused(ctx, "--netns", _NETNS_UNUSED)
    if netns and keylog is not None and no_tls:
        raise click.UsageError("--keylog: --netns with --no-tls runs plain TCP, there are no TLS secrets to log")
    if no_trace and trace_path is not None:
        raise click.UsageError("--trace FILE and --no-trace contradict each other")
    if speed and not sim:
        raise click.UsageError("--speed sets the simulated time of --sim; --netns and --role run on a real link, "
                               "in real time")
    as_json = use_json(ctx, json_out)
    if (to_stdout := _stdout_trace_setting(app, trace_path, (sim or netns) and not no_trace)) is not None:
        app = _trace_to_stdout(ctx, app, as_json, to_stdout)
        trace_path = _STDOUT_DEVICE
    scenario = scenarios.load(
        scenario_path,
        service=service_from_name(service) if service else None,
        control_mode=ControlMode[control_mode.upper()] if control_mode else None,
        direction=Direction(direction) if direction else None,
        sign_convention=SignConvention(sign_convention) if sign_convention else None,
        power=power,
        duration=duration,
    )
    configured_backend(app)  # a session runs on the sim plant, but a typo in [hw] backend is still an error
    station = station_config(app, rated_v=scenario.charger.max_voltage)
    # Every input is read and checked before the trace is opened: a bad one must not wipe the last trace.
    if netns:
        dirs = _check_netns_inputs(app, certs_dir, trust_dir, tls=not no_tls, pnc=pnc)
        require_netns()
        check_options(rt, cpu)  # as the children will apply them: refused once, here
        _run_netns(ctx, ctx.params, dirs, as_json, None if no_trace else _open_trace(app, trace_path, PcapWriter),
                   sys.stderr if trace_path == _STDOUT_DEVICE else sys.stdout)
        return
    apply_options(ctx, rt, cpu, as_json)
    if not sim:
        if iface is None:
            raise click.UsageError("--role evse|ev needs --iface")
        interface_index(iface)
        certs, trust = tls_dirs(app, certs_dir, trust_dir)
        protocol_context = server_context if role == "evse" else client_context
        context = None if no_tls else protocol_context(certs, trust, Protocol.ISO20, keylog=keylog)
        credentials = (  # each side reads only its own: a charger has no contract key
            load_contract(certs) if pnc and role == "ev" else None,
            contract_roots(trust) if pnc and role == "evse" else None,
        )
        capture = None if no_trace or trace_path is None else _open_trace(app, trace_path, PcapWriter)
        with (
            printer(app, as_json) as show,
            spinner(ctx, f"opening {iface}", as_json) as waiting,
            capture_link(iface, capture),
        ):
            # The charger's station reports what its interlock does; the car's plant is no station.
            plant = build_plant(scenario, remote_ev=role == "evse", station=station,
                                listener=show if role == "evse" else None)
            _run_side(role, iface, secc_tcp_port(app, None), modem == "sim", context, plant, credentials, show,
                      waiting)
        return
    credentials = _pnc_credentials(app, certs_dir, trust_dir) if pnc else (None, None)
    trace = None if no_trace else _open_trace(app, trace_path, SessionTrace)
    journal = None if as_json else journal_log()  # under systemd: journal records instead of the panel
    stop = _Stop()

    def simulate(listener: Callable[[Event], None]) -> SessionResult:
        """The session, each event to *listener* as it happens."""
        return _run_loop(
            run_sim(
                scenario,
                speed or None,
                listener=listener,
                trace=trace,
                contract=credentials[0],
                pnc_roots=credentials[1],
                station=station,
                stop_request=stop.requested,
            ),
            stop,
        )

    with journal or contextlib.nullcontext(), _summary_on_trace_failure(app, as_json):
        if as_json or journal is not None:
            result = simulate(journal or (lambda e: emit_json(e.to_json())))
        else:
            result = _run_live(app, scenario, simulate)
    _report(app, result, as_json, stop.signal)


@contextlib.contextmanager
def _summary_on_trace_failure(app: AppContext, as_json: bool) -> Iterator[None]:
    """A trace that could not be written (:class:`TraceWriteFailed`, exit 4) ended the session: its
    summary is still given before the error."""
    try:
        yield
    except TraceWriteFailed as failed:
        _summarize(app, failed.result, as_json, None)
        raise


def _check_mode(*, sim: bool, netns: bool, role: str) -> None:
    """Exactly one way of running: --sim, --netns or --role evse|ev; a usage error names the ones given."""
    given = [name for name, on in (("--sim", sim), ("--netns", netns), (f"--role {role}", role != "both")) if on]
    if not given:
        raise click.UsageError("give --sim, --netns, or --role evse|ev with --iface")
    if len(given) > 1:
        raise click.UsageError(f"{', '.join(given[:-1])} and {given[-1]} contradict each other: --sim runs both "
                               "roles in this process, --netns both in two namespaces, --role evse|ev one side "
                               "on --iface")


# The options a way of running does not use, each with why: given, they are a usage error, not an
# option silently ignored. --sim runs SLAC on a simulated cable and the session over plain TCP on
# loopback, which reads certificates only for --pnc (the contract and its roots); --netns makes its own
# veth link, behind the simulated modem.
_SIM_UNUSED_WITH_PNC = {
    "iface": "runs both roles on a simulated cable, on no interface; use --role evse|ev --iface IF",
    "modem": "runs SLAC on a simulated cable, through no modem; --modem is for --role evse|ev",
    "keylog": "runs the session over plain TCP on loopback, there are no TLS secrets to log; use --netns or "
    "--role evse|ev for TLS 1.3",
}
_SIM_UNUSED = {
    **_SIM_UNUSED_WITH_PNC,
    "certs_dir": "runs the session over plain TCP on loopback; it reads certificates only for --pnc",
    "trust_dir": "runs the session over plain TCP on loopback; it reads trust anchors only for --pnc",
}
_NETNS_UNUSED = {
    "iface": "runs on a veth pair of its own; --iface is for --role evse|ev",
    "modem": "runs SLAC on its veth pair through the simulated modem; --modem is for --role evse|ev",
}


def _refuse_unused(ctx: click.Context, mode: str, unused: dict[str, str]) -> None:
    """A usage error for the first option of *unused* given (not left at its default) with *mode*."""
    for name, why in unused.items():
        if ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT):
            raise click.UsageError(f"--{name.replace('_', '-')}: {mode} {why}")


def _stdout_trace_setting(app: AppContext, trace_path: Path | None, configured: bool) -> str | None:
    """The setting that sends the trace to stdout: ``--trace -``, or without --trace, where the
    configured default applies (*configured*: --sim and --netns), ``[session] trace = "-"``, which
    means what the option means; None when the trace goes elsewhere."""
    if trace_path == STDOUT_TRACE:
        return "--trace -"
    if trace_path is None and configured and app.config.get("session", "trace") == STDOUT_TRACE:
        return '[session] trace = "-"'
    return None


def _trace_to_stdout(ctx: click.Context, app: AppContext, as_json: bool, setting: str) -> AppContext:
    """*setting* (``--trace -``, :func:`_stdout_trace_setting`): stdout carries the pcap (``| v2gtool
    pcap-decode -``), so people's output goes to stderr, as tcpdump's does; JSON lines cannot share
    stdout with it, and a terminal is no place for it. Returns the context this command (and the
    commands under it) report with from now on."""
    if as_json:
        raise click.UsageError(f"{setting} writes the pcap to stdout, where --json writes its lines; "
                               "give --trace FILE")
    if sys.stdout.isatty():
        raise click.UsageError(f"{setting} writes the pcap to stdout, which is a terminal; pipe it "
                               "(| v2gtool pcap-decode -) or give --trace FILE")
    ctx.obj = on_stderr = dataclasses.replace(app, console=app.err_console)
    return on_stderr


#: Wall seconds a --sim session has, after SIGTERM or SIGINT, to end (:class:`_Stop`).
STOP_GRACE_S = 30.0


class _Stop:
    """SIGTERM and SIGINT during a --sim session. The first asks the session to end as a charger's
    operator ends one: the SECC's next DC_ChargeLoopRes carries EVSENotification Terminate and the EV
    stops (PowerDelivery Stop, DC_WeldingDetection, SessionStop: standards.md §4.2), so the station
    comes down through its interlock and both sides' SessionEnded and the summary are reported, as on
    any other end; the command then exits 130 (README "Exit status"). A session that has not ended
    :data:`STOP_GRACE_S` s later (the SECC notifies only in the loop), or a second signal, is cancelled."""

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None

    def requested(self) -> str | None:
        """The SECC's ``stop_request``: "Terminate" once a signal came."""
        return None if self.signal is None else "Terminate"

    def install(self, session: asyncio.Future[Any]) -> None:
        """Catch SIGTERM and SIGINT in the running loop, for *session*, until the loop closes."""
        loop = asyncio.get_running_loop()

        def received(signum: int) -> None:
            if self.signal is not None:
                session.cancel()
                return
            self.signal = signal.Signals(signum)
            loop.call_later(STOP_GRACE_S, session.cancel)

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, received, signum)


def _run_loop(main: Coroutine[Any, Any, T], stop: _Stop) -> T:
    """``asyncio.run(main)`` with SIGTERM and SIGINT ending it through *stop*; a session *stop* had to
    cancel ends the command (exit 130) with one line, without the tracebacks Python 3.11 prints for
    the connection tasks cancelled with it (:func:`_quiet_cancelled`)."""

    async def quietly() -> T:
        asyncio.get_running_loop().set_exception_handler(_quiet_cancelled)
        session = asyncio.ensure_future(main)
        stop.install(session)
        try:
            return await session
        except asyncio.CancelledError:
            raise click.Abort from None

    return asyncio.run(quietly())


def _quiet_cancelled(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The loop's exception handler: Python 3.11's ``asyncio.streams`` calls ``task.exception()`` in
    the done-callback of a server's connection handler, which raises CancelledError once
    ``asyncio.run`` has cancelled that task on Ctrl-C (3.12 checks ``task.cancelled()`` first). That
    is the interruption, not an error: nothing is printed for it; anything else goes on to the
    default handler."""
    if isinstance(context.get("exception"), asyncio.CancelledError):
        return
    loop.default_exception_handler(context)


def _pnc_credentials(
    app: AppContext, certs_dir: Path | None, trust_dir: Path | None
) -> tuple[Contract, tuple[x509.Certificate, ...]]:
    """The EV's contract (chain and key from the certificates directory) and the SECC's roots."""
    certs, trust = tls_dirs(app, certs_dir, trust_dir)
    return load_contract(certs), contract_roots(trust)


def _check_netns_inputs(
    app: AppContext, certs_dir: Path | None, trust_dir: Path | None, *, tls: bool, pnc: bool
) -> tuple[Path, Path]:
    """--netns: the certificates directory and trust anchors (option, ``[pki]`` or the default) that
    both children are given, checked here as each child would read them (with *tls* the TLS contexts,
    with *pnc* the contract and its roots), so that a bad one fails before anything starts."""
    certs, trust = tls_dirs(app, certs_dir, trust_dir)
    if tls:
        server_context(certs, trust, Protocol.ISO20)
        client_context(certs, trust, Protocol.ISO20)
    if pnc:
        _pnc_credentials(app, certs, trust)
    return certs, trust


def _run_side(
    role: str,
    iface: str,
    tcp_port: int,
    simulated_modem: bool,
    context: ssl.SSLContext | None,
    plant: Plant,
    credentials: tuple[Contract | None, tuple[x509.Certificate, ...] | None],
    show: Callable[[Event], None],
    waiting: Spinner,
) -> None:
    """One side of the chain on a real link, as a charger or a car runs it; *waiting* shows what for.
    The EVSE's SECC listens on *tcp_port* and announces it by SDP. Both sides run the *plant*'s
    scenario (the SECC: its grid request, metering confirmations; the EV: its SoC limits, standby).
    With *credentials* (--pnc) the EVSE offers Plug & Charge with their roots and the EV uses their
    contract."""
    if role == "evse":
        charger = plant[1]
        if (absent := no_vehicle(charger.station)) is not None:
            raise SessionFailed(f"{absent}; debug with `{DEBUG_HINTS['CP']}`")
        pilot = charger.station.hw.control_pilot
        on_slac = follow_slac(waiting, Role.EVSE, iface, show)
        slac = slac_on_link(Role.EVSE, iface, simulated_modem, on_slac, pilot.set_duty if pilot else None)
        _require_match(slac)
        served = asyncio.run(
            serve_sessions(iface, tcp_port, context, plant, 1.0, 1, show, waiting.update, pnc_roots=credentials[1])
        )
        check_served(served, 1)
        return
    _require_match(slac_on_link(Role.EV, iface, simulated_modem, follow_slac(waiting, Role.EV, iface, show)))
    config = vehicle_config(plant, contract=credentials[0])
    asyncio.run(connect_session(iface, None, None, context, plant, config, show, waiting.update))


def _require_match(slac: SlacResult) -> None:
    """A failed matching ends the run: a peer silent past an ISO 15118-3 Table A.1 timer is a
    timeout (exit 3), any other diagnosis a failure."""
    if not slac.matched:
        diagnosis = slac.diagnosis.name if slac.diagnosis is not None else "no match"
        error = SessionTimeout if slac.diagnosis is not None and slac.diagnosis.is_timeout else SessionFailed
        raise error(f"SLAC failed: {diagnosis} {slac.detail}; debug with `v2gtool evse-slac`")


def _run_netns(
    ctx: click.Context,
    params: dict[str, Any],
    dirs: tuple[Path, Path],
    as_json: bool,
    trace: PcapWriter | None,
    relay_to: TextIO,
) -> None:
    """Both roles as separate processes, each in its namespace, over the veth pair between them;
    *trace* captures every frame on the veth link. Both get the certificates directory and trust
    anchors *dirs* (:func:`_check_netns_inputs`); TLS unless --no-tls.

    Their output comes through this process to *relay_to* (stdout; stderr when the trace goes to
    stdout), line by line, so that the one spinner (ours: the
    children are told ``TTY_INTERACTIVE=0``) stays below it on a terminal. SIGINT or SIGTERM stops
    both children (bounded wait, then kill) and the namespaces are deleted in every case; so does a
    reader of the output that leaves early (``| head``), which ends the command quietly (exit 0).
    Each child gets SIGTERM when this process dies (:func:`_die_with_parent`), even by SIGKILL, and
    ends its side cleanly; the namespaces of a SIGKILLed parent, though, stay (``ip netns list``:
    ``v2gn<pid>ev``, ``v2gn<pid>se``; ``ip netns del`` them) since nothing of it runs to delete them. A
    failed session exits with the most specific of the children's exit statuses (:func:`_netns_exit`)."""
    options = {
        "--scenario": "scenario_path",
        "--service": "service",
        "--control-mode": "control_mode",
        "--direction": "direction",
        "--power": "power",
        "--duration": "duration",
        "--sign-convention": "sign_convention",
        "--rt": "rt",
        "--cpu": "cpu",
    }
    passed = [f"{flag}={params[key]}" for flag, key in options.items() if params[key] is not None]
    pki = [f"--certs-dir={dirs[0]}", f"--trust-dir={dirs[1]}", *(["--no-tls"] if params["no_tls"] else [])]
    pnc = ["--pnc"] if params["pnc"] else []
    keylog = [f"--keylog={params['keylog']}"] if params["keylog"] is not None else []  # the EV's: the client
    app = app_context(ctx)
    # The children read the same configuration and report the same way as this process.
    global_flags = [*(["--json"] if as_json else []), *(["--debug"] if app.debug else []),
                    *([f"--config={app.config.source}"] if app.config.source is not None else [])]
    quiet = {**os.environ, "TTY_INTERACTIVE": "0"}
    children: list[subprocess.Popen[bytes]] = []
    relays: list[threading.Thread] = []
    reader_gone = threading.Event()

    def stop_for_the_reader() -> None:
        """The reader of the output left: the session has no one to report to, stop both sides."""
        reader_gone.set()
        for child in list(children):
            if child.poll() is None:
                child.terminate()

    def start(argv: list[str]) -> subprocess.Popen[bytes]:
        child = subprocess.Popen(argv, stdout=subprocess.PIPE, env=quiet, preexec_fn=_die_with_parent(os.getpid()))
        children.append(child)
        relays.append(_relay(child.stdout, relay_to, stop_for_the_reader))
        if reader_gone.is_set():  # the reader left while it started
            stop_for_the_reader()
        return child

    previous = {signal.SIGINT: signal.getsignal(signal.SIGINT),
                signal.SIGTERM: signal.signal(signal.SIGTERM, _interrupt)}  # unwind on SIGTERM as on SIGINT
    try:
        with (
            veth_pair("v2gn") as pair,
            capture_link(pair.ev_if, trace, netns=pair.ev_ns),
            spinner(ctx, f"starting the EVSE on {pair.secc_if}", as_json) as waiting,
        ):
            base = [sys.executable, "-m", "v2gtool", *global_flags, "session", "run", *passed, *pki, *pnc]
            try:
                evse = start(pair.cmd(pair.secc_ns, *base, "--role", "evse", "--iface", pair.secc_if))
                time.sleep(0.5)  # the EVSE waits for CM_SLAC_PARM.REQ before the EV sends it
                waiting.update(f"waiting for the EVSE on {pair.secc_if} and the EV on {pair.ev_if}")
                ev = start(pair.cmd(pair.ev_ns, *base, *keylog, "--role", "ev", "--iface", pair.ev_if))
                # The EV's own ISO 15118-20 timeouts and its --duration bound its session; the EVSE
                # ends once the EV did.
                ev_rc, evse_rc = ev.wait(), _wait(evse, 60)
            finally:
                # A second signal must not cut the clean-up short (children left running, namespaces
                # left behind): from here on the signals are ignored, the first one is being handled.
                for signum in previous:
                    signal.signal(signum, signal.SIG_IGN)
                _stop(children)
                for relay in relays:
                    relay.join(timeout=5)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if reader_gone.is_set():  # the children's statuses are those of the stop: main's quiet exit 0
        raise BrokenPipeError(errno.EPIPE, "the reader of the output left")
    if ev_rc or evse_rc:
        error = SessionFailed(f"--netns session failed: EV exit {ev_rc}, EVSE exit {evse_rc}")
        error.exit_code = _netns_exit(ev_rc, evse_rc)
        raise error


# <sys/prctl.h>: the signal a process gets when the thread that forked it exits.
_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)


def _die_with_parent(parent: int) -> Callable[[], None]:
    """A ``preexec_fn`` (it runs in the child, between fork and exec): SIGTERM the child when *parent*
    dies (prctl(2) PR_SET_PDEATHSIG, kept across the exec of ``ip netns exec`` and of Python), and at
    once when it already died before that was set (the child then has another parent)."""

    def arm() -> None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


# The children's exit statuses, the cause before its consequences: an interlock trip, a bad option or
# a machine that is not ready on one side is why the other side timed out or lost its peer.
_NETNS_EXIT_PRIORITY = (
    ExitCode.SAFETY, ExitCode.USAGE, ExitCode.ENVIRONMENT, ExitCode.SECURITY, ExitCode.TIMEOUT, ExitCode.INTERRUPTED,
)


def _netns_exit(*codes: int) -> int:
    """The exit status of a --netns session from its children's: the most specific one (README
    "Exit status"), else :attr:`ExitCode.FAILURE`."""
    return next((code for code in _NETNS_EXIT_PRIORITY if code in codes), ExitCode.FAILURE)


def _stop(children: list[subprocess.Popen[bytes]], grace: float = 10.0) -> None:
    """SIGTERM each child still running (the EVSE ends its session and its server), wait for them
    together up to *grace* seconds, then kill any left."""
    for child in children:
        if child.poll() is None:
            child.terminate()
    deadline = time.monotonic() + grace
    for child in children:
        try:
            child.wait(timeout=max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def _relay(stream: IO[bytes] | None, out: TextIO, reader_gone: Callable[[], None]) -> threading.Thread:
    """Copy a child's stdout to *out*, each line whole, until the child closes it. When the reader of
    *out* leaves (``| head``), *reader_gone* is told and the rest is read and dropped: the child must
    not block on a full pipe while it stops."""

    def copy() -> None:
        assert stream is not None
        for line in stream:
            try:
                out.write(line.decode(errors="replace"))
                out.flush()
            except BrokenPipeError:
                reader_gone()
                break
        for _dropped in stream:
            pass

    thread = threading.Thread(target=copy, name="v2gtool-netns-relay", daemon=True)
    thread.start()
    return thread


def _wait(child: subprocess.Popen[bytes], timeout: float) -> int:
    """The child's exit status; killed (and 1) when it has not ended within *timeout* seconds."""
    try:
        return child.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        return 1


def _open_trace(app: AppContext, path: Path | None, open_file: Callable[[Path], T]) -> T | None:
    """The trace file, opened by *open_file* (a :class:`SessionTrace` of the simulated session, a
    :class:`PcapWriter` of a captured link); the default location is skipped with a warning when
    it cannot be written."""
    if path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise PcapWriteError(f"cannot create the trace's directory {path.parent}: {exc.strerror}") from None
        return open_file(path)
    default = Path(app.config.get("session", "trace", DEFAULT_TRACE))
    try:
        default.parent.mkdir(parents=True, exist_ok=True)
        return open_file(default)
    except (OSError, V2GToolError) as exc:
        app.err_console.print(escape(f"v2gtool: warning: no trace written ({exc}); use --trace FILE"), highlight=False)
        return None


def _run_live(
    app: AppContext,
    scenario: scenarios.SessionScenario,
    simulate: Callable[[Callable[[Event], None]], SessionResult],
) -> SessionResult:
    """*simulate* the session under a live panel of its phase, service, voltage, current, power and SoC."""
    state: dict[str, Any] = {
        "phase": "starting", "service": "-", "V": 0.0, "A": 0.0, "kW": 0.0, "SoC": None, "last": ""
    }

    def panel() -> Table:
        table = Table(
            title=f"ISO 15118-20 {scenario.service.name} session ({scenario.control_mode.name.lower()}, "
            f"{scenario.direction.value})",
            show_header=False,
        )
        table.add_row("phase", state["phase"])
        table.add_row("service", state["service"])
        table.add_row("voltage", f"{state['V']:.1f} V")
        table.add_row("current", f"{state['A']:+.1f} A  (+ charges the EV, - discharges)")
        table.add_row("power", f"{state['kW']:+.2f} kW")
        table.add_row("SoC", "-" if state["SoC"] is None else f"{state['SoC']:.2f} %")
        table.add_row("last message", state["last"])
        return table

    with Live(panel(), console=app.console, refresh_per_second=8, transient=False) as live:

        def listener(event: Event) -> None:
            if isinstance(event, PhaseChanged) and event.role == "EVCC":
                state["phase"] = event.phase
                if event.phase == State.ENDED.value:  # the output is off: nothing flows any more
                    state.update(A=0.0, kW=0.0)
            elif isinstance(event, MessageSent) and event.role == "SECC" and "EVSEPresentVoltage" in event.summary:
                state["V"] = event.summary["EVSEPresentVoltage"]  # also after the loop: welding detection's
            elif isinstance(event, PowerFlow) and event.role == "EVCC":
                state.update(V=event.voltage, A=event.current, kW=event.power / 1000, SoC=event.soc)
            elif isinstance(event, MessageReceived) and event.role == "EVCC":
                state["last"] = f"{event.message} ({(event.response_time or 0) * 1000:.1f} ms)"
            elif isinstance(event, MessageReceived) and "ServiceID" in event.summary:  # the SECC's view
                state["service"] = _services_so_far(state["service"], event.summary["ServiceID"])
            else:
                return
            live.update(panel())

        result = simulate(listener)
    if not app.console.is_terminal:  # rich leaves the last line of a Live without its line end there
        app.console.line()
    return result


def _services_so_far(shown: str, selected: int) -> str:
    """The panel's service row: the selected service, and each it changed to (service renegotiation)."""
    name = service_name(selected)
    return name if shown in ("-", name) else f"{shown} → {name}"


def _report(
    app: AppContext, result: SessionResult, as_json: bool, interrupted: signal.Signals | None = None
) -> None:
    """The session's summary (:func:`_summarize`), then its exit: the failure's error, else
    :class:`click.Abort` (exit 130) when a signal (*interrupted*, :class:`_Stop`) ended it."""
    _summarize(app, result, as_json, interrupted)
    if not result.ok:
        phase = next((e.phase for e in reversed(result.events)  # the EV's view: the step it was in
                      if isinstance(e, PhaseChanged) and e.role == "EVCC" and e.phase != State.ENDED.value), "")
        if result.reason.startswith("SLAC"):
            phase = "SLAC"
        elif not result.requests and result.reason.startswith("no vehicle"):
            phase = "CP"
        hint = DEBUG_HINTS.get(phase)
        # The runner's reason: the EV's, which names the step that failed, unless the SECC's timeout
        # ended the session and the EV saw only the dropped link (run_sim).
        why = result.reason
        cause = _station_cause(result.events)
        if cause is not None and cause not in why:
            why = f"{why} ({cause})"
        error = SessionTimeout if result.ending is Ending.TIMEOUT else SessionFailed
        safety = _safety_condition(result.events)
        if safety is not None:
            error = SafetyTripped
        if safety is Condition.EMERGENCY_STOP:  # pressed by someone: no subcommand debugs that
            hint = None
        raise error(f"session failed in {phase or 'set-up'}: {why}" + (f"; debug with `{hint}`" if hint else ""))
    if interrupted is not None:
        raise click.Abort


def _summarize(app: AppContext, result: SessionResult, as_json: bool, interrupted: signal.Signals | None) -> None:
    """The session's summary: a SessionSummary JSON line, or one line for people."""
    summary = {
        "ok": result.ok and interrupted is None,
        "interrupted": None if interrupted is None else interrupted.name,
        "reason": result.reason,
        "secc": result.secc_reason,
        "energy_wh": round(result.energy_wh, 3),
        "soc_start": round(result.soc_start, 3),
        "soc_end": round(result.soc_end, 3),
        "simulated_s": round(result.duration, 3),
        "requests": len(result.requests),
    }
    if as_json:
        emit_json({"event": "SessionSummary", **summary})
    else:
        outcome = (
            "[red]failed[/red]" if not result.ok
            else "[green]completed[/green]" if interrupted is None
            else f"[yellow]interrupted ({interrupted.name})[/yellow]"
        )
        app.console.print(
            f"{outcome}: {escape(result.reason)}; "
            f"{summary['requests']} requests, energy {result.energy_wh:+.1f} Wh, "
            f"SoC {result.soc_start:.2f} % -> {result.soc_end:.2f} %, {result.duration:.1f} s simulated"
        )
        for event in result.events:  # the loop moved nothing the way the EV asked: say so, and why
            if isinstance(event, NoEnergyTransferred):
                app.err_console.print(escape(f"v2gtool: {describe(event)}"), highlight=False, soft_wrap=True)


def _station_cause(events: list[Event]) -> str | None:
    """The station's first fault in *events*: what made a response FAILED, which the -20 message
    itself cannot say (a ResponseCode has no text)."""
    for event in events:
        if isinstance(event, CableCheckFinished) and not event.passed and event.failure:
            return f"cable check: {event.failure}"
        if isinstance(event, ContactorStuck):
            return f"contactor {event.pole.name} stuck {'open' if event.commanded_closed else 'closed'}"
        if isinstance(event, IsolationFault):
            return (f"insulation {event.resistance_ohm / 1e3:.1f} kΩ below the "
                    f"{event.threshold_ohm / 1e3:.0f} kΩ fault threshold")
        if isinstance(event, InterlockRefused):
            return f"interlock refused {event.request}: {event.detail}"
        if isinstance(event, InterlockTripped) and event.condition != Condition.SESSION_STOP.name:
            return f"interlock tripped: {Condition[event.condition].value}"
    return None


def _safety_condition(events: list[Event]) -> Condition | None:
    """The safety rule of the interlock (:data:`SAFETY_CONDITIONS`) that ended the session, by a
    trip or by refusing a request (an emergency stop pressed before the contactors closed); None when
    none did. The exit status is then :attr:`ExitCode.SAFETY` (inspect the hardware before retrying)."""
    for event in events:
        if isinstance(event, IsolationFault):
            return Condition.ISOLATION_FAULT
        if isinstance(event, ContactorStuck):
            return Condition.CONTACTOR_STUCK
        if isinstance(event, InterlockTripped | InterlockRefused) and Condition[event.condition] in SAFETY_CONDITIONS:
            return Condition[event.condition]
    return None
