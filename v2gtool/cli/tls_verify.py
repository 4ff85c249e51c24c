"""``v2gtool tls-verify``: check V2G certificate chains offline, or a live TLS handshake as EVCC or SECC."""

from __future__ import annotations

import datetime as dt
import os
import signal
import socket
import ssl
import sys
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from v2gtool.cli.configured import tls_dirs
from v2gtool.cli.context import AppContext, app_context
from v2gtool.cli.lines import NotJson, json_value, numbered_lines, stdin_text
from v2gtool.cli.output import emit_json, json_option, use_json
from v2gtool.cli.params import FiniteFloatRange
from v2gtool.cli.progress import Spinner, spinner
from v2gtool.errors import V2GToolError
from v2gtool.exit_codes import ExitCode
from v2gtool.pki.create import DEFAULT_CERTS_DIR
from v2gtool.pki.probe import HandshakeReport, handshake_as_client, handshake_as_server
from v2gtool.pki.profiles import ChainReport, LeafRole, Protocol, Severity, check_chain, format_delta
from v2gtool.pki.tls import (
    Credentials,
    TlsError,
    check_credentials,
    check_own_chain,
    client_context,
    default_credentials,
    server_context,
)
from v2gtool.pki.trust import DEFAULT_TRUST_DIR, TrustStore, load_pem_chain
from v2gtool.sdp import DEFAULT_TCP_PORT, Security, result_from_json

ROLES = {"secc": LeafRole.SECC, "vehicle": LeafRole.VEHICLE, "contract": LeafRole.CONTRACT}
EXIT_CODES = """\b
Exit codes:
  0  every check and handshake passed
  1  no TCP connection to the SECC (refused, unreachable), or unreadable input
  2  bad option or configuration; --from-sdp - with stdin closed
  3  the peer stayed silent past --timeout (e.g. a TCP peer that never speaks TLS)
  5  a certificate or a handshake failed: chain, expiry, key type, alert, an unusable own
     key or certificate or one the peer would refuse (role, keyUsage, expiry), a missing
     trust directory or certificate file, no mutual authentication (ISO 15118-20)
  130  interrupted (SIGINT); SIGTERM ends --serve after the running handshake
"""
RELOAD_POLL = 0.2
"""Seconds between checks for a pending SIGHUP while the server waits for a connection."""


def _render_chain_report(app: AppContext, report: ChainReport, indent: str = "") -> None:
    out = app.console
    for i, subject in enumerate(report.subjects):
        out.print(f"{indent}{'  ' * i}{'└ ' if i else ''}{escape(subject)}", highlight=False, soft_wrap=True)
    for finding in report.findings:
        style = "red" if finding.severity is Severity.ERROR else "yellow"
        out.print(f"{indent}[{style}]{escape(str(finding))}[/]", highlight=False, soft_wrap=True)
    margin = report.margin
    if margin.behind >= dt.timedelta(0) and margin.ahead >= dt.timedelta(0):
        out.print(
            f"{indent}clock margin: valid while the local clock is at most "
            f"{format_delta(margin.behind)} slow and {format_delta(margin.ahead)} fast",
            highlight=False,
            soft_wrap=True,
        )
    verdict = "[green]conforms to the profile[/]" if report.ok else "[red]does not conform to the profile[/]"
    out.print(f"{indent}{verdict}", soft_wrap=True)


def _chain_json(report: ChainReport) -> dict[str, Any]:
    return {
        "event": "ChainCheck",
        "ok": report.ok,
        "chain": list(report.subjects),
        "findings": [str(f) for f in report.findings],
        "clock_behind_s": report.margin.behind.total_seconds(),
        "clock_ahead_s": report.margin.ahead.total_seconds(),
    }


