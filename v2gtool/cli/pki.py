"""``v2gtool pki``: create a V2G test PKI and update the trust store in the field."""

from __future__ import annotations

from pathlib import Path

import click
from rich.markup import escape

from v2gtool.cli.configured import tls_dirs
from v2gtool.cli.context import app_context
from v2gtool.cli.output import emit_json, json_option, use_json
from v2gtool.pki.create import init_pki
from v2gtool.pki.profiles import KeyType
from v2gtool.pki.trust import (
    DEFAULT_PID_DIR,
    DEFAULT_TRUST_DIR,
    install_roots,
    load_pem_chain,
    notify_reload,
    read_pid_files,
)

DEFAULT_BASE = Path("/etc/v2g")


@click.group("pki")
def pki() -> None:
    """Create a V2G test PKI and maintain the trust store."""


@pki.command("init")
@click.argument("base", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_BASE)
@click.option("--certs-dir", type=click.Path(file_okay=False, path_type=Path), help="[default: BASE/certs]")
@click.option(
    "--trust-dir", type=click.Path(file_okay=False, path_type=Path), help="[default: BASE/trust/certs]"
)
@click.option(
    "--key-type",
    type=click.Choice([KeyType.SECP521R1.value, KeyType.ED448.value]),
    default=KeyType.SECP521R1.value,
    show_default=True,
    help="Key type of the -20 chains (the -2 SECC chain is always secp256r1).",
)
@click.option(
    "--force",
    is_flag=True,
    help="Replace an existing PKI, its roots in the trust directory included (other roots stay).",
)
@json_option
@click.pass_context
def init(
    ctx: click.Context,
    base: Path,
    certs_dir: Path | None,
    trust_dir: Path | None,
    key_type: str,
    force: bool,
    json_out: bool,
) -> None:
    """Create an ISO 15118-20 test PKI under BASE [default: /etc/v2g].

    \b
    V2G root -> CPO Sub-CA 1 -> CPO Sub-CA 2 -> SECC leaf     (certs/secc_iso20.pem)
    OEM root -> OEM Sub-CA 1 -> OEM Sub-CA 2 -> vehicle leaf  (certs/vehicle.pem)
    MO root  -> MO Sub-CA 1  -> MO Sub-CA 2  -> contract leaf (certs/contract.pem)
    -2 V2G root (secp256r1) -> Sub-CAs -> -2 SECC leaf        (certs/secc_iso2.pem)
    Each .pem holds leaf, Sub-CA 2, Sub-CA 1; the key is beside it (.key, mode 0600).
    CA certificates and keys are in certs/ca/; roots go to trust/certs/ with hash links.
    """
    app = app_context(ctx)
    certs = certs_dir or Path(app.config.get("pki", "certs_dir", base / "certs"))
    trust = trust_dir or Path(app.config.get("pki", "trust_dir", base / "trust" / "certs"))
    layout = init_pki(certs, trust, KeyType(key_type), force=force)
    if use_json(ctx, json_out):
        emit_json(
            {
                "event": "PkiCreated",
                "key_type": key_type,
                "leaves": {name: {"chain": str(c), "key": str(k)} for name, (c, k) in layout.leaves.items()},
                "ca": [str(p) for p in layout.cas],
                "trust": [str(p) for p in layout.roots],
            }
        )
        return
    out = app.console
    out.print(f"[bold]V2G test PKI ({key_type})[/] in {certs}")
    for name, (chain, key) in layout.leaves.items():
        out.print(f"  {name:<11} {chain}  key {key.name} (0600)")
    out.print(f"  CA certificates and keys: {certs / 'ca'}")
    out.print(f"[bold]trust anchors[/] in {trust}: {', '.join(p.name for p in layout.roots)}")


@pki.command("trust-update")
@click.argument("bundle", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--trust-dir", type=click.Path(file_okay=False, path_type=Path), help=f"[default: {DEFAULT_TRUST_DIR}]"
)
@click.option(
    "--pid-file",
    "pid_files",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help=f"Service to tell to reload (SIGHUP, if it catches it) [default: every {DEFAULT_PID_DIR}/*.pid].",
)
@json_option
@click.pass_context
def trust_update(
    ctx: click.Context, bundle: Path, trust_dir: Path | None, pid_files: tuple[Path, ...], json_out: bool
) -> None:
    """Install the root CA certificates of BUNDLE (PEM) into the trust store.

    This is the field procedure when a V2G root CA is renewed: the roots are written next to the
    existing ones (an old root stays until removed by hand; an update that fails part-way is rolled
    back), the hash links are rebuilt, and every v2gtool service with a pid file that reloads its TLS
    contexts on SIGHUP (`tls-verify --serve`) gets SIGHUP. Every pid file is read first: a bad one
    stops the update before the trust store changes. A service that is gone, a stale pid file whose
    pid now runs another program, or a process that does not catch SIGHUP (which would end it: restart
    it to use the new roots) is reported and not signalled; the others are still told to reload.

    A root no V2G chain can be valid under is refused with the whole bundle (exit 5, one line naming
    it): not a self-signed CA, a key type neither ISO 15118-20 nor -2 allows, keyUsage without
    keyCertSign and cRLSign, no DC=V2G, OEM or MO, or expired (check the clock). A root not yet
    valid, or expiring within 14 days, is installed with a warning.
    """
    app = app_context(ctx)
    _, trust = tls_dirs(app, None, trust_dir)
    roots = load_pem_chain(bundle)
    services = read_pid_files(list(pid_files) if pid_files else sorted(DEFAULT_PID_DIR.glob("*.pid")))
    written = install_roots(roots, trust)
    signalled, missed = notify_reload(services)
    if use_json(ctx, json_out):
        emit_json(
            {
                "event": "TrustUpdated",
                "installed": [str(p) for p in written],
                "reloaded": signalled,
                "not_reloaded": missed,
            }
        )
        return
    for path in written:
        app.console.print(f"installed {path}")
    app.console.print(f"told {len(signalled)} service(s) to reload: {', '.join(map(str, signalled)) or '-'}")
    for line in missed:
        app.err_console.print(escape(f"v2gtool: warning: not reloaded: {line}"), highlight=False, soft_wrap=True)
