"""``v2gtool v2g-message-handler``: decode, encode and look up V2G messages (EXI, V2GTP).

Pipelines: ``-`` reads one message per line (hex or encode's ``{"hex": ...}`` records for decode,
JSON for encode) and writes one line per message, so thousands of messages go through one process.
Blank lines and ``#`` comment lines of hex input are skipped. A bad line yields an error record in
its place, the rest is still processed, and the exit code is 1 at the end. Decode's JSON records name
the schema set beside the message (``"namespace"``), and encode takes it from there, so a whole -2 or
DIN trace, handshake included, goes through ``decode -n iso2 - | encode --v2gtp -``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import click
from rich.tree import Tree

from v2gtool import v2gtp
from v2gtool.cli.context import AppContext, app_context
from v2gtool.cli.lazy import LazyGroup
from v2gtool.cli.lines import NotJson, json_value, numbered_lines, stdin_text
from v2gtool.cli.output import emit_json, json_option, message_tree, use_json, wire_text
from v2gtool.errors import V2GToolError
from v2gtool.exi import api
from v2gtool.exi.errors import EXIError
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

HANDSHAKE = "apphand"  # the schema set of supportedAppProtocolReq/Res
NAMESPACE_KEY = "namespace"  # beside the root element in decode's JSON records: the set it was decoded with
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


Where = tuple[str, int]
"""Where an input message is: ``("line", N)`` of a text, ``("message", N)`` of a binary file (V2GTP
frames one after another, or one raw EXI message)."""


def _report_line_error(app: AppContext, as_json: bool, where: Where, exc: V2GToolError) -> None:
    """In line mode a bad line yields an error record in its place; the others are still processed."""
    unit, number = where
    if as_json:
        emit_json({"error": str(exc), unit: number})
    else:
        app.err_console.print(f"[red]{wire_text(f'{unit} {number}: {exc}')}[/red]", highlight=False, soft_wrap=True)


_V2GTP_START = bytes((v2gtp.PROTOCOL_VERSION, v2gtp.INVERSE_PROTOCOL_VERSION))
# The first byte of an EXI header: distinguishing bits 10 (EXI 1.0 section 5), 0x80 in ISO 15118.
_EXI_HEADER_FIRST_BYTES = range(0x80, 0xC0)


def _hex_message_lines(lines: Iterable[str]) -> Iterator[tuple[Where, str]]:
    """Numbered lines of hex input, blank and ``#`` comment lines skipped (a file and stdin alike)."""
    for number, line in numbered_lines(lines):
        if not line.lstrip().startswith("#"):
            yield ("line", number), line


def _file_messages(raw: bytes) -> Iterator[tuple[Where, str | bytes]]:
    """The messages of a ``--file``: V2GTP frames one after another (what ``encode --v2gtp --out``
    writes), one raw EXI message, or else text: hex lines. A binary file starts with the V2GTP
    version pair 0x01 0xFE or an EXI header byte 0x80-0xBF, neither of which starts a UTF-8 text; a
    text may start with a byte order mark, and a line with bytes that are no UTF-8 is a bad line."""
    if raw.startswith(_V2GTP_START):
        yield from _frames(raw)
    elif raw[:1] and raw[0] in _EXI_HEADER_FIRST_BYTES:
        yield ("message", 1), raw
    else:
        yield from _hex_message_lines(raw.decode("utf-8", errors="replace").splitlines())


def _frames(raw: bytes) -> Iterator[tuple[Where, bytes]]:
    """Each V2GTP frame of *raw*, as long as its header's payload length says; from a malformed
    header on, the rest is one bad message (decoding it names what is wrong)."""
    offset, number = 0, 0
    while offset < len(raw):
        number += 1
        try:
            _payload_type, length = v2gtp.parse_header(raw, offset=offset)
        except v2gtp.V2GTPError:
            yield ("message", number), raw[offset:]
            return
        end = offset + v2gtp.HEADER_LENGTH + length
        yield ("message", number), raw[offset:end]
        offset = end