def _render_handshake(app: AppContext, report: HandshakeReport) -> None:
    out = app.console
    who = "as EVCC (client) with" if report.side == "client" else "as SECC (server) from"
    verdict = "[green]OK[/]" if report.ok else "[red]FAILED[/]"
    out.print(
        f"TLS handshake {who} {escape(report.peer)} (ISO 15118-{report.protocol.value[3:]}): {verdict} "
        f"in {report.seconds * 1000:.2f} ms",
        highlight=False,
        soft_wrap=True,
    )
    for label, value in (
        ("version", report.version),
        ("cipher suite", report.cipher_suite),
        ("group", report.group),
        ("peer signature", report.peer_signature),
        ("own signature", report.own_signature),
    ):
        if value:
            out.print(escape(f"  {label:<15} {value}"), highlight=False, soft_wrap=True)
    if report.error:
        out.print(f"  [red]{escape(report.error)}[/]", highlight=False, soft_wrap=True)
    for note in report.diagnosis:
        out.print(f"  [yellow]{escape(note)}[/]", highlight=False, soft_wrap=True)
    if report.profile is not None:
        out.print("  peer chain:")
        _render_chain_report(app, report.profile, "    ")


def _read_sdp_record(source: Path) -> tuple[str, int, Security]:
    """The SECC address, port and security of the last ``sdp-discovery --json`` line of *source*
    (``-``: stdin)."""
    if str(source) == "-":
        lines: Iterable[str] = stdin_text()
    else:
        try:
            lines = source.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise V2GToolError(f"--from-sdp: cannot read {source}: {getattr(exc, 'strerror', None) or exc}") from None
    record: Any = None
    for number, line in numbered_lines(lines):
        try:
            candidate = json_value(line)
        except NotJson as exc:
            raise V2GToolError(f"--from-sdp: line {number} is not JSON from sdp-discovery --json: {exc}") from None
        if isinstance(candidate, dict) and candidate.get("event") == "SdpResult":
            record = candidate
    result = result_from_json(record)
    scope = f"%{result.interface}" if result.response.address.is_link_local and result.interface else ""
    return f"{result.response.address}{scope}", result.response.port, result.response.security


def _sockaddr(host: str, port: int) -> tuple[Any, ...]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise V2GToolError(f"cannot resolve {host}: {exc.strerror}") from None
    return infos[0][4]


