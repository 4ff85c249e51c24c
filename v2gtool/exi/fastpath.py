"""Straight-line decoders of complex types into the JSON message form, generated from the grammar tables.

:class:`v2gtool.exi.codec.Decoder` walks a type's grammar table production by production; that walk
is what ``pcap-decode`` spends most of its time in. Here each complex type's normalised grammar
(EXI 1.0 section 8.5.4.2, the same tables) becomes one Python function, compiled on first use:
states are tested in order inside one loop (a grammar that only moves forward takes one pass),
event codes, bit widths, masks, offsets and enumeration names are constants. A state takes its
event code together with the bits the production after it reads first, in one field: the whole of
a fixed-width simple element (CH, value, EE), the CH code, sign, two octets and EE code of an
integer (all of it when the value fits in one or two octets), the CH code of binary and string content,
which are read here too (EXI 1.0 sections 7.1.1, 7.1.6, 7.1.10).

They check what the table-driven decoder checks, with the bounds as constants: the XSD length and
range facets (a length against them in place of the plausibility limit; integers of one or two
octets only where the facets are narrower) and XML 1.0 Char in strings, so the per-message cost stays
what it was.

These functions know only the well-formed case. At the first thing they do not expect (truncation,
an undeclared event, a bad EE code, a missing required field, a wildcard) they give up, and
:func:`decode_document` returns ``None``: the caller then decodes the stream with the table-driven
decoder, which is the reference and names the error. The result of a decoder here is therefore
always the one the table-driven decoder returns (property-tested in ``tests/exi``, on valid
messages and on every single-bit flip and truncation of them).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from v2gtool.exi.bitstream import MAX_LENGTH
from v2gtool.exi.errors import EXIDecodeError
from v2gtool.exi.grammar import (
    AT,
    BINARY,
    CH,
    EE,
    FIXED_BOOL,
    FIXED_ENUM,
    SE_COMPLEX,
    SE_FIXED,
    SE_SIMPLE,
    SE_VARINT,
    SIMPLE_SECOND_LEVEL_WIDTH,
    STRING,
    DecodeProduction,
    DType,
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
# Zero bits appended to the stream (see decode_document): more than a state reads ahead of its production.
PADDING = 64


def decode_document(decoder: Decoder, schema: SchemaGrammar) -> tuple[str, Any] | None:
    """``(root name, JSON form)`` of the document in *decoder*'s stream, or ``None`` to fall back.

    *decoder* is a ``codec.Decoder`` in JSON mode, positioned after the EXI header.
    """
    reader = decoder.reader
    bits = reader.bits
    try:
        code = reader.read(schema.global_width)
        if code >= len(schema.globals):
            return None
        name, kind, arg, _own = schema.globals[code]
        if kind != SE_COMPLEX or arg < 0:
            return None
        # Zero padding past the end lets a decoder read a state's event code and the fixed-width
        # value after it in one field, even at the last event; a read beyond the padding is a
        # negative shift (ValueError), and a position past the real end is refused below.
        value, pos = _type_decoders(schema)[arg](decoder, reader.value << PADDING, bits + PADDING, reader.pos)
    except (_GiveUp, EXIDecodeError, ValueError, RecursionError):
        return None
    if pos > bits:
        return None
    reader.pos = pos
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
        table[index] = compiled = _compile(schema, index, table)
        return compiled(decoder, stream, total, pos)
    return first_call


def _compile(schema: SchemaGrammar, index: int, table: list[TypeDecoder]) -> TypeDecoder:
    """The straight-line decoder of one complex type (see the module docstring)."""
    source = _Source(schema, table)
    grammar = schema.types[index]
    lines = ["def decode(d, stream, total, pos):", *source.type_body(grammar), "    return v, pos"]
    namespace = dict(source.constants)  # the source above holds only numbers and the schema's own names
    exec(compile("\n".join(lines), f"<EXI decoder of {grammar.cls.__name__}>", "exec"), namespace)
    decode: TypeDecoder = namespace["decode"]
    return decode


class _Source:
    """Generates the lines of one type's decoder function and the constants they name."""

    def __init__(self, schema: SchemaGrammar, table: list[TypeDecoder]) -> None:
        # The reference decoder's facet bounds and character check (imported here: codec imports this module)
        from v2gtool.exi import codec

        self.schema = schema
        self.constants: dict[str, Any] = {"GIVE_UP": _GIVE_UP, "TYPES": table,
                                          "NON_XML_CHAR": codec.NON_XML_CHAR.search}
        self.fixed_limits = codec.fixed_int_limits(schema)
        self._enums = itertools.count(1)

    def type_body(self, grammar: TypeGrammar) -> list[str]:
        """The function body that decodes one *grammar* into the dict ``v`` and advances ``pos``."""
        lines = ["    v = {}", "    state = 0", "    while state >= 0:"]
        for number, (width, prods) in enumerate(grammar.decode_json):
            lines.append(f"        if state == {number}:")
            block = " " * 12
            extras = [_extra_bits(production, self.schema.dtypes) for production in prods]
            # One field: the event code and the longest run of bits a production reads right after it
            wide = max(extras) if width else extras[0]
            if width + wide:
                lines.append(f"{block}f = (stream >> (total - pos - {width + wide})) & {(1 << (width + wide)) - 1}")
            if width:
                lines.append(f"{block}code = f >> {wide}" if wide else f"{block}code = f")
            for code, production in enumerate(prods):
                extra = extras[code]
                # the production's own bits: the low *extra* bits of what follows the code
                head = f"(f >> {wide - extra})" if wide > extra else "f"
                if extra:
                    head = f"{head} & {(1 << extra) - 1}"
                if not width:
                    lines += self.production(production, grammar, block, width, extra, head)
                    break  # width 0: the one production there is
                lines.append(f"{block}{'if' if code == 0 else 'elif'} code == {code}:")
                lines += self.production(production, grammar, block + "    ", width, extra, head)
            if width:
                lines += [f"{block}else:", f"{block}    raise GIVE_UP"]
        if not grammar.required <= _always_met(grammar):
            self.constants["REQUIRED"] = grammar.required
            lines += ["    if not v.keys() >= REQUIRED:", "        raise GIVE_UP"]
        if not grammar.in_field_order:
            self.constants["ORDER"] = tuple(spec.name for spec in grammar.fields)
            lines.append("    v = {name: v[name] for name in ORDER if name in v}")
        return lines

    def production(self, production: DecodeProduction, grammar: TypeGrammar, pad: str, width: int, extra: int,
                   head: str) -> list[str]:
        """The lines (at indentation *pad*) that take one production into ``v`` and set the next state.

        *head* is the expression of the *extra* bits read with the event code (see :func:`_extra_bits`).
        """
        kind, name, arg, nxt, conv, members = production
        dtypes = self.schema.dtypes
        if kind == EE:
            return [f"{pad}pos += {width}", f"{pad}state = -1"] if width else [f"{pad}state = -1"]
        advance = [f"{pad}pos += {width}"] if width else []
        if kind == SE_FIXED:
            lines = [f"{pad}x = {head}",
                     f"{pad}pos += {width + extra}",
                     f"{pad}if x & 1 or x >> {arg - 1}:",  # CH and EE codes must be 0 (no second level)
                     f"{pad}    raise GIVE_UP"]
            if conv == FIXED_BOOL:
                value = "(x >> 1) == 1"
            elif conv == FIXED_ENUM:
                label = f"ENUM_{next(self._enums)}"
                self.constants[label] = members
                lines += [f"{pad}if (x >> 1) >= {len(members)}:", f"{pad}    raise GIVE_UP"]
                value = f"{label}[x >> 1]"
            else:
                value = f"(x >> 1) + {members}"
                limit = self.fixed_limits[grammar.index].get(name)
                if limit is not None:  # an n-bit field wider than its range (XSD maxInclusive)
                    lines += [f"{pad}if (x >> 1) > {limit - members}:", f"{pad}    raise GIVE_UP"]
        elif kind == SE_VARINT:
            # bits of y, high to low: CH code, sign (signed only), two octets, EE code. A value below
            # 128 is one octet and its EE code is the top bit of the second; below 16384, two octets.
            sign, ch_bit = 1 << 17, 1 << (17 + conv)
            first, second = 1 << 16, 1 << 8
            # XSD range facets (and the built-in type's bounds): one or two octets hold -16384 ..
            # 16383 (signed) or 0 .. 16383, so bounds outside that are checked on the long way only.
            lo, hi = dtypes[arg][3], dtypes[arg][4]
            short_lo = -(1 << 14) if conv else 0
            tight = (lo is not None and lo > short_lo) or (hi is not None and hi < (1 << 14) - 1)
            signed_value = f"-x - 1 if y & {sign} else x" if conv else "x"
            long_check = [] if tight else _outside(pad + "    ", signed_value, lo, hi)
            lines = [f"{pad}y = {head}",
                     f"{pad}if not y & {ch_bit | first | second}:",
                     f"{pad}    x = (y >> 9) & 127",
                     f"{pad}    pos += {width + extra - 8}",
                     f"{pad}elif y & {ch_bit | first | second | 1} == {first}:",
                     f"{pad}    x = ((y >> 9) & 127) | ((y >> 1) & 127) << 7",
                     f"{pad}    pos += {width + extra}",
                     f"{pad}else:",
                     f"{pad}    if y & {ch_bit}:",
                     f"{pad}        raise GIVE_UP",
                     f"{pad}    pos += {width + 1 + conv}",
                     *_varint(pad + "    ", "x"),
                     *_end_element(pad + "    "),
                     *long_check]
            if conv:
                lines += [f"{pad}if y & {sign}:", f"{pad}    x = -x - 1"]
            if tight:
                lines += _outside(pad, "x", lo, hi)
            value = "x"
        elif kind == SE_COMPLEX:
            lines = [*advance, f"{pad}child, pos = TYPES[{arg}](d, stream, total, pos)"]
            value = "child"
        elif _inline_simple(kind, arg, dtypes):
            # CH code 0: the value and EE; escape 1: the second-level EE of an empty element (8.5.4.4.2)
            inner = pad + "    "
            # XSD length facets: the bounds of the length read below, in place of the plausibility limit
            low: int = dtypes[arg][3] or 0
            most = dtypes[arg][4]
            high = MAX_LENGTH if most is None else min(most, MAX_LENGTH)
            lines = [f"{pad}pos += {width + extra}",
                     f"{pad}if {head}:",
                     f"{inner}pos += {SIMPLE_SECOND_LEVEL_WIDTH}",
                     f"{inner}if (stream >> (total - pos)) & {(1 << SIMPLE_SECOND_LEVEL_WIDTH) - 1}:",
                     f"{inner}    raise GIVE_UP",
                     *([f"{inner}raise GIVE_UP"] if low else []),  # empty, but a minimum length
                     f"{inner}text = ''",
                     f"{pad}else:",
                     *_varint(inner, "n")]
            if dtypes[arg][0] == BINARY:  # hexBinary and base64Binary: upper-case hex in the JSON form
                lines += [f"{inner}if n < {low} or n > {high}:" if low else f"{inner}if n > {high}:",
                          f"{inner}    raise GIVE_UP",
                          f"{inner}pos += 8 * n",
                          f"{inner}text = '%0*X' % (2 * n, (stream >> (total - pos)) & ((1 << 8 * n) - 1)) "
                          f"if n else ''"]
            else:  # string: length + 2 (capacity-0 string tables: no hits, 7.3.3), then code points
                lines += [f"{inner}if n < {2 + low} or n > {2 + high}:",
                          f"{inner}    raise GIVE_UP",
                          f"{inner}chars = []",
                          f"{inner}for _ in range(n - 2):",
                          *_varint(inner + "    ", "c"),
                          f"{inner}    if c > 0x10FFFF:",
                          f"{inner}        raise GIVE_UP",
                          f"{inner}    chars.append(chr(c))",
                          f"{inner}text = ''.join(chars)",
                          f"{inner}if NON_XML_CHAR(text):",  # XML 1.0 Char: no surrogates, no C0 but TAB LF CR
                          f"{inner}    raise GIVE_UP"]
            lines += _end_element(inner)
            value = "text"
        elif kind in (SE_SIMPLE, AT, CH):  # lists and the rest: the codec's own value readers
            read = (f"d._simple_element({arg}, {name!r})" if kind == SE_SIMPLE
                    else f"d._value(d.dtypes[{arg}], {name!r})")
            lines = [*advance, f"{pad}d.reader.pos = pos", f"{pad}other = {read}", f"{pad}pos = d.reader.pos"]
            value = "other"
        else:  # wildcards and untyped content: the table-driven decoder refuses them by name
            return [f"{pad}raise GIVE_UP"]
        if name in grammar.list_fields:
            lines.append(f"{pad}v.setdefault({name!r}, []).append({value})")
        else:
            lines.append(f"{pad}v[{name!r}] = {value}")
        lines.append(f"{pad}state = {nxt}")
        return lines


