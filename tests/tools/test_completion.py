"""The completion scripts load in their shells and complete from the live command tree."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from tests.tools.conftest import REPO
from v2gtool.cli.completion import FILE_NAMES, SHELLS, complete_interfaces
from v2gtool.cli.main import cli


def _shell(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"{name} is not installed (apt-get install {name}; CI: tools/install.sh --peers)")
    return path


@pytest.mark.parametrize("shell", SHELLS)
def test_completion_command_prints_the_committed_script(shell: str) -> None:
    result = CliRunner().invoke(cli, ["completion", shell])
    assert result.exit_code == 0
    assert result.output == (REPO / "completions" / FILE_NAMES[shell]).read_text()


@pytest.mark.parametrize("flag", [["--json", "completion", "zsh"], ["completion", "zsh", "--json"]])
def test_completion_under_json_is_one_record_with_the_script(flag: list[str]) -> None:
    result = CliRunner().invoke(cli, flag)
    assert result.exit_code == 0
    assert json.loads(result.output) == {"shell": "zsh", "file": "_v2gtool",
                                         "script": (REPO / "completions" / "_v2gtool").read_text()}


def test_unknown_shell_is_a_usage_error() -> None:
    result = CliRunner().invoke(cli, ["completion", "tcsh"])
    assert result.exit_code == 2
    assert "tcsh" in result.output


def test_bash_completes_subcommands_and_options(path_env: dict[str, str]) -> None:
    bash = _shell("bash")
    script = REPO / "completions" / FILE_NAMES["bash"]
    probe = (
        f"source {script}\n"
        "complete -p v2gtool\n"
        "COMP_WORDS=(v2gtool v2g-message-handler de); COMP_CWORD=2; COMPREPLY=(); _v2gtool_completion v2gtool\n"
        'echo "sub:${COMPREPLY[*]}"\n'
        "COMP_WORDS=(v2gtool doctor --sk); COMP_CWORD=2; COMPREPLY=(); _v2gtool_completion v2gtool\n"
        'echo "opt:${COMPREPLY[*]}"\n'
        "COMP_WORDS=(v2gtool doctor --skip fi); COMP_CWORD=3; COMPREPLY=(); _v2gtool_completion v2gtool\n"
        'echo "choice:${COMPREPLY[*]}"\n'
        "COMP_WORDS=(v2gtool doctor --interface l); COMP_CWORD=3; COMPREPLY=(); _v2gtool_completion v2gtool\n"
        'echo "iface:${COMPREPLY[*]}"\n'
    )
    result = subprocess.run([bash, "--norc", "--noprofile", "-c", probe], capture_output=True, text=True,
                            env=path_env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "complete -o nosort -F _v2gtool_completion v2gtool" in result.stdout
    assert "sub:decode" in result.stdout
    assert "opt:--skip" in result.stdout
    assert "choice:firewall" in result.stdout
    assert "iface:lo" in result.stdout.split()  # from this machine's /sys/class/net


def test_interface_completion_lists_interfaces_with_their_state(tmp_path: Path) -> None:
    for name, state in (("eth0", "up"), ("eth1", "down"), ("lo", "unknown")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "operstate").write_text(state + "\n")
    ctx = click.Context(cli)
    items = complete_interfaces(ctx, click.Option(["--interface"]), "eth", sys_class_net=tmp_path)
    assert [(i.value, i.help) for i in items] == [("eth0", "up"), ("eth1", "down")]


def test_zsh_registers_the_completion_function(path_env: dict[str, str]) -> None:
    zsh = _shell("zsh")
    script = REPO / "completions" / FILE_NAMES["zsh"]
    probe = f"autoload -Uz compinit && compinit -u -D && source {script} && print -r -- ${{_comps[v2gtool]}}"
    result = subprocess.run([zsh, "-f", "-c", probe], capture_output=True, text=True, env=path_env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "_v2gtool_completion"


def test_fish_completes_subcommands(path_env: dict[str, str]) -> None:
    fish = _shell("fish")
    script = REPO / "completions" / FILE_NAMES["fish"]
    probe = f"source {script}; complete -C 'v2gtool v2g-message-handler en'; complete -C 'v2gtool do'"
    result = subprocess.run([fish, "--no-config", "-c", probe], capture_output=True, text=True,
                            env=path_env, timeout=60)
    assert result.returncode == 0, result.stderr
    words = {line.split("\t")[0] for line in result.stdout.splitlines()}
    assert {"encode", "doctor"} <= words
