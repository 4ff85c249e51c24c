"""Framing of ISO 15118-20 messages: which schema set and V2GTP payload type each one uses.

The supportedAppProtocol handshake travels as payload type 0x8001 in its own grammar; common
messages as 0x8002 in CommonMessages; DC messages as 0x8004 in the DC grammar (ISO 15118-20
Table 12). The engines work with typed messages; this module turns them into frames and back.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass
from typing import Any

from v2gtool import v2gtp
from v2gtool.errors import V2GToolError
from v2gtool.exi import api, codec, namespaces
from v2gtool.exi.errors import EXIError
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

# The schema sets of a -20 DC session; payload types come from v2gtool.exi.api (Table 12).
DC_SESSION_NAMESPACES = frozenset({"apphand", "iso20", "iso20-dc"})


class ProtocolError(V2GToolError):
    """The peer sent something the session cannot continue with."""


@dataclass(frozen=True)
class Message:
    """A decoded V2G message: its root element name, namespace short name and typed body."""

    name: str
    namespace: str
    body: Any


def namespace_of(name: str) -> str:
    """The schema set of a DC session message (handshake, common or DC)."""
    if name.startswith("supportedAppProtocol"):
        return "apphand"
    return "iso20-dc" if name.startswith("DC_") else "iso20"


def encode(name: str, body: Any) -> bytes:
    """V2GTP frame of the message *name*."""
    ns = namespace_of(name)
    return v2gtp.encode_frame(api.PAYLOAD_TYPE_OF[ns], codec.encode(namespaces.grammar(ns), name, body))


def decode(frame: v2gtp.V2GTPFrame) -> Message:
    """Decode a frame whose payload type is one of a DC session's (0x8001, 0x8002, 0x8004)."""
    try:
        ns = api.namespace_of_payload_type(frame.payload_type)
    except EXIError:
        ns = ""
    if ns not in DC_SESSION_NAMESPACES:
        raise ProtocolError(f"V2GTP payload type 0x{frame.payload_type:04X} is not used in a -20 DC session")
    name, body = codec.decode(namespaces.grammar(ns), frame.payload)
    return Message(name, ns, body)


def minimal(name: str, **fields: Any) -> Any:
    """An instance of message *name* with every required field at its smallest valid value and
    *fields* set: what a FAILED_* response needs (ISO 15118-20: mandatory fields stay present)."""
    schema = namespaces.grammar(namespace_of(name))
    _name, kind, arg, _own = schema.globals[schema.global_codes[name]]
    assert kind == SE_COMPLEX
    return dataclasses.replace(_minimal(schema, schema.types[arg]), **fields)


def _minimal(schema: SchemaGrammar, grammar: TypeGrammar) -> Any:
    """Walk the grammar from its first state, taking the first production until the element may
    end: the shortest valid content (a choice takes its first alternative)."""
    values: dict[str, Any] = {}
    state = 0
    while True:
        _width, prods = grammar.states[state]
        if any(p[0] == EE for p in prods):
            break
        kind, name, arg, state = next(p for p in prods if p[0] in (SE_COMPLEX, SE_SIMPLE, AT, CH))
        value = _minimal(schema, schema.types[arg]) if kind == SE_COMPLEX else _minimal_value(schema.dtypes[arg])
        if name in grammar.list_fields:
            values[name] = (*values.get(name, ()), value)
        else:
            values[name] = value
    return grammar.cls(**values)


def _minimal_value(dt: DType) -> Any:
    kind, _a, b, lo, hi = dt
    if kind in (NBIT, UINT, INT):
        return max(lo or 0, 0) if hi is None or hi >= 0 else hi
    if kind == BOOL:
        return False
    if kind == ENUM:
        members: tuple[enum.Enum, ...] = b
        return members[0]
    if kind == BINARY:
        return bytes(lo or 0)
    if kind == STRING:
        return "x" * (lo or 0)
    if kind == LIST:
        return ()
    raise AssertionError(f"datatype kind {kind}")
