"""``v2gtool doctor``: check the machine an SECC runs on, with a fix for every finding."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from v2gtool.cli.completion import complete_interfaces
from v2gtool.cli.configured import secc_tcp_port, tls_dirs
from v2gtool.cli.context import app_context
from v2gtool.cli.output import emit_json, json_option, use_json
from v2gtool.cli.params import validated
from v2gtool.config import interface_name
from v2gtool.deploy import DEFAULT_PLC_INTERFACE
from v2gtool.doctor.checks import CHECK_NAMES, Settings, run_checks
from v2gtool.doctor.environment import host_environment
from v2gtool.doctor.findings import Status
from v2gtool.exit_codes import ExitCode
from v2gtool.pki.create import DEFAULT_CERTS_DIR
from v2gtool.pki.trust import DEFAULT_TRUST_DIR
from v2gtool.sdp import DEFAULT_TCP_PORT, TCP_PORT_RANGE

_STYLE = {Status.OK: "green", Status.WARN: "yellow", Status.FAIL: "bold red", Status.SKIPPED: "dim"}


@click.command("doctor")
@click.option("--skip", "skip", multiple=True, type=click.Choice(CHECK_NAMES), metavar="CHECK",
              help="Skip a check (repeatable).")
@click.option("--interface", shell_complete=complete_interfaces, callback=validated(interface_name),
              help="PLC interface [default: [slac] iface, else eth0].")
@click.option("--certs-dir", type=click.Path(file_okay=False, path_type=Path),
              help=f"Certificates and keys [default: [pki] certs_dir, else {DEFAULT_CERTS_DIR}].")
@click.option("--trust-dir", type=click.Path(file_okay=False, path_type=Path),
              help=f"Trust anchors [default: [pki] trust_dir, else {DEFAULT_TRUST_DIR}].")
@click.option("--tcp-port", type=click.IntRange(TCP_PORT_RANGE.start, TCP_PORT_RANGE.stop - 1),
              help=f"TCP port the SECC announces in SDP [default: [sdp] tcp_port, else {DEFAULT_TCP_PORT}].")
@json_option
@click.pass_context
def doctor(ctx: click.Context, skip: tuple[str, ...], interface: str | None, certs_dir: Path | None,
           trust_dir: Path | None, tcp_port: int | None, json_out: bool) -> None:
    """Check that this machine can run an SECC, and say how to fix each finding.

    \b
    Checks (names for --skip):
      plc-driver     QCA7000 driver (qcaspi, qca_uart) loaded, modprobe options in range
      plc-interface  PLC interface present, up, with an IPv6 link-local address
      raw-socket     root or CAP_NET_RAW for SLAC's raw Ethernet socket
      clock          clock synchronised (timedatectl, else adjtimex): a wrong clock
                     turns valid certificates into "expired"
      certificates   certificate and trust directories present; keys 0600; nothing
                     world-writable
      firewall       nftables opens only UDP 15118 and the SECC TCP port on the PLC
                     interface
      realtime       SCHED_FIFO at --rt's default priority (40) permitted, and a
                     spare core for --cpu (session run, v2g-message-handler serve)
      openssl        TLS 1.3 with the ISO 15118-20 suites, secp521r1 and Ed448

    Exit status 4 when a check fails; warnings alone exit 0.

    \b
    Examples:
      sudo v2gtool doctor --interface eth1
      v2gtool doctor --skip firewall --skip plc-driver
      v2gtool --json doctor | jq -c 'select(.status == "fail")'
    """
    app = app_context(ctx)
    certs, trust = tls_dirs(app, certs_dir, trust_dir)
    settings = Settings(
        plc_interface=interface or str(app.config.get("slac", "iface", DEFAULT_PLC_INTERFACE)),
        certs_dir=certs,
        trust_dir=trust,
        secc_tcp_port=secc_tcp_port(app, tcp_port),
    )
    findings = run_checks(host_environment(), settings, frozenset(skip))
    if use_json(ctx, json_out):
        for finding in findings:
            emit_json(finding.to_json())
    else:
        table = Table(show_header=True, header_style="bold", expand=False)
        for column in ("check", "status", "finding", "fix"):
            table.add_column(column, overflow="fold")
        for finding in findings:
            # Plain Text, not markup: a fix says "set [slac] iface", a path may hold brackets.
            table.add_row(Text(finding.check), Text(finding.status.value, style=_STYLE[finding.status]),
                          Text(finding.summary), Text(finding.fix or ""))
        app.console.print(table)
    if any(f.status is Status.FAIL for f in findings):
        ctx.exit(ExitCode.ENVIRONMENT)
