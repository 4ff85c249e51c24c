"""``v2gtool v2g-message-handler``: decode, encode and look up V2G messages (EXI, V2GTP).

Pipelines: ``-`` reads one message per line (hex or encode's ``{"hex": ...}`` records for decode,
JSON for encode) and writes one line per message, so thousands of messages go through one process.
Blank lines and ``#`` comment lines of hex input are skipped. A bad line yields an error record in
its place, the rest is still processed, and the exit code is 1 at the end.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import click
from rich.tree import Tree

from v2gtool.cli.context import AppContext, app_context
from v2gtool.cli.lazy import LazyGroup
from v2gtool.cli.output import emit_json, json_option, message_tree, use_json, wire_text
from v2gtool.errors import V2GToolError
from v2gtool.exi import api
from v2gtool.exi.grammar import (
    BINARY,
    BOOL,
    ENUM,
    INT,
    LIST,
    NBIT,
    SE_COMPLEX,
    STRING,
    UINT,
    DType,
    SchemaGrammar,
    TypeGrammar,
)
from v2gtool.exi.namespaces import NAMESPACES, grammar, lookup

NAMESPACE_HELP = "Schema URN or short name: " + ", ".join(n.short for n in NAMESPACES) + "."


class InputError(V2GToolError):
    """An input line or file is not hex / JSON."""


def _known_namespace(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--namespace``: an unknown schema set is a usage error of the option, not of every line."""
    if value is not None:
        try:
            lookup(value)
        except V2GToolError as exc:
            raise click.BadParameter(str(exc), ctx, param) from None
    return value


@click.group(
    "v2g-message-handler",
    cls=LazyGroup,
    # serve / connect pull in sockets, TLS, SLAC and the plant: not for every decode in a pipeline
    lazy_subcommands={"serve": "v2gtool.cli.live:serve", "connect": "v2gtool.cli.live:connect"},
)
def message_handler() -> None:
    """Decode, encode and look up ISO 15118-20 messages (EXI, optionally V2GTP-framed).

    \b
    Examples:
      v2gtool v2g-message-handler decode 01fe8004000000...
      v2gtool --json v2g-message-handler decode - < messages.hex | jq .
      v2gtool v2g-message-handler encode '{"SessionStopReq": {...}}' --v2gtp
      v2gtool v2g-message-handler schema DC_ChargeLoopReq
      sudo v2gtool v2g-message-handler serve --iface eth1 --rt --cpu 1
    """


def _report_line_error(app: AppContext, as_json: bool, line: int, exc: V2GToolError) -> None:
    """In line mode a bad line yields an error record in its place; the others are still processed."""
    if as_json:
        emit_json({"error": str(exc), "line": line})
    else:
        app.err_console.print(f"[red]{wire_text(f'line {line}: {exc}')}[/red]", highlight=False, soft_wrap=True)


_TEXT_BYTES = frozenset(range(0x20, 0x7F)) | frozenset(b"\t\r\n")


