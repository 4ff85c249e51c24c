"""``--filter`` expressions: a message name, or a comparison of one of its fields.

    DC_ChargeLoopReq                          every DC_ChargeLoopReq
    DC_ChargeLoopReq.EVTargetCurrent < 0      a field of the message compared with a number
    SessionSetupRes.ResponseCode != OK_NewSessionEstablished
    CM_SLAC_MATCH.REQ                         SLAC and SDP messages by name too

Field paths are dotted element names below the message element; a path may skip levels (the
field is searched below), so ``DC_ChargeLoopReq.EVTargetCurrent`` finds it inside the control-mode
element. Physical values (Value x 10^Exponent / Multiplier) compare as numbers.

A filter is checked against the schemas before any packet is read, so that one that could only ever
match nothing is a usage error instead: the message must exist, the path must reach a field, and the
value must be of the field's type (a number for a number, true/false for a boolean, one of an
enumeration's values, text for a string).
"""

from __future__ import annotations

import difflib
import functools
import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from v2gtool.errors import V2GToolError
from v2gtool.exi.grammar import BOOL, ENUM, INT, NBIT, SE_COMPLEX, UINT, FieldSpec, SchemaGrammar
from v2gtool.exi.namespaces import NAMESPACES, grammar
from v2gtool.pcap.analysis import walk
from v2gtool.pcap.records import SdpMessage, SlacMessage, TraceRecord, V2GMessage, message_element, physical_value
from v2gtool.pcap.sdp import SDP_MESSAGES

_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt,
}
_PATH = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"  # dotted element names, no empty step
_EXPRESSION = re.compile(rf"^\s*({_PATH})\s*(==|!=|<=|>=|<|>)\s*([^\s=<>!].*?)\s*$")
_NAME = re.compile(rf"^\s*({_PATH})\s*$")


class FilterError(V2GToolError):
    """A --filter expression is not a message name or a field comparison."""

    exit_code = 2


@dataclass(frozen=True)
class MessageFilter:
    """One parsed filter: message name, field path below it (may be empty), operator and operand."""

    message: str
    path: tuple[str, ...]
    compare: Callable[[Any, Any], bool] | None
    operand: Any

    def matches(self, record: TraceRecord) -> bool:
        if isinstance(record, V2GMessage):
            if record.message != self.message:
                return False
            element = message_element(record)
            if self.compare is None:  # a bare path asks whether the field is present
                return not self.path or bool(_resolve(element, self.path))
            return self._field_matches(element)
        if isinstance(record, SlacMessage):
            return self.compare is None and record.mme["name"] == ".".join((self.message, *self.path))
        if isinstance(record, SdpMessage):
            return self.compare is None and not self.path and record.message == self.message
        return False

    def _field_matches(self, element: dict[str, Any]) -> bool:
        assert self.compare is not None
        return any(self._compare(value) for value in _resolve(element, self.path))

    def _compare(self, value: Any) -> bool:
        assert self.compare is not None
        if isinstance(self.operand, float):
            number = physical_value(value)
            return number is not None and self.compare(number, self.operand)
        if isinstance(value, dict | list):
            return False
        return self.compare(str(value), self.operand)


def _resolve(element: Any, path: tuple[str, ...]) -> list[Any]:
    """Values at *path* below *element*; each step may match at any depth (lists fan out)."""
    values = [element]
    for step in path:
        values = [found for value in values for found in walk(value, step)]
        values = [item for value in values for item in (value if isinstance(value, list) else [value])]
    return values


