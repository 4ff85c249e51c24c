#!/usr/bin/env python3
"""Regenerate ``man/``: ``v2gtool.1`` and one ``v2gtool-COMMAND.1`` per subcommand, in roff (man(7)).

Everything comes from the click command tree at generation time: names, usage, options and their
help, and the command docstrings. A docstring paragraph that starts with ``Examples:`` (kept
verbatim by click's ``\\b`` marker) becomes the page's EXAMPLES section; the workflows of
``v2gtool(1)`` below appear once every command they use is registered. EXIT STATUS is the
``Exit codes:`` paragraph of the command's help or epilog where it documents its own (as ``--help``
shows it), else the table of :mod:`v2gtool.exit_codes`. ``tests/tools`` fails while the committed
pages differ from this output.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click

from v2gtool import __version__
from v2gtool.cli.main import cli
from v2gtool.exit_codes import ExitCode

REPO = Path(__file__).resolve().parent.parent
PROG = "v2gtool"
MANUAL = "v2gtool manual"


@dataclass(frozen=True)
class Workflow:
    """An example of v2gtool(1): a field task as a few commands; shown when *requires* are all registered."""

    title: str
    lines: tuple[str, ...]
    requires: frozenset[str]


WORKFLOWS = (
    Workflow("Before the first session on a new charger: check the machine, then install the hardened service.",
             ("sudo v2gtool doctor --interface eth1",
              "sudo v2gtool deploy-files --interface eth1 /",
              "sudo useradd --system --no-create-home --shell /usr/sbin/nologin v2g",
              "sudo systemctl daemon-reload && sudo systemctl enable --now evse-v2g.service"),
             frozenset({"doctor", "deploy-files"})),
    Workflow("A fleet script: report every failing check of every charger as one JSON line.",
             ("for host in $(cat chargers.txt); do",
              "  ssh \"$host\" v2gtool --json doctor \\",
              "    | jq -c --arg h \"$host\" 'select(.status == \"fail\") + {host: $h}'",
              "done"),
             frozenset({"doctor"})),
    Workflow("A charger that does not talk to the car, one step at a time: SLAC link, SDP, TLS chain.",
             ("sudo v2gtool evse-slac --iface eth1 --pcap slac.pcap     # match the car's modem",
              "sudo v2gtool sdp-discovery --iface eth1 --role evse --answers 1",
              "v2gtool tls-verify --chain /etc/v2g/certs/secc_iso20.pem --role secc --at 2027-01-01"),
             frozenset({"evse-slac", "sdp-discovery", "tls-verify"})),
    Workflow("From an EV test rig on the same cable: find the SECC, then try a TLS 1.3 handshake with it.",
             ("v2gtool --json sdp-discovery --iface eth1 | v2gtool tls-verify --from-sdp -",),
             frozenset({"sdp-discovery", "tls-verify"})),
    Workflow("A car stops with \"Expired Certificate\": usually the charger's clock, or an unreadable key.",
             ("v2gtool --json doctor | jq -r 'select(.check == \"clock\" or .check == \"certificates\")'",
              "timedatectl timesync-status"),
             frozenset({"doctor"})),
    Workflow("Capture a session on the PLC interface, then read its timing and messages.",
             ("sudo tcpdump -i eth1 -w session.pcapng     # while the car charges; Ctrl-C when done",
              "v2gtool pcap-decode --summary session.pcapng",
              "v2gtool --json pcap-decode --keylog keys.log session.pcapng | jq -c 'select(.event == \"V2GMessage\")'"),
             frozenset({"pcap-decode"})),
    Workflow("Decode the hex dump of a captured V2GTP stream, one message per line, and keep the charge loop.",
             ("v2gtool --json v2g-message-handler decode - < trace.hex \\",
              "  | jq -c 'select(has(\"DC_ChargeLoopReq\")) | .DC_ChargeLoopReq.EVPresentVoltage'",),
             frozenset({"v2g-message-handler"})),
    Workflow("Edit a message by hand and re-encode it with its V2GTP header, for replay to a peer.",
             ("v2gtool --json v2g-message-handler decode \\",
              "  01fe80040000001f8034042d166f29fb80ea560aebdbfb3062810012006164000a02002400c800 > req.json",
              "$EDITOR req.json",
              "v2gtool v2g-message-handler encode --v2gtp --file req.json"),
             frozenset({"v2g-message-handler"})),
    Workflow("Turn on completion for the running shell.",
             ('eval "$(v2gtool completion bash)"',),
             frozenset({"completion"})),
)

FILES = (
    ("/etc/v2g/v2gtool.toml", "Configuration (TOML, one table per area: [slac], [sdp], [pki], [hw], ...)."),
    ("/etc/v2g/certs/", "Certificates and private keys of this station (keys mode 0600)."),
    ("/etc/v2g/trust/certs/", "Trust anchors: V2G, OEM and MO root certificates."),
    ("/var/log/v2g/", "Traces and the journal of sessions; the only directory the service writes."),
)

ENVIRONMENT = (
    ("V2GTOOL_CONFIG", "Configuration file, as --config."),
    ("V2GTOOL_<TABLE>__<KEY>", "Overrides one key of one table of the configuration, e.g. V2GTOOL_SLAC__IFACE=eth1."),
    ("_V2GTOOL_COMPLETE", "Set by the completion scripts when they ask v2gtool for completions."),
    (
        "JOURNAL_STREAM",
        "Set by systemd when the output goes to the journal: serve, connect and session run then log each event "
        "as a structured journal record (SYSLOG_IDENTIFIER=v2gtool, V2G_* fields, e.g. "
        "journalctl -t v2gtool V2G_EVENT=SessionEnded) instead of text lines.",
    ),
)


# --- roff ------------------------------------------------------------------------------------


def esc(text: str) -> str:
    """Escape *text* for roff: backslashes, hyphens as minus signs, and a leading control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + text if text.startswith((".", "'")) else text


