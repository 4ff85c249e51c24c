"""Runtime view of one generated schema set: grammar tables plus the lookups the codec derives.

The generated module (``v2gtool/exi/generated/<set>.py``) holds, per complex type, its normalised
EXI grammar (EXI 1.0 section 8.5.4.2): states with a first-level event-code width and productions
``(kind, field, argument, next state)`` in event-code order. This module turns those tables into
what encoding needs (field -> event code per state) and what the JSON mapping needs (field kinds).
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from types import ModuleType
from typing import Any

# Production kinds (tools/exi_compiler.py emits the same numbers).
SE_COMPLEX, SE_SIMPLE, AT, CH, EE, SE_WILDCARD, CH_UNTYPED = range(7)
# Derived at load time: an element of a fixed-width simple type (n-bit integer, boolean,
# enumeration), whose CH code, value and EE code are read and written as one bit field.
SE_FIXED = 7
# Derived too: an element of an unsigned (conversion 0) or signed (1) variable-length integer type.
SE_VARINT = 8
# How a fixed-width field becomes a value: integer plus offset, boolean, enumeration member.
FIXED_INT, FIXED_BOOL, FIXED_ENUM = range(3)
# Datatype kinds (EXI 1.0 section 7): descriptor (kind, a, b, lower bound, upper bound).
BOOL, NBIT, UINT, INT, BINARY, STRING, ENUM, LIST = range(8)

# strict = false gives the first state of an element grammar of simple type a second level (EXI 1.0
# section 8.5.4.4.1): EE (an empty element, section 8.5.4.4.2), AT(xsi:type), AT(xsi:nil), AT(*),
# AT(*) untyped, SE(*) and CH untyped, in that order: 7 productions, codes of 3 bits, EE is 1.0.
# EXIficient (RISE-V2G, the iso15118 package) writes an empty string or binary value that way.
SIMPLE_SECOND_LEVEL_WIDTH = 3

DType = tuple[int, Any, Any, int | None, int | None]
Production = tuple[int, str, int, int]
State = tuple[int, tuple[Production, ...]]
# A root of the document or fragment grammar: (name, kind, argument, declared in the set's own namespace)
RootElement = tuple[str, int, int, bool]
# Decoding: (kind, field, argument, next state, fixed conversion, offset or enum members)
DecodeProduction = tuple[int, str, int, int, int, Any]
# Encoding lookup of one state: field name ("" for EE) ->
# (code, width, kind, argument, next state, fixed conversion, offset or enum members)
EncodeEntry = tuple[int, int, int, int, int, int, Any]


@dataclass(frozen=True, slots=True)
class FieldSpec:
    """How one message field maps onto the grammar: production kind, argument, repetition."""

    name: str
    kind: int
    arg: int
    is_list: bool


@dataclass(frozen=True, slots=True)
class TypeGrammar:
    """The grammar of one complex type and its message class."""

    index: int
    cls: type[Any]
    states: tuple[State, ...]
    decode: tuple[tuple[int, tuple[DecodeProduction, ...]], ...]
    encode: tuple[dict[str, EncodeEntry], ...]
    fields: tuple[FieldSpec, ...]
    list_fields: frozenset[str]
    # Decoding straight into the JSON message form (v2gtool.exi.jsonform): the decode table with
    # enumeration names in place of members; whether the grammar always meets fields in class
    # order (so insertion order is the JSON key order); the fields a message must have.
    decode_json: tuple[tuple[int, tuple[DecodeProduction, ...]], ...]
    in_field_order: bool
    required: frozenset[str]

    def state_name(self, state: int) -> str:
        return f"{self.cls.__name__} state {state}"


class SchemaGrammar:
    """A compiled schema set: document and fragment roots, type grammars, datatypes."""

    def __init__(self, module: ModuleType) -> None:
        self.name: str = module.NAME
        self.namespace: str = module.NAMESPACE
        self.dtypes: tuple[DType, ...] = module.DTYPES
        self.types: tuple[TypeGrammar, ...] = tuple(
            _type_grammar(i, cls, states, self.dtypes) for i, (cls, states) in enumerate(module.GRAMMARS)
        )
        self.by_class: dict[type[Any], TypeGrammar] = {t.cls: t for t in self.types}
        # Document grammar (EXI 8.5.1): one code per global element plus SE(*), no second level.
        self.globals: tuple[RootElement, ...] = module.GLOBAL_ELEMENTS
        self.global_width = len(self.globals).bit_length()
        self.global_codes = {g[0]: i for i, g in enumerate(self.globals) if g[1] >= 0}
        # Fragment grammar (EXI 8.5.2): every element declaration, SE(*) and ED.
        self.fragments: tuple[RootElement, ...] = module.FRAGMENT_ELEMENTS
        self.fragment_width = (len(self.fragments) + 1).bit_length()
        self.fragment_codes = {g[0]: i for i, g in enumerate(self.fragments) if g[1] >= 0}

    def messages(self) -> list[str]:
        """The global elements declared in this set's own namespace: its messages."""
        return [g[0] for g in self.globals if g[1] >= 0 and g[3]]