@click.command("tls-verify", epilog=EXIT_CODES)
@click.argument("target", required=False)
@click.argument("port", required=False, type=click.IntRange(1, 65535))
@click.option(
    "--chain",
    "chain_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Offline: check this PEM chain (leaf first) against the trust store.",
)
@click.option(
    "--role",
    type=click.Choice(list(ROLES)),
    default="secc",
    show_default=True,
    help="Offline: the role the chain's leaf must have.",
)
@click.option(
    "--at",
    "at_time",
    type=click.DateTime(["%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"]),
    help="Offline: check validity at this UTC time instead of the local clock.",
)
@click.option(
    "--from-sdp",
    "from_sdp",
    type=click.Path(exists=True, dir_okay=False, allow_dash=True, path_type=Path),
    help="Client: take the SECC address from sdp-discovery --json output ('-' for stdin).",
)
@click.option("--serve", is_flag=True, help="Server: accept handshakes as an SECC (to test an EV).")
@click.option(
    "--pid-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Server: write the pid here (removed on exit, SIGTERM included); SIGHUP (sent by `pki trust-update`) "
    "reloads certificates and roots.",
)
@click.option("--listen", default="::", show_default=True, help="Server: address to listen on.")
@click.option(
    "--port",
    "listen_port",
    type=click.IntRange(1, 65535),
    default=DEFAULT_TCP_PORT,
    show_default=True,
    help="Server: TCP port.",
)
@click.option(
    "--count", type=click.IntRange(1), default=1, show_default=True, help="Server: handshakes to accept."
)
@click.option(
    "--protocol",
    type=click.Choice([p.value for p in Protocol]),
    default="iso20",
    show_default=True,
    help="iso20: TLS 1.3 + mutual auth; iso2: TLS 1.2, server auth only.",
)
@click.option(
    "--certs-dir", type=click.Path(file_okay=False, path_type=Path), help=f"[default: {DEFAULT_CERTS_DIR}]"
)
@click.option(
    "--trust-dir", type=click.Path(file_okay=False, path_type=Path), help=f"[default: {DEFAULT_TRUST_DIR}]"
)
@click.option("--cert", type=click.Path(dir_okay=False, path_type=Path), help="Own chain PEM (leaf first).")
@click.option("--key", type=click.Path(dir_okay=False, path_type=Path), help="Own private key PEM.")
@click.option(
    "--keylog",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Append NSS key-log lines here [default: $SSLKEYLOGFILE when set].",
)
@click.option(
    "--timeout",
    type=FiniteFloatRange(min=0.1),
    default=20.0,
    show_default=True,
    help="Seconds for connect + handshake (V2G_EVCC_CommunicationSetup_Timeout is 20 s).",
)
@json_option
@click.pass_context
def tls_verify(
    ctx: click.Context,
    target: str | None,
    port: int | None,
    chain_file: Path | None,
    role: str,
    at_time: dt.datetime | None,
    from_sdp: Path | None,
    serve: bool,
    listen: str,
    listen_port: int,
    count: int,
    pid_file: Path | None,
    protocol: str,
    certs_dir: Path | None,
    trust_dir: Path | None,
    cert: Path | None,
    key: Path | None,
    keylog: Path | None,
    timeout: float,
    json_out: bool,
) -> None:
    """Check V2G certificates by the ISO 15118-20 profiles, offline or in a live TLS handshake.

    \b
    Offline:  tls-verify --chain secc.pem [--role secc|vehicle|contract] [--at 2027-01-01]
    Client:   tls-verify fe80::1%eth1 64109      or   sdp-discovery --json ... | tls-verify --from-sdp -
    Server:   tls-verify --serve [--port 64109] [--count N]

    Every failure is one line naming its certificate or its cause.
    """
    app = app_context(ctx)
    as_json = use_json(ctx, json_out)
    proto = Protocol(protocol)
    certs, trust = tls_dirs(app, certs_dir, trust_dir)
    modes = sum((chain_file is not None, serve, from_sdp is not None or target is not None))
    if modes != 1:
        raise click.UsageError("give exactly one of: --chain FILE, --serve, --from-sdp FILE, or TARGET PORT")

    if chain_file is not None:
        now = at_time.replace(tzinfo=dt.UTC) if at_time else None
        roots = TrustStore.load(trust).roots
        chain_report = check_chain(load_pem_chain(chain_file), roots, ROLES[role], proto, now)
        if as_json:
            emit_json(_chain_json(chain_report))
        else:
            _render_chain_report(app, chain_report)
        ctx.exit(ExitCode.OK if chain_report.ok else ExitCode.SECURITY)

    _refuse_offline_options(ctx)
    address: tuple[Any, ...] | None = None
    if from_sdp is not None:
        host, sdp_port, security = _read_sdp_record(from_sdp)
        if security is Security.NO_TLS:
            raise TlsError(f"the SECC at {host} port {sdp_port} offered no TLS in SDP: nothing to verify")
        address, where = _sockaddr(host, sdp_port), f"[{host}]:{sdp_port}"
    elif not serve:
        if target is None or port is None:
            raise click.UsageError("client mode needs TARGET and PORT (HOST%IFACE PORT) or --from-sdp")
        address, where = _sockaddr(target, port), f"[{target}]:{port}"
    if (cert is None) != (key is None):
        raise click.UsageError("--cert and --key go together")
    credentials = Credentials(cert, key) if cert and key else default_credentials(certs, serve, proto)
    # Our own chain and key as the TLS context reads them: a problem is one line naming the file, exit 5.
    own_leaf = check_credentials(credentials.chain, credentials.key) if credentials else None
    reports: list[HandshakeReport] = []
    if address is None:

        def load() -> tuple[ssl.SSLContext, TrustStore]:
            context = server_context(certs, trust, proto, credentials=credentials, keylog=keylog)
            store = TrustStore.load(trust)
            if credentials is not None:  # what the EVCC would refuse, refused before it connects
                check_own_chain(credentials.chain, LeafRole.SECC, proto, store.roots)
            return context, store

        def handshake(
            raw: socket.socket, peer: Any, context: ssl.SSLContext, roots: TrustStore
        ) -> HandshakeReport:
            return handshake_as_server(raw, peer, context, proto, roots.roots, own_leaf, timeout=timeout)

        with spinner(ctx, f"opening [{listen}]:{listen_port}", as_json) as waiting:
            reports += _serve(app, as_json, listen, listen_port, count, pid_file, load, handshake, waiting)
    else:
        context = client_context(certs, trust, proto, credentials=credentials, keylog=keylog)
        roots = TrustStore.load(trust).roots
        if credentials is not None and proto is Protocol.ISO20:  # -2: the SECC asks for no certificate
            check_own_chain(credentials.chain, LeafRole.VEHICLE, proto, roots)
        with spinner(ctx, f"connecting to {where}, TLS handshake", as_json):
            report = handshake_as_client(address, context, proto, roots, own_leaf, timeout=timeout)
        reports.append(report)
        _emit(app, as_json, report)
    ctx.exit(next((r.exit_code for r in reports if not r.ok), ExitCode.OK))