def _hex_message_lines(lines: Iterable[str]) -> Iterator[tuple[int, str]]:
    """Numbered lines of hex input, blank and ``#`` comment lines skipped (a file and stdin alike)."""
    for i, line in enumerate(lines, 1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield i, line


def _hex_lines(source: str | None, file: Path | None) -> Iterator[tuple[int, str]]:
    if file is not None:
        raw = file.read_bytes()
        if _TEXT_BYTES.issuperset(raw):  # hex lines
            yield from _hex_message_lines(raw.decode("ascii").splitlines())
        else:  # a binary file holds one message (EXI starts 0x80, V2GTP 0x01 0xFE: never text)
            yield 1, raw.hex()
    elif source == "-":
        yield from _hex_message_lines(sys.stdin)
    elif source is not None:
        yield 0, source
    else:
        raise click.UsageError("give a hex message, --file FILE, or - to read hex lines from stdin")


def _parse_hex(text: str) -> bytes:
    """The bytes of a hex message, or of a record ``{"hex": ...}`` as ``encode --json`` writes it;
    the error names no line (its reporter does)."""
    cleaned = "".join(text.split())
    if cleaned.startswith("{"):
        try:
            record = json.loads(cleaned)
        except json.JSONDecodeError as exc:
            raise InputError(f"invalid JSON record: {exc}") from None
        if not isinstance(record, dict) or not isinstance(record.get("hex"), str):
            raise InputError('a JSON line must be a record of encode --json: {"hex": "..."}')
        cleaned = record["hex"]
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise InputError(f"not a hex string: {cleaned[:40]!r}") from None


@message_handler.command()
@click.argument("message", required=False)
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read from a file: hex lines, or one binary message.")
@click.option("--namespace", "-n", callback=_known_namespace,
              help=NAMESPACE_HELP + " Needed for raw EXI; V2GTP says it itself.")
@click.option("--fragment", is_flag=True, help="Decode an EXI fragment (a signed element) instead of a document.")
@json_option
@click.pass_context
def decode(ctx: click.Context, message: str | None, file: Path | None, namespace: str | None, fragment: bool,
           json_out: bool) -> None:
    """Decode EXI or V2GTP-framed bytes (hex) into a message tree or JSON lines.

    Input lines may also be the {"hex": ...} records of encode --json; '#' lines are comments.
    """
    app = app_context(ctx)
    as_json = use_json(ctx, json_out)
    single = message not in (None, "-") and file is None
    failed = 0
    for line, text in _hex_lines(message, file):
        try:
            decoded = api.decode_bytes(_parse_hex(text), namespace, fragment)
        except V2GToolError as exc:
            if single:
                raise
            failed += 1
            _report_line_error(app, as_json, line, exc)
            continue
        document = decoded.document
        if as_json:
            emit_json(document)
        else:
            title = f"[bold]{decoded.name}[/bold]  [dim]{decoded.namespace.urn}"
            if decoded.payload_type is not None:
                title += f", V2GTP 0x{decoded.payload_type:04X}"
            app.console.print(message_tree(title + "[/dim]", document[decoded.name]))
    if failed:
        ctx.exit(1)


def _json_inputs(source: str | None, file: Path | None) -> Iterator[tuple[int, str]]:
    if file is not None:
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(f"{file}: not UTF-8 JSON text (byte {exc.start}: 0x{exc.object[exc.start]:02x})") from None
        yield from _json_file_inputs(text)
    elif source == "-":
        for i, line in enumerate(sys.stdin, 1):
            if line.strip():
                yield i, line
    elif source is not None:
        yield 0, source
    else:
        raise click.UsageError("give a JSON message, --file FILE, or - to read JSON lines from stdin")


def _json_file_inputs(text: str) -> Iterator[tuple[int, str]]:
    """A file's JSON messages: the whole text when it is one (possibly pretty-printed) JSON document,
    else one per non-blank line (JSON lines). A text that is neither, whose first line is no JSON
    value of its own, is taken as one broken document: its error names the line and column."""
    try:
        json.loads(text)
    except json.JSONDecodeError as exc:
        lines = [(i, line) for i, line in enumerate(text.splitlines(), 1) if line.strip()]
        if exc.msg != "Extra data" and lines:
            try:
                json.loads(lines[0][1])
            except json.JSONDecodeError:
                yield exc.lineno, text  # one document, broken: its parse error says where
                return
        yield from lines
    else:
        yield 1, text


@message_handler.command()
@click.argument("message", required=False)
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read JSON from a file: one document, or JSON lines.")
@click.option("--namespace", "-n", callback=_known_namespace,
              help=NAMESPACE_HELP + " Default: the set that declares the root element "
                   "(V2G_Message is both iso2 and din: give it).")
@click.option("--fragment", is_flag=True, help="Encode an EXI fragment (for signatures) instead of a document.")
@click.option("--v2gtp", "framed", is_flag=True, help="Add the V2GTP header with the schema set's payload type.")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write binary bytes to this file instead of hex lines to stdout.")
@json_option
@click.pass_context
def encode(ctx: click.Context, message: str | None, file: Path | None, namespace: str | None, fragment: bool,
           framed: bool, out: Path | None, json_out: bool) -> None:
    """Encode messages in the JSON form into EXI: one hex line per message."""
    app = app_context(ctx)
    as_json = use_json(ctx, json_out)
    single = message not in (None, "-") and file is None
    failed = 0
    chunks: list[bytes] = []
    for line, text in _json_inputs(message, file):
        try:
            try:
                document = json.loads(text)
            except json.JSONDecodeError as exc:
                raise InputError(f"invalid JSON: {exc}") from None
            data = api.encode_json(document, namespace, fragment, framed)
        except V2GToolError as exc:
            if single:
                raise
            failed += 1
            _report_line_error(app, as_json, line, exc)
            continue
        if out is not None:
            chunks.append(data)
        elif as_json:
            emit_json({"hex": data.hex()})
        else:
            click.echo(data.hex())
    if out is not None:
        try:
            out.write_bytes(b"".join(chunks))
        except OSError as exc:
            raise V2GToolError(f"cannot write {out}: {exc.strerror}") from None
    if failed:
        ctx.exit(1)


@message_handler.command()
@click.argument("message_name", required=False)
@click.option("--namespace", "-n", callback=_known_namespace, help=NAMESPACE_HELP)
@click.option("--depth", type=click.IntRange(min=1), default=4, show_default=True,
              help="Expand nested types down to this depth.")
@json_option
@click.pass_context
def schema(ctx: click.Context, message_name: str | None, namespace: str | None, depth: int, json_out: bool) -> None:
    """List the messages of a namespace, or show one message's fields, types, ranges and optionality."""
    app = app_context(ctx)
    as_json = use_json(ctx, json_out)
    if message_name is None:
        sets = [lookup(namespace)] if namespace else list(NAMESPACES)
        listing = {ns.urn: grammar(ns.short).messages() for ns in sets}
        if as_json:
            emit_json(listing)
            return
        for ns in sets:
            app.console.print(f"[bold]{ns.short}[/bold] [dim]{ns.urn}[/dim]")
            for name in listing[ns.urn]:
                app.console.print(f"  {name}")
        return
    ns = lookup(namespace) if namespace else api.namespace_of_message(message_name)
    g = grammar(ns.short)
    entry = next((e for e in (*g.globals, *g.fragments) if e[0] == message_name and e[1] >= 0), None)
    if entry is None:
        raise V2GToolError(f"{message_name} is not an element of {ns.short}")
    if entry[1] != SE_COMPLEX:
        description: Any = _describe_dtype(g, g.dtypes[entry[2]])
    else:
        description = _describe_type(g, g.types[entry[2]], depth)
    if as_json:
        emit_json({message_name: description})
        return
    if isinstance(description, str):  # an element of simple type (DigestValue, EVCCID): its type alone
        app.console.print(f"[bold]{message_name}[/bold]: {description} [dim]{ns.urn}[/dim]")
        return
    tree = Tree(f"[bold]{message_name}[/bold] [dim]{ns.urn}[/dim]")
    _fill_schema(tree, description)
    app.console.print(tree)


def _describe_type(g: SchemaGrammar, t: TypeGrammar, depth: int) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    required = {f.name for f in dataclasses.fields(t.cls) if f.default is dataclasses.MISSING}
    for spec in t.fields:
        info: dict[str, Any] = {"required": spec.name in required, "repeated": spec.is_list}
        if spec.kind == SE_COMPLEX:
            sub = g.types[spec.arg]
            info["type"] = sub.cls.__name__
            if depth > 1:
                info["fields"] = _describe_type(g, sub, depth - 1)
        else:
            info["type"] = _describe_dtype(g, g.dtypes[spec.arg])
        fields[spec.name] = info
    return fields


def _describe_dtype(g: SchemaGrammar, dt: DType) -> str:
    kind, a, b, lo, hi = dt
    if kind in (NBIT, UINT, INT):
        low = "-inf" if lo is None else str(lo)
        high = "inf" if hi is None else str(hi)
        return f"integer [{low}, {high}]" + (f" ({a}-bit)" if kind == NBIT else "")
    if kind == BOOL:
        return "boolean"
    if kind == ENUM:
        return "enum: " + " | ".join(m.value for m in b)
    if kind == BINARY:
        return f"{'base64Binary' if b else 'hexBinary'} as hex, {lo or 0}..{hi if hi is not None else 'any'} bytes"
    if kind == STRING:
        return f"string, {lo or 0}..{hi if hi is not None else 'any'} characters"
    if kind == LIST:
        return f"list of {_describe_dtype(g, g.dtypes[a])}"
    return "unknown"


def _fill_schema(node: Tree, fields: dict[str, Any]) -> None:
    for name, info in fields.items():
        flags = []
        if not info["required"]:
            flags.append("optional")
        if info["repeated"]:
            flags.append("repeated")
        suffix = f" [yellow]({', '.join(flags)})[/yellow]" if flags else ""
        child = node.add(f"[cyan]{name}[/cyan]: {info['type']}{suffix}")
        if "fields" in info:
            _fill_schema(child, info["fields"])