def bold(text: str) -> str:
    return f"\\fB{esc(text)}\\fR"


def verbatim(lines: list[str]) -> Iterator[str]:
    yield ".PP"
    yield ".RS 4"
    yield ".nf"
    yield from (esc(line) for line in lines)
    yield ".fi"
    yield ".RE"


@dataclass(frozen=True)
class Help:
    """A docstring split into prose paragraphs, verbatim blocks, the Examples and the Exit codes blocks."""

    blocks: tuple[tuple[bool, tuple[str, ...]], ...]  # (verbatim?, lines)
    examples: tuple[str, ...]
    exit_codes: tuple[tuple[str, str], ...]  # (code, meaning); empty: the command has no codes of its own


_EXIT_CODE_LINE = re.compile(r"(\d+)\s+(\S.*)")


def full_help(command: click.Command) -> str:
    """What ``--help`` shows as text: the help, then the epilog (where exit codes are often listed)."""
    return "\n\n".join(text for text in (command.help, command.epilog) if text)


def parse_exit_codes(lines: list[str]) -> tuple[tuple[str, str], ...]:
    """The ``CODE  meaning`` lines of an ``Exit codes:`` block; a more indented line continues a meaning."""
    entries: list[tuple[str, str]] = []
    for line in _dedent([line.rstrip() for line in lines if line.strip()]):
        match = _EXIT_CODE_LINE.fullmatch(line)
        if match:
            entries.append((match[1], match[2]))
        elif line[:1].isspace() and entries:
            code, meaning = entries[-1]
            entries[-1] = (code, f"{meaning} {line.strip()}")
        else:
            raise ValueError(f"Exit codes: {line!r} is not 'CODE  meaning' nor its continuation")
    return tuple(entries)


def split_help(text: str) -> Help:
    """Split click help text: ``\\b`` paragraphs are verbatim; one starting ``Examples:`` is the examples,
    one starting ``Exit codes:`` the command's own exit status."""
    blocks: list[tuple[bool, tuple[str, ...]]] = []
    examples: list[str] = []
    exit_codes: tuple[tuple[str, str], ...] = ()
    for paragraph in text.split("\n\n"):
        lines = paragraph.strip("\n").splitlines()
        if not lines:
            continue
        is_verbatim = lines[0].strip() == "\b"
        if is_verbatim:
            lines = lines[1:]
        if lines and lines[0].strip() == "Examples:":
            examples.extend(line.strip() for line in lines[1:] if line.strip())
        elif is_verbatim and lines and lines[0].strip() == "Exit codes:":
            exit_codes = parse_exit_codes(lines[1:])
        elif is_verbatim:
            blocks.append((True, tuple(_dedent(lines))))
        else:
            blocks.append((False, (" ".join(line.strip() for line in lines if line.strip()),)))
    return Help(tuple(blocks), tuple(examples), exit_codes)


def _dedent(lines: list[str]) -> list[str]:
    indent = min((len(x) - len(x.lstrip()) for x in lines if x.strip()), default=0)
    return [x[indent:] for x in lines]


def render_help(help_: Help, *, after_summary: bool = False) -> Iterator[str]:
    """The help text; *after_summary* drops the first paragraph where NAME already shows it."""
    for is_verbatim, lines in (help_.blocks[1:] or help_.blocks) if after_summary else help_.blocks:
        if is_verbatim:
            yield from verbatim(list(lines))
        else:
            yield ".PP"
            yield esc(lines[0])


def render_options(command: click.Command, ctx: click.Context) -> Iterator[str]:
    for param in command.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, text = record
        if isinstance(param, click.Argument) and not text:
            continue  # shown in SYNOPSIS; the command's help describes it
        yield ".TP"
        yield bold(names)
        yield esc(text) if text else "\\&"


def usage(command: click.Command, ctx: click.Context) -> str:
    pieces = " ".join(command.collect_usage_pieces(ctx))
    return f"{bold(ctx.command_path)} {esc(pieces)}"


def title(name: str, summary: str) -> Iterator[str]:
    yield f'.TH {esc(name.upper())} 1 "" "{PROG} {__version__}" "{MANUAL}"'
    yield ".SH NAME"
    yield f"{esc(name)} \\- {esc(summary)}"


