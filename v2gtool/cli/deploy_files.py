"""``v2gtool deploy-files``: list, print or install the shipped SECC deployment files."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import click
from rich.table import Table

from v2gtool import deploy
from v2gtool.cli.completion import complete_interfaces
from v2gtool.cli.configured import secc_tcp_port
from v2gtool.cli.context import app_context
from v2gtool.cli.output import emit_json, json_option, use_json
from v2gtool.cli.params import validated
from v2gtool.config import interface_name
from v2gtool.errors import ConfigError, V2GToolError
from v2gtool.sdp import DEFAULT_TCP_PORT, TCP_PORT_RANGE


class DeployError(V2GToolError):
    """A deployment file cannot be written."""


def _installed_executable() -> Path:
    """The ``v2gtool`` script beside the running interpreter (a venv), else the one on PATH."""
    beside = Path(sys.executable).parent / "v2gtool"
    if beside.is_file():
        return beside.absolute()
    found = shutil.which("v2gtool")
    if found is None:
        raise ConfigError("cannot find the v2gtool executable: give its absolute path with --exec")
    path = Path(found).absolute()
    try:
        return deploy.executable_path(path)
    except ValueError as exc:
        raise ConfigError(f"the v2gtool executable {str(path)!r} {exc}; give another path with --exec") from None


@click.command("deploy-files")
@click.argument("root", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.option("--print", "print_name", metavar="NAME", help="Print one file (e.g. evse-v2g.service) instead.")
@click.option("--exec", "executable", type=click.Path(dir_okay=False, path_type=Path),
              callback=validated(deploy.executable_path),
              help="Absolute path of v2gtool for ExecStart and AppArmor [default: the running one].")
@click.option("--interface", shell_complete=complete_interfaces, callback=validated(interface_name),
              help="PLC interface [default: [slac] iface, else eth0].")
@click.option("--tcp-port", type=click.IntRange(TCP_PORT_RANGE.start, TCP_PORT_RANGE.stop - 1),
              help="TCP port the SECC listens on and announces in SDP; the environment file and "
                   "v2g.nft get it "
                   f"[default: [sdp] tcp_port, else {DEFAULT_TCP_PORT}].")
@click.option("--force", is_flag=True, help="Overwrite files that exist below ROOT.")
@json_option
@click.pass_context
def deploy_files(ctx: click.Context, root: Path | None, print_name: str | None, executable: Path | None,
                 interface: str | None, tcp_port: int | None, force: bool, json_out: bool) -> None:
    """List, print or install the SECC deployment files: systemd unit, environment, AppArmor, nftables.

    Without ROOT, list the files and where they belong. With ROOT, install them below it (ROOT=/
    installs on this machine; a staging directory suits image builds). Placeholders are filled in
    from the options and the configuration. With --json, --print gives one record:
    {"name": NAME, "target": PATH, "content": TEXT}, as the listing names the file.

    \b
    Examples:
      v2gtool deploy-files
      v2gtool deploy-files --print evse-v2g.service | less
      v2gtool deploy-files --interface eth1 --tcp-port 50000 /
      v2gtool deploy-files --exec /opt/v2gtool/bin/v2gtool ./rootfs
    """
    app = app_context(ctx)
    as_json = use_json(ctx, json_out)
    if print_name is None and root is None:
        table = Table(header_style="bold")
        table.add_column("file", no_wrap=True)
        table.add_column("installed as", no_wrap=True)
        table.add_column("purpose", overflow="fold")
        for item in deploy.FILES:
            if as_json:
                emit_json({"name": item.name, "target": "/" + item.target, "purpose": item.purpose})
            table.add_row(item.name, "/" + item.target, item.purpose)
        if not as_json:
            app.console.print(table)
        return
    values = deploy.Placeholders(
        executable=executable or _installed_executable(),
        plc_interface=interface or str(app.config.get("slac", "iface", deploy.DEFAULT_PLC_INTERFACE)),
        secc_tcp_port=secc_tcp_port(app, tcp_port),
    )
    if print_name is not None:
        try:
            item = deploy.lookup(print_name)
        except KeyError:
            names = ", ".join(f.name for f in deploy.FILES)
            raise click.BadParameter(f"{print_name!r} is not one of {names}", param_hint="--print") from None
        content = deploy.render(item, values)
        if as_json:
            emit_json({"name": item.name, "target": "/" + item.target, "content": content})
        else:
            click.echo(content, nl=False)
        return
    assert root is not None
    try:
        written = deploy.install(root, values, force=force)
    except FileExistsError as exc:
        raise DeployError(f"{exc} exists; use --force to overwrite it") from None
    except NotADirectoryError as exc:
        raise DeployError(f"{exc.filename} is not a directory: nothing installed below {root}") from None
    except IsADirectoryError as exc:
        raise DeployError(f"{exc.filename} is a directory, not a file: nothing installed below {root}") from None
    except OSError as exc:
        raise DeployError(f"cannot write below {root}: {exc.strerror}") from None
    for path in written:
        if as_json:
            emit_json({"written": str(path)})
        else:
            app.console.print(f"wrote {path}", highlight=False)