def _fixed(kind: int, arg: int, dtypes: tuple[DType, ...]) -> tuple[int, int, int, Any]:
    """(kind, argument, conversion, extra) of a production, turning fixed-width simple elements into SE_FIXED."""
    if kind == SE_SIMPLE:
        dt = dtypes[arg]
        if dt[0] == NBIT:
            return SE_FIXED, dt[1] + 2, FIXED_INT, dt[2]
        if dt[0] == BOOL:
            return SE_FIXED, 3, FIXED_BOOL, None
        if dt[0] == ENUM:
            return SE_FIXED, dt[1] + 2, FIXED_ENUM, dt[2]
        if dt[0] in (UINT, INT):
            return SE_VARINT, arg, int(dt[0] == INT), None
    return kind, arg, 0, None


def _type_grammar(index: int, cls: type[Any], states: tuple[State, ...], dtypes: tuple[DType, ...]) -> TypeGrammar:
    encode: list[dict[str, EncodeEntry]] = []
    decode: list[tuple[int, tuple[DecodeProduction, ...]]] = []
    kinds: dict[str, tuple[int, int]] = {}
    for width, prods in states:
        table: dict[str, EncodeEntry] = {}
        dprods: list[DecodeProduction] = []
        for code, (kind, name, arg, nxt) in enumerate(prods):
            fkind, farg, conv, extra = _fixed(kind, arg, dtypes)
            dprods.append((fkind, name, farg, nxt, conv, extra))
            if kind in (SE_WILDCARD, CH_UNTYPED):
                continue  # never produced by the encoder; decoding them is refused with a clear error
            key = "" if kind == EE else name
            # n-bit fields may hold more than the facets allow: encoding checks the upper bound too
            enc_extra = (extra, dtypes[arg][4]) if fkind == SE_FIXED and conv == FIXED_INT else extra
            # the encoder has no fast path for variable-length integers: it writes them as SE_SIMPLE
            table.setdefault(key, (code, width, SE_SIMPLE if fkind == SE_VARINT else fkind,
                                   arg if fkind == SE_VARINT else farg, nxt, conv, enc_extra))
            if kind != EE:
                kinds.setdefault(name, (kind, arg))
        encode.append(table)
        decode.append((width, tuple(dprods)))
    fields = []
    list_fields = set()
    for f in dataclasses.fields(cls):
        kind, arg = kinds[f.name]
        is_list = str(f.type).startswith("tuple[")
        fields.append(FieldSpec(f.name, kind, arg, is_list))
        if is_list:
            list_fields.add(f.name)
    rank = {spec.name: i for i, spec in enumerate(fields)}
    decode_json = tuple((width, tuple((k, n, a, nxt, conv, _enum_names(extra) if conv == FIXED_ENUM else extra)
                                      for k, n, a, nxt, conv, extra in prods)) for width, prods in decode)
    required = frozenset(f.name for f in dataclasses.fields(cls)
                         if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
    return TypeGrammar(index, cls, states, tuple(decode), tuple(encode), tuple(fields), frozenset(list_fields),
                       decode_json, _in_field_order(states, rank, list_fields), required)


def _enum_names(members: tuple[enum.Enum, ...]) -> tuple[str, ...]:
    """The schema names of enumeration members (their JSON form)."""
    return tuple(m.value for m in members)


def _in_field_order(states: tuple[State, ...], rank: dict[str, int], list_fields: set[str]) -> bool:
    """True when every path through the grammar meets the fields in class order (a list's items together)."""
    for _width, prods in states:
        for kind, name, _arg, nxt in prods:
            if kind in (EE, SE_WILDCARD, CH_UNTYPED) or nxt < 0:
                continue
            for next_kind, next_name, _a, _n in states[nxt][1]:
                if next_kind in (EE, SE_WILDCARD, CH_UNTYPED):
                    continue
                if rank[next_name] < rank[name] or (next_name == name and name not in list_fields):
                    return False
    return True