def exit_status(own: tuple[tuple[str, str], ...] = ()) -> Iterator[str]:
    """The command's *own* exit codes when it lists them, else the meanings every command shares."""
    yield ".SH EXIT STATUS"
    for code, meaning in own or tuple((str(int(code)), code.meaning) for code in ExitCode):
        yield ".TP"
        yield f"\\fB{code}\\fR"
        yield esc(meaning)


def examples(lines: list[str]) -> Iterator[str]:
    if lines:
        yield ".SH EXAMPLES"
        yield from verbatim(lines)


def summary_of(command: click.Command) -> str:
    text = command.get_short_help_str(limit=200)
    if text.endswith("..."):  # click cut the first paragraph: the page would end mid-sentence
        raise SystemExit(f"gen_man: {command.name}: give the command a short_help (its summary is cut: {text!r})")
    return text.rstrip(".").removeprefix(f"{PROG}: ")


# --- pages -----------------------------------------------------------------------------------


def command_page(name: str, command: click.Command, parent: click.Context) -> str:
    """``v2gtool-NAME(1)``: one top-level subcommand, with its own subcommands when it is a group."""
    ctx = click.Context(command, info_name=name, parent=parent)
    help_ = split_help(full_help(command))
    out = [*title(f"{PROG}-{name}", summary_of(command))]
    out += [".SH SYNOPSIS", usage(command, ctx), ".SH DESCRIPTION", *render_help(help_, after_summary=True)]
    out += [".SH OPTIONS", *render_options(command, ctx)]
    example_lines = list(help_.examples)
    if isinstance(command, click.Group):
        out.append(".SH COMMANDS")
        for sub_name in command.list_commands(ctx):
            sub = command.get_command(ctx, sub_name)
            if sub is None:
                continue
            sub_ctx = click.Context(sub, info_name=sub_name, parent=ctx)
            sub_help = split_help(full_help(sub))
            if sub_help.exit_codes not in ((), help_.exit_codes):
                raise ValueError(f"{name} {sub_name}: its exit codes differ from those of {name}; one page "
                                 "has one EXIT STATUS")
            out += [".SS " + esc(sub_name), usage(sub, sub_ctx), *render_help(sub_help)]
            out += [".PP", "Options:", ".RS 4", *render_options(sub, sub_ctx), ".RE"]
            example_lines += sub_help.examples
    out += [*examples(example_lines), *exit_status(help_.exit_codes)]
    out += [".SH SEE ALSO", f"\\fB{PROG}\\fR(1)"]
    return "\n".join(out) + "\n"


def main_page(ctx: click.Context, names: list[str]) -> str:
    """``v2gtool(1)``: the group, its global options, the command list, workflows, files, exit codes."""
    help_ = split_help(cli.help or "")
    out = [*title(PROG, summary_of(cli))]
    out += [".SH SYNOPSIS", f"{bold(PROG)} [\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]...",
            ".SH DESCRIPTION", *render_help(help_, after_summary=True),
            ".SH OPTIONS", *render_options(cli, ctx), ".SH COMMANDS"]
    for name in names:
        command = cli.get_command(ctx, name)
        assert command is not None
        out += [".TP", f"\\fB{esc(name)}\\fR", f"{esc(summary_of(command))}. See \\fB{PROG}\\-{esc(name)}\\fR(1)."]
    registered = set(names)
    shown = [w for w in WORKFLOWS if w.requires <= registered]
    if shown:
        out.append(".SH EXAMPLES")
        for workflow in shown:
            out += [".PP", esc(workflow.title), *verbatim(list(workflow.lines))]
    out.append(".SH ENVIRONMENT")
    for var, text in ENVIRONMENT:
        out += [".TP", bold(var), esc(text)]
    out.append(".SH FILES")
    for path, text in FILES:
        out += [".TP", f"\\fI{esc(path)}\\fR", esc(text)]
    out += [*exit_status(), ".SH SEE ALSO"]
    out.append(",\n".join(f"\\fB{PROG}\\-{esc(n)}\\fR(1)" for n in names))
    return "\n".join(out) + "\n"


def generate(out: Path) -> list[Path]:
    """Write every page into *out*; return the paths written."""
    out.mkdir(parents=True, exist_ok=True)
    ctx = click.Context(cli, info_name=PROG)
    names = cli.list_commands(ctx)
    pages = {f"{PROG}.1": main_page(ctx, names)}
    for name in names:
        command = cli.get_command(ctx, name)
        assert command is not None
        pages[f"{PROG}-{name}.1"] = command_page(name, command, ctx)
    written = []
    for file_name, text in pages.items():
        path = out / file_name
        path.write_text(text)
        written.append(path)
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description="Regenerate the man pages of v2gtool from its click commands.")
    parser.add_argument("--out", type=Path, default=REPO / "man", help="output directory")
    args = parser.parse_args()
    for path in generate(args.out):
        print(path)


if __name__ == "__main__":
    main()
