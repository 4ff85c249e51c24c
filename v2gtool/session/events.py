"""Typed events: what every protocol core and hardware backend reports, with a monotonic timestamp.

Renderers turn events into a rich live view, JSON lines (``--json``), the trace and the journal,
which is what makes every step chainable and pipeable (DESIGN.md rule 4). An event subclass is a
frozen dataclass; :meth:`Event.to_json` gives the JSON-lines record ``{"event": Name, "t": ..., ...}``.
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
from dataclasses import dataclass
from typing import Any


def jsonable(value: Any) -> Any:
    """Convert dataclasses, enums, bytes, IP addresses, tuples and nested containers into JSON-able values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.name
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


@dataclass(frozen=True, kw_only=True)
class Event:
    """Base of every event. ``t`` is a monotonic clock reading in seconds (real or virtual)."""

    t: float

    @property
    def name(self) -> str:
        """The event's type name, e.g. ``SlacMatched``."""
        return type(self).__name__

    def to_json(self) -> dict[str, Any]:
        """The JSON-lines record of this event."""
        record: dict[str, Any] = {"event": self.name}
        record.update(jsonable(self))
        return record
