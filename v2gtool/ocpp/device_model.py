"""The station's device model: the variables GetVariables reads (OCPP 2.0.1 B06) and SetVariables
writes (B05), under the standardized component and variable names (part 2, "Referenced Components
and Variables").

It holds only variables the bridge has and uses, each bound to what runs: a value the CSMS sets takes
effect at once (never RebootRequired, B05.FR.09), and lasts until the bridge restarts, when its
configuration applies again. Every variable has the Actual attribute only; the writable ones are
integers within bounds. Names and instances are case-insensitive (the schemas' ComponentType and
VariableType); every component here is the station's own, with no instance and no EVSE.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

ACTUAL = "Actual"  # the attributeType a request without one means (B05.FR.12, B06.FR.11)
INTEGER = re.compile(r"[+-]?[0-9]+")  # the integer dataType's value: ASCII digits only, no "1_000"


@dataclass(frozen=True)
class Variable:
    """One component's variable: *read* gives its Actual value; *write* (None: ReadOnly) takes an
    integer from *low* to *high*, both included."""

    component: str
    name: str
    read: Callable[[], str]
    instance: str | None = None
    write: Callable[[int], None] | None = None
    low: int = 0
    high: int = 0


@dataclass(frozen=True)
class Answer:
    """The attributeStatus of one GetVariableData or SetVariableData, the value read (GetVariables
    Accepted), and the statusInfo's reasonCode and text of a Rejected."""

    status: str
    value: str | None = None
    code: str = ""
    reason: str = ""


def number(value: float) -> str:
    """A number of seconds or times as a variable's value: an integer when it is whole (a float
    from the command line, such as ``--meter-interval 0.5``, stays what it is)."""
    return str(int(value)) if value == int(value) else str(value)


def bound(
    component: str, name: str, owner: object, attribute: str, low: int, high: int, instance: str | None = None
) -> Variable:
    """A ReadWrite variable that is *owner*'s *attribute*, a number from *low* to *high*."""
    return Variable(
        component,
        name,
        lambda: number(getattr(owner, attribute)),
        instance,
        lambda value: setattr(owner, attribute, value),
        low,
        high,
    )


def _key(name: str, instance: str | None) -> tuple[str, str]:
    return name.lower(), (instance or "").lower()


class DeviceModel:
    """The variables a station answers for, by component and variable name and instance."""

    def __init__(self, variables: Iterable[Variable]) -> None:
        self._variables = {(_key(v.component, None), _key(v.name, v.instance)): v for v in variables}
        self._components = {component for component, _ in self._variables}

    def _find(self, data: dict[str, Any]) -> Variable | Answer:
        """The variable a GetVariableData or SetVariableData names, or the answer that it has none:
        UnknownComponent (B05.FR.04, B06.FR.06), UnknownVariable (B05.FR.05, B06.FR.07), or
        NotSupportedAttributeType for any attribute but Actual (B05.FR.06, B06.FR.08)."""
        component, variable = data["component"], data["variable"]
        key = _key(component["name"], component.get("instance"))
        if "evse" in component or key not in self._components:
            return Answer("UnknownComponent")
        found = self._variables.get((key, _key(variable["name"], variable.get("instance"))))
        if found is None:
            return Answer("UnknownVariable")
        if data.get("attribute_type", ACTUAL) != ACTUAL:
            return Answer("NotSupportedAttributeType")
        return found

    def get(self, data: dict[str, Any]) -> Answer:
        """GetVariables (B06) of one GetVariableData: Accepted with the Actual value (B06.FR.10)."""
        found = self._find(data)
        return found if isinstance(found, Answer) else Answer("Accepted", found.read())

    def set(self, data: dict[str, Any]) -> Answer:
        """SetVariables (B05) of one SetVariableData, applied when Accepted (B05.FR.10): Rejected for
        a ReadOnly variable (B05.FR.08, reasonCode ReadOnly), and for a value that is no integer
        (B05.FR.07, InvalidValue) or one out of the variable's bounds (ValueOutOfRange)."""
        found = self._find(data)
        if isinstance(found, Answer):
            return found
        text = data["attribute_value"].strip()
        name = f"{found.component}.{found.name}" + (f"({found.instance})" if found.instance else "")
        if found.write is None:
            return Answer("Rejected", code="ReadOnly", reason=f"{name} is read-only")
        if not INTEGER.fullmatch(text):
            return Answer("Rejected", code="InvalidValue", reason=f"{name} is an integer, not {text[:40]!r}")
        value = int(text)
        if not found.low <= value <= found.high:
            return Answer("Rejected", code="ValueOutOfRange", reason=f"{name} is from {found.low} to {found.high}")
        found.write(value)
        return Answer("Accepted")