@functools.cache
def _names() -> tuple[frozenset[str], frozenset[str]]:
    """The names a filter can select: (V2G messages of every schema set, SLAC and SDP messages).

    V2G messages are the -20 and application-handshake root elements, and the Body elements of
    ISO 15118-2 and DIN SPEC 70121 (their root is V2G_Message); SLAC names are the MMEs' of
    ISO 15118-3 Annex A, SDP names those :func:`v2gtool.pcap.sdp.sdp_fields` gives.
    """
    from v2gtool.slac.mme import MMType, mmtype_name  # here, not above: scapy loads only for a --filter

    v2g: set[str] = set()
    for namespace in NAMESPACES:
        schema = grammar(namespace.short)
        v2g.update(schema.messages())
        v2g.update(spec.name for t in schema.types if t.cls.__name__ == "BodyType" for spec in t.fields)
    by_name = {mmtype_name(mmtype) for mmtype in MMType} | set(SDP_MESSAGES.values())
    return frozenset(v2g), frozenset(by_name)


def parse_filter(text: str) -> MessageFilter:
    """Parse one --filter expression; raise :class:`FilterError` with the reason."""
    match = _EXPRESSION.match(text)
    if match is not None:
        dotted, op, raw = match.groups()
        message, *path = dotted.split(".")
        if not path:
            raise FilterError(f"--filter {text!r}: compare a field of the message, e.g. {message}.ResponseCode {op} "
                              f"{raw}")
        if any(dotted.startswith(f"{name}.") for name in _names()[1]):
            raise FilterError(f"--filter {text!r}: SLAC and SDP messages are selected by name only")
        _check_message(text, message)
        fields = _check_path(text, message, path)
        return MessageFilter(message, tuple(path), _OPERATORS[op], _operand(text, dotted, raw, fields))
    match = _NAME.match(text)
    if match is None:
        raise FilterError(f"--filter {text!r}: expected a message name or 'Message.Field OP value' "
                          f"(OP one of {', '.join(_OPERATORS)})")
    message, *path = match.group(1).split(".")
    if match.group(1) not in _names()[1]:
        _check_message(text, message)
        _check_path(text, message, path)
    return MessageFilter(message, tuple(path), None, None)


def _check_message(text: str, message: str) -> None:
    """A name no schema set declares would silently match nothing: say so, with the nearest names."""
    v2g, by_name = _names()
    if message not in v2g:
        near = difflib.get_close_matches(message, sorted(v2g | by_name), n=3)
        hint = f" (did you mean {', '.join(near)}?)" if near else ""
        raise FilterError(f"--filter {text!r}: {message} is not a V2G, SLAC or SDP message{hint}")


# A message's element type: (schema set, index of the complex type in it)
_Type = tuple[SchemaGrammar, int]


@functools.cache
def _message_types(message: str) -> tuple[_Type, ...]:
    """The complex types of the element *message* in every schema set declaring it (a -20 or handshake
    root element, or an element of the -2/DIN Body)."""
    found: list[_Type] = []
    for namespace in NAMESPACES:
        schema = grammar(namespace.short)
        found += [(schema, arg) for name, kind, arg, _own in schema.globals
                  if name == message and kind == SE_COMPLEX and arg >= 0]
        found += [(schema, spec.arg) for t in schema.types if t.cls.__name__ == "BodyType" for spec in t.fields
                  if spec.name == message and spec.kind == SE_COMPLEX]
    return tuple(found)


@functools.cache
def _types_below(schema: SchemaGrammar, index: int) -> frozenset[int]:
    """The complex type *index* and every complex type its elements may hold, at any depth."""
    seen = {index}
    stack = [index]
    while stack:
        for spec in schema.types[stack.pop()].fields:
            if spec.kind == SE_COMPLEX and spec.arg not in seen:
                seen.add(spec.arg)
                stack.append(spec.arg)
    return frozenset(seen)