def _refuse_offline_options(ctx: click.Context) -> None:
    """Refuse --role and --at outside --chain.

    A live handshake checks the peer's chain in the role its side fixes (SECC or vehicle) and at
    the local clock, the time the peer itself validates at; neither can be chosen there.
    """
    for name, flag in (("role", "--role"), ("at_time", "--at")):
        if ctx.get_parameter_source(name) not in (None, click.core.ParameterSource.DEFAULT):
            raise click.UsageError(f"{flag} applies to --chain only")


def _serve(
    app: AppContext,
    as_json: bool,
    listen: str,
    port: int,
    count: int,
    pid_file: Path | None,
    load: Callable[[], tuple[ssl.SSLContext, TrustStore]],
    handshake: Callable[[socket.socket, Any, ssl.SSLContext, TrustStore], HandshakeReport],
    waiting: Spinner,
) -> list[HandshakeReport]:
    """Accept *count* handshakes as the SECC; SIGHUP (from ``pki trust-update``) reloads context and roots.

    SIGTERM (how systemd stops a service) ends the run like the last handshake would: after the
    running handshake, with the reports so far, and the pid file removed, so that no later
    ``pki trust-update`` signals whatever process inherits the pid.
    """
    reload, stop = threading.Event(), threading.Event()
    signal.signal(signal.SIGHUP, lambda *_: reload.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    context, store = load()
    family = socket.AF_INET6 if ":" in listen else socket.AF_INET
    try:
        listener = socket.create_server((listen, port), family=family)
    except OSError as exc:
        raise V2GToolError(f"cannot listen on [{listen}]:{port}: {exc.strerror}") from None
    listener.settimeout(RELOAD_POLL)
    reports: list[HandshakeReport] = []
    try:
        if pid_file is not None:
            try:
                pid_file.write_text(f"{os.getpid()}\n")
            except OSError as exc:
                raise V2GToolError(f"cannot write pid file {pid_file}: {exc.strerror}") from None
        if not as_json:
            app.console.print(
                escape(f"listening on [{listen}]:{port} for {count} handshake(s)"), highlight=False
            )
        while len(reports) < count and not stop.is_set():
            if reload.is_set():
                reload.clear()
                context, store = load()
                if as_json:
                    emit_json({"event": "TlsReloaded", "roots": len(store.roots)})
                else:
                    app.console.print(f"reloaded: {len(store.roots)} trusted root(s)")
            waiting.update(f"waiting for a client on [{listen}]:{port}, handshake {len(reports) + 1} of {count}")
            try:
                raw, peer = listener.accept()
            except TimeoutError:
                continue
            waiting.update(f"TLS handshake with [{peer[0]}]:{peer[1]}")
            report = handshake(raw, peer, context, store)
            reports.append(report)
            _emit(app, as_json, report)
    finally:
        listener.close()
        if pid_file is not None:
            pid_file.unlink(missing_ok=True)
    return reports


def _emit(app: AppContext, as_json: bool, report: HandshakeReport) -> None:
    if as_json:
        emit_json(report.to_json())
    else:
        _render_handshake(app, report)
    sys.stdout.flush()
