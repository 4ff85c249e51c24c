"""Round 3 of doctor: the firewall fix installs the snippet for the interface and port it checked."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.tools.test_firewall import Namespace, netns  # noqa: F401  (netns: the fixture)
from v2gtool.cli.main import cli
from v2gtool.doctor.checks import Settings, check_firewall
from v2gtool.doctor.environment import CommandResult, Environment
from v2gtool.doctor.findings import Status

SETTINGS = Settings(plc_interface="hwlva", certs_dir=Path("/nonexistent"), trust_dir=Path("/nonexistent"),
                    secc_tcp_port=50000)


def _environment(answer: CommandResult | None) -> Environment:
    def run(argv: Sequence[str]) -> CommandResult | None:
        return answer

    return Environment(run=run)


def _rendered_by_the_fix(fix: str, tmp_path: Path) -> str:
    """What the fix's ``v2gtool deploy-files ...`` writes, run under an empty configuration (so
    nothing but the fix itself can supply the interface and the port)."""
    command, redirect, rest = fix.partition(" > ")
    assert redirect and rest.endswith("&& nft -f /etc/nftables.d/v2g.nft")
    argv = shlex.split(command)
    assert argv[:2] == ["v2gtool", "deploy-files"]
    config = tmp_path / "empty.toml"
    config.touch()
    result = CliRunner().invoke(cli, ["--config", str(config), *argv[1:]])
    assert result.exit_code == 0, result.output
    return result.output


def test_the_fix_for_a_missing_nft_carries_the_checked_interface_and_port(tmp_path: Path) -> None:
    finding = check_firewall(_environment(None), SETTINGS)
    assert finding.status is Status.WARN and finding.fix is not None
    nft = _rendered_by_the_fix(finding.fix.removeprefix("apt-get install nftables; then "), tmp_path)
    assert 'define PLC_IF = "hwlva"\n' in nft and "define V2G_TCP_PORT = 50000\n" in nft


@pytest.mark.netns
def test_loading_what_the_fix_writes_makes_the_check_pass(netns: Namespace, tmp_path: Path) -> None:  # noqa: F811
    failing = check_firewall(_environment(netns.load("")), SETTINGS)
    assert failing.status is Status.FAIL and failing.fix is not None
    loaded = netns.load(_rendered_by_the_fix(failing.fix, tmp_path))
    assert check_firewall(_environment(loaded), SETTINGS).summary == "only TCP 50000, UDP 15118 open on hwlva"