def _always_met(grammar: TypeGrammar) -> frozenset[str]:
    """The fields every path of the grammar from its first state to EE takes (a greatest fixpoint over
    the states: a field is met from a state when each production there takes it or leads to a state
    it is met from). The decoder need not check these are present."""
    states = grammar.decode_json
    everything = frozenset(spec.name for spec in grammar.fields)
    met = [everything] * len(states)
    changed = True
    while changed:
        changed = False
        for number, (_width, prods) in enumerate(states):
            now = everything
            for kind, name, _arg, nxt, _conv, _extra in prods:
                if kind == EE or nxt < 0:
                    now = frozenset() if kind == EE else now & {name}
                else:
                    now &= met[nxt] | {name}
            if now != met[number]:
                met[number], changed = now, True
    return met[0] if states else frozenset()


def _inline_simple(kind: int, arg: int, dtypes: tuple[DType, ...]) -> bool:
    """Whether an SE_SIMPLE production's value (binary, string) is read by the generated code itself."""
    return kind == SE_SIMPLE and dtypes[arg][0] in (BINARY, STRING)


def _extra_bits(production: DecodeProduction, dtypes: tuple[DType, ...]) -> int:
    """How many bits right after the event code a production reads as one field with it.

    A fixed-width element is all of its bits (CH, value, EE); a variable-length integer its CH
    code and sign, two octets and an EE code (the whole element when the value is below 16384); an
    inlined binary or string its CH code.
    """
    kind, _name, arg, _nxt, conv, _extra = production
    if kind == SE_FIXED:
        return arg
    if kind == SE_VARINT:
        return 1 + conv + 16 + 1
    if _inline_simple(kind, arg, dtypes):
        return 1
    return 0


