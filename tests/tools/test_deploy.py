"""The shipped deployment files: systemd accepts the unit, AppArmor parses the profile, the command installs."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from cryptography.hazmat.bindings import _rust as rust
from rich.console import Console

from tests.tools.conftest import REPO
from v2gtool.cli.context import AppContext
from v2gtool.cli.main import cli
from v2gtool.config import load_config
from v2gtool.deploy import FILES, Placeholders, lookup, render
from v2gtool.exit_codes import ExitCode
from v2gtool.realtime import DEFAULT_PRIORITY

EXECUTABLE = Path(sys.executable).parent / "v2gtool"


def _values() -> Placeholders:
    if not EXECUTABLE.is_file():
        pytest.skip(f"no v2gtool console script in {EXECUTABLE.parent}")
    return Placeholders(executable=EXECUTABLE, plc_interface="eth1", secc_tcp_port=50000)


def test_placeholders_are_all_filled() -> None:
    for item in FILES:
        text = render(item, Placeholders(executable=Path("/opt/v2gtool/bin/v2gtool"), plc_interface="eth1",
                                         secc_tcp_port=50000))
        assert not re.search(r"@[A-Z_]+@", text), item.name


def test_unit_is_hardened() -> None:
    unit = render(lookup("evse-v2g.service"), Placeholders(executable=Path("/usr/bin/v2gtool")))
    settings = dict(line.split("=", 1) for line in unit.splitlines() if "=" in line and not line.startswith("#"))
    assert settings["User"] == "v2g"
    assert settings["AmbientCapabilities"] == "CAP_NET_RAW CAP_NET_ADMIN"
    assert settings["CapabilityBoundingSet"] == "CAP_NET_RAW CAP_NET_ADMIN"
    assert settings["ProtectSystem"] == "strict"
    assert settings["ReadWritePaths"] == "/var/log/v2g"
    assert settings["NoNewPrivileges"] == "yes"
    assert settings["ExecStart"] == "/usr/bin/v2gtool $V2GTOOL_ARGS"
    assert "RestrictRealtime" not in settings  # --rt needs SCHED_FIFO


def test_systemd_analyze_verify_accepts_the_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (package systemd)")
    unit = tmp_path / "evse-v2g.service"
    unit.write_text(render(lookup("evse-v2g.service"), _values()))
    # verify also runs `man v2gtool(1)` for Documentation=: point MANPATH at this checkout's pages.
    (tmp_path / "man" / "man1").mkdir(parents=True)
    for page in (REPO / "man").glob("*.1"):
        (tmp_path / "man" / "man1" / page.name).symlink_to(page)
    result = subprocess.run([analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "MANPATH": str(tmp_path / "man"), "SYSTEMD_LOG_COLOR": "0"})
    problems = [line for line in result.stderr.splitlines() if "evse-v2g" in line]
    assert result.returncode == 0, result.stderr
    assert problems == []


def test_systemd_analyze_rejects_a_broken_unit(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (package systemd)")
    unit = tmp_path / "evse-v2g.service"
    unit.write_text(render(lookup("evse-v2g.service"), _values()).replace(str(EXECUTABLE), "/nonexistent/v2gtool"))
    result = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0


def test_apparmor_profile_parses(tmp_path: Path) -> None:
    parser = shutil.which("apparmor_parser")
    if parser is None:
        pytest.skip("apparmor_parser is not installed (package apparmor)")
    profile = tmp_path / "v2gtool"
    profile.write_text(render(lookup("apparmor.v2gtool"), _values()))
    result = subprocess.run([parser, "--preprocess", str(profile)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "/var/log/v2g/** rwk" in profile.read_text()


def _apparmor_grants(profile: str, path: Path, mode: str) -> bool:
    """Whether a file rule of *profile* grants *mode* on *path*, by AppArmor's globbing
    (``**`` any characters, ``*`` any but ``/``, ``{a,b}`` alternatives)."""
    pieces = {"**": ".*", "*": "[^/]*", "{": "(?:", ",": "|", "}": ")"}
    for pattern, perms in re.findall(r'^\s*("[^"\n]+"|/\S+)\s+([a-z]+),$', profile, re.MULTILINE):
        tokens = re.findall(r"\*\*|\*|[{,}]|[^*{,}]+", pattern.strip('"'))
        regex = "".join(pieces.get(token) or re.escape(token) for token in tokens)
        if set(mode) <= set(perms) and re.fullmatch(regex, str(path)):
            return True
    return False


def test_apparmor_profile_lets_the_default_executable_import_its_environment() -> None:
    """The default --exec is the running venv's script: the confined daemon must read that venv's
    site-packages (and map its extension modules), or it cannot import its own dependencies."""
    if sys.prefix == sys.base_prefix:
        pytest.skip("not running in a virtual environment")
    profile = render(lookup("apparmor.v2gtool"), _values())
    assert _apparmor_grants(profile, Path(sys.prefix) / "pyvenv.cfg", "r")
    assert _apparmor_grants(profile, Path(click.__file__), "r")
    assert _apparmor_grants(profile, Path(rust.__file__), "mr")
    assert not _apparmor_grants(profile, Path(sys.prefix) / "bin" / "activate", "r")


def test_deploy_files_installs_below_a_root_and_keeps_existing_files(tmp_path: Path) -> None:
    args = ["deploy-files", "--exec", "/opt/v2gtool/bin/v2gtool", "--interface", "plc0", "--tcp-port", "50000"]
    first = CliRunner().invoke(cli, [*args, "--json", str(tmp_path)])
    assert first.exit_code == 0, first.output
    written = [json.loads(line)["written"] for line in first.output.splitlines()]
    assert sorted(written) == sorted(str(tmp_path / f.target) for f in FILES)
    nft = (tmp_path / "etc/nftables.d/v2g.nft").read_text()
    assert 'define PLC_IF = "plc0"' in nft and "define V2G_TCP_PORT = 50000" in nft
    assert (tmp_path / "etc/default/evse-v2g").read_text().count("V2GTOOL_SLAC__IFACE=plc0") == 1

    (tmp_path / "etc/default/evse-v2g").write_text("# local edits\n")
    again = subprocess.run([sys.executable, "-m", "v2gtool", *args, str(tmp_path)], capture_output=True,
                           text=True, timeout=60)
    assert again.returncode == ExitCode.FAILURE
    assert again.stderr == f"v2gtool: error: {tmp_path}/etc/systemd/system/evse-v2g.service exists; use --force " \
                           "to overwrite it\n"
    assert (tmp_path / "etc/default/evse-v2g").read_text() == "# local edits\n"
    forced = CliRunner().invoke(cli, [*args, "--force", str(tmp_path)])
    assert forced.exit_code == 0
    assert "V2GTOOL_ARGS=" in (tmp_path / "etc/default/evse-v2g").read_text()


def test_deploy_files_prints_and_lists() -> None:
    printed = CliRunner().invoke(cli, ["deploy-files", "--exec", "/usr/bin/v2gtool", "--print", "evse-v2g.service"])
    assert printed.exit_code == 0
    assert "ExecStart=/usr/bin/v2gtool $V2GTOOL_ARGS" in printed.output
    listed = CliRunner().invoke(cli, ["--json", "deploy-files"])
    assert [json.loads(line)["name"] for line in listed.output.splitlines()] == [f.name for f in FILES]
    for flag in (["--json", "deploy-files"], ["deploy-files", "--json"]):
        record = CliRunner().invoke(cli, [*flag, "--exec", "/usr/bin/v2gtool", "--print", "evse-v2g.service"])
        assert record.exit_code == 0
        unit = lookup("evse-v2g.service")
        assert json.loads(record.output) == {"name": unit.name, "target": "/" + unit.target, "content": printed.output}


@pytest.mark.parametrize(("args", "text"), [
    (["--print", "nginx.conf"], "nginx.conf"),
    (["--tcp-port", "15118", "--print", "v2g.nft"], "15118"),
    (["--exec", "bin/v2gtool", "--print", "v2g.nft"], "absolute"),
])
def test_deploy_files_usage_errors(args: list[str], text: str) -> None:
    result = CliRunner().invoke(cli, ["deploy-files", *args])
    assert result.exit_code == ExitCode.USAGE
    assert text in result.output


def _environment_file(interface: str) -> dict[str, str]:
    """The variables of the shipped environment file, filled in for *interface*."""
    text = render(lookup("evse-v2g.env"), Placeholders(executable=Path("/usr/bin/v2gtool"), plc_interface=interface))
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    return dict(line.split("=", 1) for line in lines)


def _parsed(argv: list[str], environ: dict[str, str], tmp_path: Path) -> click.Context:
    """The context of the command *argv* names, parsed as ``v2gtool`` would with *environ*, not run."""
    config = tmp_path / "v2gtool.toml"
    config.touch()
    app = AppContext(load_config(config, environ), False, False, Console(), Console(stderr=True))
    ctx = click.Context(cli, info_name="v2gtool", obj=app)
    command: click.Command = cli
    while isinstance(command, click.Group):
        name, *argv = argv
        found = command.get_command(ctx, name)
        assert found is not None, f"v2gtool has no command {name!r}"
        command = found
        if isinstance(command, click.Group):
            ctx = click.Context(command, info_name=name, parent=ctx)
    return command.make_context(name, argv, parent=ctx)


def test_the_environment_file_starts_the_secc_on_the_configured_interface(tmp_path: Path) -> None:
    environ = _environment_file("plc0")
    # ExecStart=@V2GTOOL@ $V2GTOOL_ARGS: systemd splits an unbraced variable at whitespace.
    assert "$V2GTOOL_ARGS" in render(lookup("evse-v2g.service"), Placeholders(executable=Path("/usr/bin/v2gtool")))
    ctx = _parsed(shlex.split(environ["V2GTOOL_ARGS"]), environ, tmp_path)
    assert ctx.command_path == "v2gtool v2g-message-handler serve"
    assert ctx.params["iface"] == "plc0"
    assert (ctx.params["rt"], ctx.params["cpu"]) == (DEFAULT_PRIORITY, 1)


def test_the_environment_file_carries_the_port_the_firewall_opens(tmp_path: Path) -> None:
    """deploy-files --tcp-port reaches the SECC too, not only v2g.nft: serve takes [sdp] tcp_port from
    V2GTOOL_SDP__TCP_PORT, so the daemon listens (and announces in SDP) where the firewall is open."""
    result = CliRunner().invoke(cli, ["deploy-files", "--exec", "/usr/bin/v2gtool", "--tcp-port", "50000",
                                      str(tmp_path)])
    assert result.exit_code == 0, result.output
    nft = (tmp_path / "etc/nftables.d/v2g.nft").read_text()
    opened = int(re.search(r"^define V2G_TCP_PORT = (\d+)$", nft, re.MULTILINE)[1])  # type: ignore[index]
    lines = (tmp_path / "etc/default/evse-v2g").read_text().splitlines()
    environ = dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))
    (tmp_path / "v2gtool.toml").write_text("[sdp]\ntcp_port = 64109\n")
    assert load_config(tmp_path / "v2gtool.toml", environ).get("sdp", "tcp_port") == opened == 50000


def test_serve_needs_an_interface_from_the_option_or_the_config(tmp_path: Path) -> None:
    assert _parsed(["v2g-message-handler", "serve", "--iface", "eth2"], {"V2GTOOL_SLAC__IFACE": "plc0"},
                   tmp_path).params["iface"] == "eth2"
    with pytest.raises(click.MissingParameter, match=r"set \[slac\] iface in the config file or V2GTOOL_SLAC__IFACE"):
        _parsed(["v2g-message-handler", "serve"], {}, tmp_path)


@pytest.mark.parametrize(("args", "text"), [
    (["--interface", 'eth1"; tcp dport 22 accept; #', "--print", "v2g.nft"], "without '\"'"),
    (["--interface", "eth1\nV2GTOOL_ARGS=--evil", "--print", "evse-v2g.env"], "without '\\n'"),
    (["--interface", "eth1/x", "--print", "v2g.nft"], "without '/'"),
    (["--interface", "a-very-long-name0", "--print", "v2g.nft"], "at most 15 bytes"),
    (["--exec", "/opt/v2g$HOME/v2gtool", "--print", "evse-v2g.service"], "must not contain '$'"),
    (["--exec", "/opt/v2g*/v2gtool", "--print", "apparmor.v2gtool"], "must not contain '*'"),
    (["--exec", "/opt/v2gtool\nExecStartPre=/bin/sh", "--print", "evse-v2g.service"], "must not contain '\\n'"),
])
def test_deploy_files_refuses_values_that_would_change_a_file(args: list[str], text: str) -> None:
    result = CliRunner().invoke(cli, ["deploy-files", *args])
    assert result.exit_code == ExitCode.USAGE
    assert text in result.output
    assert not any(part in result.output for part in ("define PLC_IF", "[Unit]", "abi <abi/3.0>", "V2GTOOL_CONFIG="))


def test_a_configured_interface_is_checked_too() -> None:
    result = subprocess.run([sys.executable, "-m", "v2gtool", "deploy-files", "--print", "v2g.nft"],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "V2GTOOL_SLAC__IFACE": 'x";accept;#'})
    assert result.returncode == ExitCode.USAGE
    assert result.stderr == ("v2gtool: error: environment variable V2GTOOL_SLAC__IFACE: [slac] iface must be an "
                             "interface name without '\"', got 'x\";accept;#'\n")


def test_placeholders_refuse_unusable_values() -> None:
    with pytest.raises(ValueError, match="PLC interface 'a b' must be an interface name without ' '"):
        Placeholders(executable=Path("/usr/bin/v2gtool"), plc_interface="a b")
    with pytest.raises(ValueError, match="executable 'v2gtool' must be an absolute path"):
        Placeholders(executable=Path("v2gtool"))
    with pytest.raises(ValueError, match="SECC TCP port 15118 must be a Dynamic Port"):
        Placeholders(executable=Path("/usr/bin/v2gtool"), secc_tcp_port=15118)


def test_an_executable_path_with_a_space_is_quoted(tmp_path: Path) -> None:
    executable = tmp_path / "my dir" / "v2gtool"
    executable.parent.mkdir()
    executable.write_text("#!/bin/sh\n")
    executable.chmod(0o755)
    values = Placeholders(executable=executable)
    unit = render(lookup("evse-v2g.service"), values)
    assert f'ExecStart="{executable}" $V2GTOOL_ARGS' in unit
    profile = render(lookup("apparmor.v2gtool"), values)
    assert f'profile v2gtool "{executable}" flags=(enforce) {{' in profile and f'  "{executable}" r,' in profile
    analyze, parser = shutil.which("systemd-analyze"), shutil.which("apparmor_parser")
    if analyze is not None:
        (tmp_path / "evse-v2g.service").write_text(unit)
        verify = subprocess.run([analyze, "verify", "--man=no", str(tmp_path / "evse-v2g.service")],
                                capture_output=True, text=True, timeout=60)
        assert verify.returncode == 0, verify.stderr
    if parser is not None:
        (tmp_path / "v2gtool").write_text(profile)
        parsed = subprocess.run([parser, "--preprocess", str(tmp_path / "v2gtool")], capture_output=True, text=True,
                                timeout=60)
        assert parsed.returncode == 0, parsed.stderr


@pytest.mark.parametrize(("args", "opened"), [([], 50002), (["--tcp-port", "50003"], 50003)])
def test_v2g_nft_opens_the_configured_port_unless_given_one(args: list[str], opened: int) -> None:
    result = CliRunner().invoke(cli, ["deploy-files", "--print", "v2g.nft", *args],
                                env={"V2GTOOL_SDP__TCP_PORT": "50002"})
    assert result.exit_code == 0, result.output
    assert f"define V2G_TCP_PORT = {opened}\n" in result.output


def test_a_configured_port_outside_the_dynamic_ports_is_refused_when_the_config_is_read() -> None:
    """deploy-files needs no check of its own: ``[sdp] tcp_port`` is a Dynamic Port once loaded."""
    result = subprocess.run([sys.executable, "-m", "v2gtool", "deploy-files", "--print", "v2g.nft"],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "V2GTOOL_SDP__TCP_PORT": "8080"})
    assert result.returncode == ExitCode.USAGE
    assert result.stderr == ("v2gtool: error: environment variable V2GTOOL_SDP__TCP_PORT: [sdp] tcp_port must be "
                             "a Dynamic Port (49152-65535), got '8080'\n")
