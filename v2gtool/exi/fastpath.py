"""Straight-line decoders of complex types into the JSON message form, generated from the grammar tables.

:class:`v2gtool.exi.codec.Decoder` walks a type's grammar table production by production; that walk
is what ``pcap-decode`` spends most of its time in. Here each complex type's normalised grammar
(EXI 1.0 section 8.5.4.2, the same tables) becomes one Python function, compiled on first use:
states are tested in order inside one loop (a grammar that only moves forward takes one pass),
event codes, bit widths, masks, offsets and enumeration names are constants, and a fixed-width
simple element (CH, value, EE) is one field as in the codec.

These functions know only the well-formed case. At the first thing they do not expect (truncation,
an undeclared event, a bad EE code, a missing required field, a wildcard) they give up, and
:func:`decode_document` returns ``None``: the caller then decodes the stream with the table-driven
decoder, which is the reference and names the error. The result of a decoder here is therefore
always the one the table-driven decoder returns (property-tested in ``tests/exi``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from v2gtool.exi.errors import EXIDecodeError
from v2gtool.exi.grammar import (
    AT,
    CH,
    EE,
    FIXED_BOOL,
    FIXED_ENUM,
    SE_COMPLEX,
    SE_FIXED,
    SE_SIMPLE,
    SE_VARINT,
    SchemaGrammar,
    TypeGrammar,
)

if TYPE_CHECKING:
    from v2gtool.exi.codec import Decoder

# (decoder, stream as int, its length in bits, bit position) -> (value, position after it)
TypeDecoder = Callable[[Any, int, int, int], tuple[dict[str, Any], int]]


class _GiveUp(Exception):
    """The stream is not what the straight-line decoder handles: the table-driven decoder decides."""


_GIVE_UP = _GiveUp()


def decode_document(decoder: Decoder, schema: SchemaGrammar) -> tuple[str, Any] | None:
    """``(root name, JSON form)`` of the document in *decoder*'s stream, or ``None`` to fall back.

    *decoder* is a ``codec.Decoder`` in JSON mode, positioned after the EXI header.
    """
    reader = decoder.reader
    try:
        code = reader.read(schema.global_width)
        if code >= len(schema.globals):
            return None
        name, kind, arg, _own = schema.globals[code]
        if kind != SE_COMPLEX or arg < 0:
            return None
        value, reader.pos = _type_decoders(schema)[arg](decoder, reader.value, reader.bits, reader.pos)
    except (_GiveUp, EXIDecodeError, RecursionError):
        return None
    if not reader.remaining_padding_ok():
        return None
    return name, value


_TABLES: dict[SchemaGrammar, list[TypeDecoder]] = {}  # schema sets live as long as the process


def _type_decoders(schema: SchemaGrammar) -> list[TypeDecoder]:
    """The schema set's table of type decoders; each entry compiles its type on its first call."""
    table = _TABLES.get(schema)
    if table is None:
        table = _TABLES[schema] = [_compile_on_first_call(schema, index) for index in range(len(schema.types))]
    return table


def _compile_on_first_call(schema: SchemaGrammar, index: int) -> TypeDecoder:
    def first_call(decoder: Any, stream: int, total: int, pos: int) -> tuple[dict[str, Any], int]:
        table = _type_decoders(schema)
        table[index] = compiled = _compile(schema.types[index], table)
        return compiled(decoder, stream, total, pos)
    return first_call


def _compile(grammar: TypeGrammar, table: list[TypeDecoder]) -> TypeDecoder:
    """The straight-line decoder of one complex type (see the module docstring)."""
    constants: dict[str, Any] = {"GIVE_UP": _GIVE_UP, "TYPES": table, "REQUIRED": grammar.required,
                                 "ORDER": tuple(spec.name for spec in grammar.fields)}
    lines = ["def decode(d, stream, total, pos):", "    v = {}", "    state = 0", "    while state >= 0:"]
    for number, (width, prods) in enumerate(grammar.decode_json):
        lines.append(f"        if state == {number}:")
        if width:
            lines += [f"            end = pos + {width}",
                      "            if end > total:",
                      "                raise GIVE_UP",
                      f"            code = (stream >> (total - end)) & {(1 << width) - 1}",
                      "            pos = end"]
        for code, production in enumerate(prods):
            body = _production(production, grammar, constants, f"E{number}_{code}")
            if width:
                lines.append(f"            {'if' if code == 0 else 'elif'} code == {code}:")
                lines += ["    " + line for line in body]
            else:
                lines += body
                break  # width 0: the one production there is
        if width:
            lines += ["            else:", "                raise GIVE_UP"]
    lines += ["    if not v.keys() >= REQUIRED:", "        raise GIVE_UP"]
    if not grammar.in_field_order:
        lines.append("    v = {name: v[name] for name in ORDER if name in v}")
    lines.append("    return v, pos")
    namespace = dict(constants)  # the source above holds only numbers and the schema's own names
    exec(compile("\n".join(lines), f"<EXI decoder of {grammar.cls.__name__}>", "exec"), namespace)
    decode: TypeDecoder = namespace["decode"]
    return decode