def _decode_inputs(source: str | None, file: Path | None) -> Iterator[tuple[Where, str | bytes]]:
    if file is not None:
        try:
            raw = file.read_bytes()
        except OSError as exc:
            raise InputError(f"{file}: {exc.strerror}") from None
        yield from _file_messages(raw)
    elif source == "-":
        yield from _hex_message_lines(stdin_text())
    elif source is not None:
        yield ("line", 0), source
    else:
        raise click.UsageError("give a hex message, --file FILE, or - to read hex lines from stdin")


def _parse_hex(text: str) -> bytes:
    """The bytes of a hex message, or of a record ``{"hex": ...}`` as ``encode --json`` writes it;
    the error names no line (its reporter does)."""
    cleaned = "".join(text.split())
    if cleaned.startswith("{"):
        try:
            record = json_value(cleaned)
        except NotJson as exc:
            raise InputError(f"invalid JSON record: {exc}") from None
        if not isinstance(record, dict) or not isinstance(record.get("hex"), str):
            raise InputError('a JSON line must be a record of encode --json: {"hex": "..."}')
        cleaned = record["hex"]
    try:
        return bytes.fromhex(cleaned)
    except ValueError:
        raise InputError(f"not a hex string: {cleaned[:40]!r}") from None


def _decode(data: bytes, namespace: str | None, fragment: bool) -> api.Decoded:
    """*data* decoded in the schema set *namespace*, or else, when it is raw EXI or a V2GTP 0x8001
    frame, as the application handshake: supportedAppProtocolReq/Res open every -2, DIN and -20
    session, and 0x8001 is the handshake's payload type, which -2 and DIN give every message too
    (ISO 15118-20 Table 12), so a -2 or DIN trace decodes with its --namespace alone. Neither
    grammar decodes the other's messages (tried on the public -2, DIN and handshake vectors).
    Without *namespace*, a 0x8001 frame that does not decode as the handshake is taken for a -2 or
    DIN message, which does not say which of the two: the error asks for --namespace, as for raw EXI."""
    try:
        return api.decode_bytes(data, namespace, fragment)
    except EXIError as exc:
        if namespace is None and _payload_type(data) == v2gtp.PayloadType.EXI:
            raise EXIError(f"V2GTP 0x{v2gtp.PayloadType.EXI:04X} frame not a handshake message ({HANDSHAKE}): "
                           "-2 and DIN messages share 0x8001 and need --namespace iso2 or din") from None
        if namespace is None or fragment or lookup(namespace).short == HANDSHAKE:
            raise
        error = exc
    try:
        handshake = api.decode_bytes(data, HANDSHAKE)
    except V2GToolError:
        raise error from None
    if handshake.payload_type not in (None, v2gtp.PayloadType.EXI):
        raise error
    return handshake


def _payload_type(data: bytes) -> int | None:
    """The payload type of *data* when it starts with a well-formed V2GTP header, else None."""
    if not data.startswith(_V2GTP_START):
        return None
    try:
        return v2gtp.parse_header(data)[0]
    except v2gtp.V2GTPError:
        return None


@message_handler.command()
@click.argument("message", required=False)
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read from a file: hex lines, V2GTP frames one after another, or one raw EXI message.")
@click.option("--namespace", "-n", callback=_known_namespace,
              help=NAMESPACE_HELP + " Needed for raw EXI and for -2 and DIN; a -20 V2GTP frame says it itself. "
                   "A message not of this set but of the handshake (apphand) is decoded as such when raw "
                   "or framed as V2GTP 0x8001, the handshake's type, which -2 and DIN give every message.")