def _varint(pad: str, into: str) -> list[str]:
    """Lines that read an EXI unsigned integer (7.1.6) at *pos* into *into*; more than 20 octets give up."""
    return [f"{pad}{into} = 0",
            f"{pad}shift = 0",
            f"{pad}while True:",
            f"{pad}    pos += 8",
            f"{pad}    o = (stream >> (total - pos)) & 255",
            f"{pad}    {into} |= (o & 127) << shift",
            f"{pad}    if o < 128:",
            f"{pad}        break",
            f"{pad}    shift += 7",
            f"{pad}    if shift > 140:",
            f"{pad}        raise GIVE_UP"]


def _outside(pad: str, expression: str, lo: int | None, hi: int | None) -> list[str]:
    """Lines that give up when the integer *expression* is outside ``[lo, hi]`` (None: unbounded)."""
    tests = ([f"z < {lo}"] if lo is not None else []) + ([f"z > {hi}"] if hi is not None else [])
    if not tests:
        return []
    return [f"{pad}z = {expression}", f"{pad}if {' or '.join(tests)}:", f"{pad}    raise GIVE_UP"]


def _end_element(pad: str) -> list[str]:
    """Lines that take the EE code (1 bit, 0) after a simple element's value."""
    return [f"{pad}pos += 1", f"{pad}if (stream >> (total - pos)) & 1:", f"{pad}    raise GIVE_UP"]
