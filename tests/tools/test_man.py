"""The man pages render without warnings, and every example in them is a valid command line."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import click
import pytest

from tests.tools.conftest import REPO, run_tool
from v2gtool.cli.main import cli
from v2gtool.exit_codes import ExitCode

PAGES = sorted((REPO / "man").glob("*.1"))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_groff_finds_nothing_to_warn_about(page: Path) -> None:
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed (apt-get install groff-base)")
    result = subprocess.run(["groff", "-man", "-ww", "-z", str(page)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0
    assert result.stderr == ""


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_man_renders_cleanly(page: Path) -> None:
    if shutil.which("man") is None:
        pytest.skip("man is not installed (apt-get install man-db)")
    result = subprocess.run(["man", "--warnings", "-l", str(page)], capture_output=True, text=True, timeout=30,
                            env={**os.environ, "MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat"})
    assert result.returncode == 0
    assert result.stderr == ""
    assert "EXIT STATUS" in result.stdout
    for code, _ in _documented_exit_codes(page.name):
        assert re.search(rf"^\s+{code}\s", result.stdout, re.MULTILINE), f"exit status {code} missing"


def _documented_exit_codes(page_name: str) -> list[tuple[str, str]]:
    """(code, meaning) as ``--help`` of the page's command lists them in its ``Exit codes:`` paragraph
    (help or epilog), else the table every command shares."""
    name = page_name.removesuffix(".1").removeprefix("v2gtool").removeprefix("-")
    command = cli.get_command(click.Context(cli), name) if name else None
    text = "\n\n".join(t for t in (command.help, command.epilog) if t) if command else ""
    block = re.search(r"^\s*Exit codes:\n((?:[ \t]+\S.*\n?)+)", text, re.MULTILINE)
    if block is None:
        return [(str(int(code)), code.meaning) for code in ExitCode]
    entries: list[tuple[str, str]] = []
    indent = len(block[1]) - len(block[1].lstrip())
    for line in block[1].splitlines():
        if re.match(rf"\s{{{indent}}}\d", line):
            code, meaning = line.split(maxsplit=1)
            entries.append((code, meaning))
        else:
            entries[-1] = (entries[-1][0], f"{entries[-1][1]} {line.strip()}")
    return entries


def _exit_status_section(page: Path) -> list[tuple[str, str]]:
    """(code, meaning) of a page's EXIT STATUS section, roff escapes undone."""
    section = page.read_text().split(".SH EXIT STATUS\n", 1)[1].split("\n.SH ", 1)[0]
    pairs = re.findall(r"^\.TP\n\\fB(\d+)\\fR\n(.*)$", section, re.MULTILINE)
    return [(code, meaning.replace("\\-", "-").replace("\\e", "\\")) for code, meaning in pairs]


def test_exit_status_is_what_help_documents(tmp_path: Path) -> None:
    """A command that lists its own exit codes (contactor, isolation-check, tls-verify) gets them in its
    man page, not the shared table that contradicts them; the others get the shared table."""
    run_tool("gen_man.py", tmp_path)
    pages = sorted(tmp_path.glob("*.1"))
    for page in pages:
        assert _exit_status_section(page) == _documented_exit_codes(page.name), page.name
    own = [p.name for p in pages if _documented_exit_codes(p.name)[0][1] != ExitCode.OK.meaning]
    assert {"v2gtool-contactor.1", "v2gtool-isolation-check.1", "v2gtool-tls-verify.1"} <= set(own)


def _example_commands(page: Path) -> list[list[str]]:
    """The v2gtool invocations in a page's EXAMPLES section, as argv (pipes, redirects, lists cut off)."""
    text = page.read_text()
    section = text.split(".SH EXAMPLES", 1)[1].split("\n.SH ", 1)[0] if ".SH EXAMPLES" in text else ""
    # The command lines are the verbatim blocks (.nf ... .fi); the rest is prose.
    blocks = re.findall(r"^\.nf\n(.*?)^\.fi$", section, re.MULTILINE | re.DOTALL)
    text = "\n".join(blocks).replace("\\-", "-").replace("\\e", "\\")
    commands: list[list[str]] = []
    for logical in text.replace("\\\n", " ").splitlines():
        substituted = re.findall(r"\$\(([^()]*)\)", logical)  # "$(v2gtool ...)" runs a command too
        for line in [re.sub(r"\$\([^()]*\)", "X", logical), *substituted]:
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            words = list(lexer)
            for start in (i for i, w in enumerate(words) if w == "v2gtool"):
                end = next((i for i in range(start, len(words)) if words[i][0] in "|;&<>()"), len(words))
                commands.append(words[start + 1 : end])
    return commands


def _validate(command: click.Command, argv: list[str], path: str) -> None:
    """Parse *argv* as *command* would, without converting values (files named in examples need not
    exist): unknown options, bad choices and unknown subcommands fail."""
    ctx = click.Context(command, info_name=path)
    opts, rest, _ = command.make_parser(ctx).parse_args(list(argv))
    for param in command.params:
        if isinstance(param.type, click.Choice) and param.name in opts:
            values = opts[param.name] if isinstance(opts[param.name], list) else [opts[param.name]]
            assert set(values) <= set(param.type.choices), f"{path}: {values} not in {param.type.choices}"
    if isinstance(command, click.Group) and rest:
        sub = command.get_command(ctx, rest[0])
        assert sub is not None, f"{path}: no subcommand {rest[0]!r}"
        _validate(sub, rest[1:], f"{path} {rest[0]}")


def test_every_example_parses_against_the_command_tree() -> None:
    examples = [(page, argv) for page in PAGES for argv in _example_commands(page)]
    for page, argv in examples:
        try:
            _validate(cli, argv, "v2gtool")
        except click.UsageError as exc:
            pytest.fail(f"{page.name}: example 'v2gtool {shlex.join(argv)}': {exc}")
    assert len(examples) >= 15


def test_example_validation_rejects_unknown_options() -> None:
    with pytest.raises(click.NoSuchOption):
        _validate(cli, ["doctor", "--no-such-option"], "v2gtool")
    with pytest.raises(AssertionError):
        _validate(cli, ["doctor", "--skip", "no-such-check"], "v2gtool")