@click.option("--fragment", is_flag=True, help="Decode an EXI fragment (a signed element) instead of a document.")
@json_option
@click.pass_context
def decode(ctx: click.Context, message: str | None, file: Path | None, namespace: str | None, fragment: bool,
           json_out: bool) -> None:
    """Decode EXI or V2GTP-framed bytes (hex) into a message tree or JSON lines.

    Input lines may also be the {"hex": ...} records of encode --json; '#' lines are comments.
    A JSON record is the message with "namespace": the schema set it was decoded with, which
    encode reads back (so decode | encode carries a -2 or DIN trace, handshake included).
    """
    app = app_context(ctx)
    as_json = use_json(ctx, json_out)
    single = message not in (None, "-") and file is None
    failed = 0
    for where, content in _decode_inputs(message, file):
        try:
            data = content if isinstance(content, bytes) else _parse_hex(content)
            decoded = _decode(data, namespace, fragment)
        except V2GToolError as exc:
            if single:
                raise
            failed += 1
            _report_line_error(app, as_json, where, exc)
            continue
        document = decoded.document
        if as_json:
            emit_json({NAMESPACE_KEY: decoded.namespace.short, **document})
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
            text = file.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InputError(f"{file}: not UTF-8 JSON text (byte {exc.start}: 0x{exc.object[exc.start]:02x})") from None
        except OSError as exc:
            raise InputError(f"{file}: {exc.strerror}") from None
        yield from _json_file_inputs(text)
    elif source == "-":
        yield from numbered_lines(stdin_text())
    elif source is not None:
        yield 0, source
    else:
        raise click.UsageError("give a JSON message, --file FILE, or - to read JSON lines from stdin")


def _json_file_inputs(text: str) -> Iterator[tuple[int, str]]:
    """A file's JSON messages: the whole text when it is one (possibly pretty-printed) JSON document,
    else one per non-blank line (JSON lines), as from stdin. A text that is neither is JSON lines with
    bad lines when at least half of its lines are JSON objects of their own (a line of a
    pretty-printed document seldom is one), else one broken document: its error names where it broke."""
    try:
        json_value(text)
    except NotJson as exc:
        lines = list(numbered_lines(text.splitlines()))
        if 2 * sum(_is_json_object(line) for _, line in lines) >= len(lines):
            yield from lines
        else:
            yield exc.line, text
    else:
        yield 1, text


def _is_json_object(text: str) -> bool:
    try:
        return isinstance(json_value(text), dict)
    except NotJson:
        return False


def _message_record(text: str) -> tuple[Any, str | None]:
    """The message of a JSON line, and the schema set its record names: decode --json writes the
    message with ``"namespace"`` beside its root element (no schema names an element so)."""
    try:
        document = json_value(text)
    except NotJson as exc:
        raise InputError(f"invalid JSON: {exc}") from None
    if not isinstance(document, dict) or NAMESPACE_KEY not in document:
        return document, None
    message = {key: value for key, value in document.items() if key != NAMESPACE_KEY}
    recorded = document[NAMESPACE_KEY]
    if not isinstance(recorded, str):
        raise InputError(f'"{NAMESPACE_KEY}" must name a schema set: {NAMESPACE_HELP}')
    return message, recorded


@message_handler.command()
@click.argument("message", required=False)
@click.option("--file", "file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Read JSON from a file: one document, or JSON lines.")
@click.option("--namespace", "-n", callback=_known_namespace,
              help=NAMESPACE_HELP + ' Default: the record\'s "namespace" (decode --json writes it), else the set '
                   "that declares the root element (V2G_Message is both iso2 and din: give it).")