def _check_path(text: str, message: str, path: list[str]) -> list[_Field]:
    """A field path no schema type of the message can hold would silently match nothing: say so.
    The fields the path reaches (in every schema set that declares the message).

    Each step is looked for at any depth below the previous one, as :func:`_resolve` looks for it.
    """
    current = _message_types(message)
    reached: list[_Field] = []
    for depth, step in enumerate(path):
        names: set[str] = set()
        reached = []
        for schema, index in current:
            for owner in _types_below(schema, index):
                for spec in schema.types[owner].fields:
                    names.add(spec.name)
                    if spec.name == step:
                        reached.append((schema, spec))
        if not reached:
            where = ".".join((message, *path[:depth]))
            near = difflib.get_close_matches(step, sorted(names), n=3)
            hint = f" (did you mean {', '.join(near)}?)" if near else " (it holds no further fields)" if not names \
                else ""
            raise FilterError(f"--filter {text!r}: {where} has no field {step} at any depth{hint}")
        current = tuple({(schema, spec.arg) for schema, spec in reached if spec.kind == SE_COMPLEX})
    return reached


# A field a path reaches: its schema set and its declaration there
_Field = tuple[SchemaGrammar, FieldSpec]


@dataclass(frozen=True)
class _ValueType:
    """What a field holds, as a comparison sees it: ``kind`` number, boolean, enumeration (with its
    ``values``), text or element (fields of its own), and the schema's ``name`` of the type."""

    kind: str
    name: str
    values: tuple[str, ...] = ()


def _value_type(schema: SchemaGrammar, spec: FieldSpec) -> _ValueType:
    """A complex type with Value and Exponent (-20 RationalNumber) or Multiplier (-2/DIN PhysicalValue)
    is a number (:func:`physical_value`); simple types go by their EXI datatype (EXI 1.0 section 7)."""
    if spec.kind == SE_COMPLEX:
        complex_type = schema.types[spec.arg]
        fields = {f.name for f in complex_type.fields}
        kind = "number" if "Value" in fields and fields & {"Exponent", "Multiplier"} else "element"
        return _ValueType(kind, complex_type.cls.__name__.removesuffix("Type"))
    datatype, _, members, *_ = schema.dtypes[spec.arg]
    if datatype in (NBIT, UINT, INT):
        return _ValueType("number", "integer")
    if datatype == BOOL:
        return _ValueType("boolean", "boolean")
    if datatype == ENUM:
        return _ValueType("enumeration", "enumeration", tuple(str(m.value) for m in members))
    return _ValueType("text", "text")


def _operand(text: str, dotted: str, raw: str, fields: list[_Field]) -> Any:
    """The value to compare with, of the type of the fields *dotted* names (any of them, where the
    schema sets differ): a float for a number, text otherwise. A value none of them can hold is an
    error naming the field and its type, not a filter that matches nothing."""
    types = {_value_type(schema, spec) for schema, spec in fields}
    kinds = {t.kind for t in types}
    unquoted = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"" else None
    value = raw if unquoted is None else unquoted
    if unquoted is None and "number" in kinds:
        try:
            number = float(raw)
        except ValueError:
            pass
        else:
            if not math.isfinite(number):
                quote = f" or quote a text value ('{raw}')" if "text" in kinds else ""
                raise FilterError(f"--filter {text!r}: {raw} is not a finite number; compare with a number such as "
                                  f"0.5{quote}")
            return number
    if "text" in kinds:
        return value
    if "boolean" in kinds and raw in ("true", "false"):
        return "True" if raw == "true" else "False"  # as str() writes the decoded bool
    values = sorted({v for t in types for v in t.values})
    if value in values:
        return value
    near = difflib.get_close_matches(value, values, n=3)
    hint = f" (did you mean {', '.join(near)}?)" if near else ""
    raise FilterError(f"--filter {text!r}: {dotted} is {_describe(types)}; {raw} is not one{hint}")


def _describe(types: set[_ValueType]) -> str:
    """``a number (RationalNumber)``, ``an enumeration``, ..., joined with ``or``."""
    phrases = []
    for t in sorted(types, key=lambda t: (t.kind, t.name)):
        if t.kind == "element":
            phrases.append(f"an element with fields of its own ({t.name})")
        else:
            detail = f" ({t.name})" if t.name != t.kind else ""
            phrases.append(f"{'an' if t.kind[0] in 'aeiou' else 'a'} {t.kind}{detail}")
    return " or ".join(dict.fromkeys(phrases))
