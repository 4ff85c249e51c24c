"""``--filter`` expressions: a message name, or a comparison of one of its fields.

    DC_ChargeLoopReq                          every DC_ChargeLoopReq
    DC_ChargeLoopReq.EVTargetCurrent < 0      a field of the message compared with a number
    SessionSetupRes.ResponseCode != OK_NewSessionEstablished
    CM_SLAC_MATCH.REQ                         SLAC and SDP messages by name too

Field paths are dotted element names below the message element; a path may skip levels (the
field is searched below), so ``DC_ChargeLoopReq.EVTargetCurrent`` finds it inside the control-mode
element. Physical values (Value x 10^Exponent / Multiplier) compare as numbers.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from v2gtool.errors import V2GToolError
from v2gtool.pcap.analysis import walk
from v2gtool.pcap.records import SdpMessage, SlacMessage, TraceRecord, V2GMessage, message_element, physical_value

_OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, "<=": operator.le, ">=": operator.ge, "<": operator.lt, ">": operator.gt,
}
_EXPRESSION = re.compile(r"^\s*([A-Za-z_][\w.]*?)\s*(==|!=|<=|>=|<|>)\s*(.+?)\s*$")
_NAME = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*$")


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


def parse_filter(text: str) -> MessageFilter:
    """Parse one --filter expression; raise :class:`FilterError` with the reason."""
    match = _EXPRESSION.match(text)
    if match is not None:
        dotted, op, raw = match.groups()
        message, *path = dotted.split(".")
        if not path:
            raise FilterError(f"--filter {text!r}: compare a field of the message, e.g. {message}.ResponseCode {op} "
                              f"{raw}")
        return MessageFilter(message, tuple(path), _OPERATORS[op], _operand(raw))
    match = _NAME.match(text)
    if match is None:
        raise FilterError(f"--filter {text!r}: expected a message name or 'Message.Field OP value' "
                          f"(OP one of {', '.join(_OPERATORS)})")
    message, *path = match.group(1).split(".")
    return MessageFilter(message, tuple(path), None, None)


def _operand(raw: str) -> Any:
    unquoted = raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"" else None
    if unquoted is not None:
        return unquoted
    try:
        return float(raw)
    except ValueError:
        pass
    if raw in ("true", "false"):
        return "True" if raw == "true" else "False"
    return raw