def _production(production: tuple[int, str, int, int, int, Any], grammar: TypeGrammar, constants: dict[str, Any],
                label: str) -> list[str]:
    """The lines (indented for a state's block) that take one production and set the next state."""
    kind, name, arg, nxt, conv, extra = production
    pad = " " * 12
    if kind == EE:
        return [f"{pad}state = -1"]
    if kind == SE_FIXED:
        lines = [f"{pad}end = pos + {arg}",
                 f"{pad}if end > total:",
                 f"{pad}    raise GIVE_UP",
                 f"{pad}f = (stream >> (total - end)) & {(1 << arg) - 1}",
                 f"{pad}pos = end",
                 f"{pad}if f & 1 or f >> {arg - 1}:",  # CH and EE codes must be 0 (no second level)
                 f"{pad}    raise GIVE_UP"]
        if conv == FIXED_BOOL:
            value = "(f >> 1) == 1"
        elif conv == FIXED_ENUM:
            constants[label] = extra
            lines += [f"{pad}if (f >> 1) >= {len(extra)}:", f"{pad}    raise GIVE_UP"]
            value = f"{label}[f >> 1]"
        else:
            value = f"(f >> 1) + {extra}"
    elif kind == SE_VARINT:
        head = 1 + conv  # CH code, then the sign bit of a signed integer
        lines = [f"{pad}end = pos + {head}",
                 f"{pad}if end > total:",
                 f"{pad}    raise GIVE_UP",
                 f"{pad}h = (stream >> (total - end)) & {(1 << head) - 1}",
                 f"{pad}pos = end",
                 f"{pad}x = 0",
                 f"{pad}shift = 0",
                 f"{pad}while True:",
                 f"{pad}    end = pos + 8",
                 f"{pad}    if end > total or shift > 140:",
                 f"{pad}        raise GIVE_UP",
                 f"{pad}    o = (stream >> (total - end)) & 255",
                 f"{pad}    pos = end",
                 f"{pad}    x |= (o & 127) << shift",
                 f"{pad}    if o < 128:",
                 f"{pad}        break",
                 f"{pad}    shift += 7",
                 f"{pad}end = pos + 1",
                 f"{pad}if end > total or h >> {conv} or (stream >> (total - end)) & 1:",
                 f"{pad}    raise GIVE_UP",
                 f"{pad}pos = end"]
        if conv:
            lines += [f"{pad}if h & 1:", f"{pad}    x = -x - 1"]
        value = "x"
    elif kind == SE_COMPLEX:
        lines = [f"{pad}x, pos = TYPES[{arg}](d, stream, total, pos)"]
        value = "x"
    elif kind in (SE_SIMPLE, AT, CH):  # strings, binary, lists...: the codec's own value readers
        read = f"d._simple_element({arg}, {name!r})" if kind == SE_SIMPLE else f"d._value(d.dtypes[{arg}], {name!r})"
        lines = [f"{pad}d.reader.pos = pos", f"{pad}x = {read}", f"{pad}pos = d.reader.pos"]
        value = "x"
    else:  # wildcards and untyped content: the table-driven decoder refuses them by name
        return [f"{pad}raise GIVE_UP"]
    if name in grammar.list_fields:
        lines.append(f"{pad}v.setdefault({name!r}, []).append({value})")
    else:
        lines.append(f"{pad}v[{name!r}] = {value}")
    lines.append(f"{pad}state = {nxt}")
    return lines
