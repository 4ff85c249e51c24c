"""Hypothesis strategies that build schema-valid messages by walking the EXI grammar itself.

A walk starts in a type's first state and draws one production at a time (the end of the element
more and more likely as the walk grows), and draws every value inside the schema's facets. The
message is therefore valid by construction, whatever choice, substitution group or repetition
the schema has, and any round-trip failure is the codec's.
"""

from __future__ import annotations

import enum
from typing import Any

from hypothesis import strategies as st

from v2gtool.exi.grammar import (
    AT,
    BINARY,
    BOOL,
    CH,
    EE,
    ENUM,
    INT,
    LIST,
    NBIT,
    SE_COMPLEX,
    SE_SIMPLE,
    STRING,
    UINT,
    DType,
    SchemaGrammar,
    TypeGrammar,
)

# xs:string values are XML character data (XML 1.0 production Char). Tab, LF and CR are left out
# too: XML processors normalise them in attribute values, so XML-based peers cannot keep them.
XML_CHARS = st.characters(exclude_categories=("Cs",), exclude_characters="\ufffe\uffff").filter(lambda c: c >= " ")
MAX_EVENTS = 40  # per element, before the walk takes the shortest way out
MAX_DEPTH = 12


def value_of(schema: SchemaGrammar, dt: DType) -> st.SearchStrategy[Any]:
    kind, a, b, lo, hi = dt
    if kind in (NBIT, UINT, INT):
        low = lo if lo is not None else -(2**70)
        high = hi if hi is not None else 2**70
        return st.integers(min_value=low, max_value=high)
    if kind == BOOL:
        return st.booleans()
    if kind == ENUM:
        members: tuple[enum.Enum, ...] = b
        return st.sampled_from(members)
    if kind == BINARY:
        return st.binary(min_size=lo or 0, max_size=max(lo or 0, min(hi if hi is not None else 64, 64)))
    if kind == STRING:
        return st.text(XML_CHARS, min_size=lo or 0,
                       max_size=max(lo or 0, min(hi if hi is not None else 40, 40)))
    if kind == LIST:
        return st.lists(value_of(schema, schema.dtypes[a]), min_size=lo or 0, max_size=min(hi or 5, 5)).map(tuple)
    raise AssertionError(f"unknown datatype kind {kind}")


@st.composite
def instance_of(draw: st.DrawFn, schema: SchemaGrammar, grammar: TypeGrammar, depth: int = 0) -> Any:
    values: dict[str, Any] = {}
    state = 0
    events = 0
    while True:
        _width, prods = grammar.states[state]
        usable = [p for p in prods if p[0] in (SE_COMPLEX, SE_SIMPLE, AT, CH, EE)]
        ends = [p for p in usable if p[0] == EE]
        if ends and (events >= MAX_EVENTS or depth >= MAX_DEPTH or draw(st.integers(0, 3)) == 0):
            break
        if events >= MAX_EVENTS * 4:
            raise AssertionError(f"{grammar.cls.__name__}: grammar walk does not terminate")
        prod = draw(st.sampled_from([p for p in usable if p[0] != EE] or ends))
        kind, name, arg, nxt = prod
        if kind == EE:
            break
        if kind == SE_COMPLEX:
            value = draw(instance_of(schema, schema.types[arg], depth + 1))
        else:
            value = draw(value_of(schema, schema.dtypes[arg]))
        if name in grammar.list_fields:
            values.setdefault(name, []).append(value)
        else:
            values[name] = value
        state = nxt
        events += 1
    for name in grammar.list_fields:
        if name in values:
            values[name] = tuple(values[name])
    return grammar.cls(**values)


def message_of(schema: SchemaGrammar, name: str) -> st.SearchStrategy[Any]:
    """Valid instances of the global element *name* of *schema*."""
    _name, kind, arg, _own = next(g for g in schema.globals if g[0] == name)
    assert kind == SE_COMPLEX
    return instance_of(schema, schema.types[arg])