@click.option("--fragment", is_flag=True, help="Encode an EXI fragment (for signatures) instead of a document.")
@click.option("--v2gtp", "framed", is_flag=True, help="Add the V2GTP header with the schema set's payload type.")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path),
              help="Write binary bytes to this file instead of hex lines to stdout: one message, "
                   "or with --v2gtp any number of frames (decode --file reads them back).")
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
            document, recorded = _message_record(text)
            data = api.encode_json(document, namespace or recorded, fragment, framed)
        except V2GToolError as exc:
            if single:
                raise
            failed += 1
            _report_line_error(app, as_json, ("line", line), exc)
            continue
        if out is not None:
            if chunks and not framed:  # raw EXI says nowhere where a message ends
                raise click.UsageError("--out without --v2gtp holds one message: add --v2gtp to write several")
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
    """The fields of *t*: each one's type, whether it is required and repeated, and for the members
    of a choice the grammar requires exactly one of, the whole choice (``one_of``)."""
    fields: dict[str, Any] = {}
    required = {f.name for f in dataclasses.fields(t.cls) if f.default is dataclasses.MISSING}
    choice_of = {name: choice for choice in _required_choices(t) for name in choice}
    for spec in t.fields:
        info: dict[str, Any] = {"required": spec.name in required, "repeated": spec.is_list}
        if spec.name in choice_of:
            info["one_of"] = list(choice_of[spec.name])
        if spec.kind == SE_COMPLEX:
            sub = g.types[spec.arg]
            info["type"] = sub.cls.__name__
            if depth > 1:
                info["fields"] = _describe_type(g, sub, depth - 1)
        else:
            info["type"] = _describe_dtype(g, g.dtypes[spec.arg])
        fields[spec.name] = info
    return fields


def _required_choices(t: TypeGrammar) -> list[tuple[str, ...]]:
    """The sets of optional fields of *t* of which every message has exactly one: an xs:choice of
    elements, or an element reference standing for its substitution group (ISO 15118-20's control
    modes, EXI 1.0 section 8.5.4.1.6), as the grammar shows them: no way through the type's states
    avoids the set, and once one member is taken none of them may follow. In field order."""
    order = {spec.name: index for index, spec in enumerate(t.fields)}
    choices: list[tuple[str, ...]] = []
    for productions in t.encode:
        names = frozenset(productions)
        if "" in names or len(names) < 2 or names & t.required:
            continue
        avoidable = _reachable(t, {0}, names) & _ends(t)
        repeatable = _followers(t, {productions[name][4] for name in names}) & names
        if avoidable or repeatable:
            continue
        choice = tuple(sorted(names, key=order.__getitem__))
        if choice not in choices:
            choices.append(choice)
    return choices


def _reachable(t: TypeGrammar, start: set[int], avoid: frozenset[str]) -> set[int]:
    """The states of *t* reachable from *start* without taking a field in *avoid*."""
    seen, todo = set(start), list(start)
    while todo:
        for name, entry in t.encode[todo.pop()].items():
            if name and name not in avoid and entry[4] not in seen:
                seen.add(entry[4])
                todo.append(entry[4])
    return seen


def _ends(t: TypeGrammar) -> set[int]:
    """The states of *t* where the element may end."""
    return {state for state, productions in enumerate(t.encode) if "" in productions}


def _followers(t: TypeGrammar, states: set[int]) -> frozenset[str]:
    """Every field that may be taken from *states* on."""
    return frozenset(name for state in _reachable(t, states, frozenset()) for name in t.encode[state] if name)


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
    """Add *fields* below *node*; the members of a required choice below one node that says so."""
    choices: dict[tuple[str, ...], Tree] = {}
    for name, info in fields.items():
        parent, flags = node, []
        if "one_of" in info:
            choice = tuple(info["one_of"])
            if choice not in choices:
                choices[choice] = node.add("[yellow]one of[/yellow] (required):")
            parent = choices[choice]
        elif not info["required"]:
            flags.append("optional")
        if info["repeated"]:
            flags.append("repeated")
        suffix = f" [yellow]({', '.join(flags)})[/yellow]" if flags else ""
        child = parent.add(f"[cyan]{name}[/cyan]: {info['type']}{suffix}")
        if "fields" in info:
            _fill_schema(child, info["fields"])

