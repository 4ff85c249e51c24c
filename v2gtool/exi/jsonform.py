"""The JSON form of V2G messages, shared by every command that prints or reads messages.

One top-level key, the root element's name as in the schema (``{"DC_ChargeLoopReq": {...}}``);
element and attribute names exactly as in the XSD; binary values as hex strings (upper case on
output, either case on input); enumerations by their schema names; repeated elements as lists;
absent optional elements omitted; the value of an element with simple content and attributes
under ``"value"``. This is also the JSON form of the EXIficient codec used by other stacks.
"""

from __future__ import annotations

import enum
from typing import Any

from v2gtool.exi.errors import EXIEncodeError
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


def to_json(schema: SchemaGrammar, name: str, message: Any) -> dict[str, Any]:
    """``{name: <message as plain JSON values>}``."""
    return {name: _plain(schema, message)}


def _plain(schema: SchemaGrammar, value: Any) -> Any:
    grammar = schema.by_class.get(type(value))
    if grammar is not None:
        out: dict[str, Any] = {}
        for spec in grammar.fields:
            v = getattr(value, spec.name)
            if v is None or (spec.is_list and not v):
                continue
            out[spec.name] = [_plain(schema, x) for x in v] if spec.is_list else _plain(schema, v)
        return out
    if isinstance(value, bytes):
        return value.hex().upper()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, tuple):
        return [_plain(schema, v) for v in value]
    return value


def from_json(schema: SchemaGrammar, document: Any) -> tuple[str, Any]:
    """Build ``(root name, message)`` from the JSON form; errors name the JSON path."""
    if not isinstance(document, dict) or len(document) != 1:
        raise EXIEncodeError('a message is a JSON object with exactly one key, e.g. {"SessionSetupReq": {...}}')
    ((name, body),) = document.items()
    entry = next((g for g in (*schema.globals, *schema.fragments) if g[0] == name and g[1] >= 0), None)
    if entry is None:
        raise EXIEncodeError(f"{name} is not an element of {schema.name}")
    _name, kind, arg, _own = entry
    if kind == SE_COMPLEX:
        return name, _build(schema, schema.types[arg], body, name)
    return name, _scalar(schema, schema.dtypes[arg], body, name)


def _build(schema: SchemaGrammar, grammar: TypeGrammar, body: Any, path: str) -> Any:
    if not isinstance(body, dict):
        raise EXIEncodeError(f"{path}: expected an object, got {_kind(body)}")
    specs = {s.name: s for s in grammar.fields}
    unknown = [k for k in body if k not in specs]
    if unknown:
        raise EXIEncodeError(f"{path}: unknown field {unknown[0]!r}; {grammar.cls.__name__} has {', '.join(specs)}")
    kwargs: dict[str, Any] = {}
    for key, raw in body.items():
        spec = specs[key]
        where = f"{path}.{key}"
        if spec.is_list:
            items = raw if isinstance(raw, list) else [raw]
            kwargs[key] = tuple(_field(schema, spec.kind, spec.arg, v, f"{where}[{i}]") for i, v in enumerate(items))
        else:
            kwargs[key] = _field(schema, spec.kind, spec.arg, raw, where)
    try:
        return grammar.cls(**kwargs)
    except TypeError as exc:
        missing = str(exc).rpartition(":")[2].strip() or str(exc)
        raise EXIEncodeError(f"{path}: missing required field {missing}") from None


def _field(schema: SchemaGrammar, kind: int, arg: int, raw: Any, path: str) -> Any:
    if kind == SE_COMPLEX:
        return _build(schema, schema.types[arg], raw, path)
    return _scalar(schema, schema.dtypes[arg], raw, path)


def _scalar(schema: SchemaGrammar, dt: DType, raw: Any, path: str) -> Any:
    kind = dt[0]
    if kind in (NBIT, UINT, INT):
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise EXIEncodeError(f"{path}: expected an integer, got {_kind(raw)}")
        return raw
    if kind == BOOL:
        if not isinstance(raw, bool):
            raise EXIEncodeError(f"{path}: expected true or false, got {_kind(raw)}")
        return raw
    if kind == BINARY:
        if not isinstance(raw, str):
            raise EXIEncodeError(f"{path}: expected a hex string, got {_kind(raw)}")
        try:
            return bytes.fromhex(raw)
        except ValueError:
            raise EXIEncodeError(f"{path}: {raw!r} is not a hex string") from None
    if kind == STRING:
        if not isinstance(raw, str):
            raise EXIEncodeError(f"{path}: expected a string, got {_kind(raw)}")
        return raw
    if kind == ENUM:
        members = dt[2]
        for m in members:
            if m.value == raw:
                return m
        raise EXIEncodeError(f"{path}: {raw!r} is not one of {', '.join(m.value for m in members)}")
    if kind == LIST:
        if not isinstance(raw, list):
            raise EXIEncodeError(f"{path}: expected a list, got {_kind(raw)}")
        item = schema.dtypes[dt[1]]
        return tuple(_scalar(schema, item, v, f"{path}[{i}]") for i, v in enumerate(raw))
    raise EXIEncodeError(f"{path}: datatype kind {kind} unknown")


def _kind(raw: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(raw), type(raw).__name__
    )
