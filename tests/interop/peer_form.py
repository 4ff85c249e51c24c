"""Our JSON message form <-> EXIficient's: the same except that EXIficient writes base64Binary in base64.

The grammar says which fields are base64Binary (datatype flag b of BINARY descriptors), so the
conversion walks the message with the schema rather than guessing from the text.
"""

from __future__ import annotations

import base64
from typing import Any

from v2gtool.exi.grammar import BINARY, SE_COMPLEX, SchemaGrammar, TypeGrammar


def convert(schema: SchemaGrammar, document: dict[str, Any], to_peer: bool) -> dict[str, Any]:
    ((name, body),) = document.items()
    entry = next(g for g in (*schema.globals, *schema.fragments) if g[0] == name and g[1] >= 0)
    if entry[1] != SE_COMPLEX:
        return document
    return {name: _walk(schema, schema.types[entry[2]], body, to_peer)}


def _walk(schema: SchemaGrammar, grammar: TypeGrammar, body: dict[str, Any], to_peer: bool) -> dict[str, Any]:
    specs = {s.name: s for s in grammar.fields}
    out: dict[str, Any] = {}
    for key, value in body.items():
        spec = specs[key]
        items = value if isinstance(value, list) else [value]
        if spec.kind == SE_COMPLEX:
            converted = [_walk(schema, schema.types[spec.arg], v, to_peer) for v in items]
        else:
            dt = schema.dtypes[spec.arg]
            converted = [_b64(v, to_peer) for v in items] if dt[0] == BINARY and dt[2] else items
        out[key] = converted if isinstance(value, list) else converted[0]
    return out


def _b64(value: str, to_peer: bool) -> str:
    if to_peer:
        return base64.b64encode(bytes.fromhex(value)).decode()
    return base64.b64decode(value).hex().upper()
