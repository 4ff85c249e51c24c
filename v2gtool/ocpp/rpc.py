"""The seam to the ``ocpp`` package (OCPP-J RPC over websockets, JSON-schema validated both ways).

The package is untyped; this module is the one place that touches its classes, so the rest of
:mod:`v2gtool.ocpp` stays typed. Both sides pick the protocol version the websocket handshake
negotiated (OCPP 2.0.1 part 4 3.1 "Sec-WebSocket-Protocol": ``ocpp2.1`` preferred over
``ocpp2.0.1``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar, cast

import ocpp.routing
import ocpp.v21
import ocpp.v201
from ocpp.exceptions import OCPPError

from v2gtool.ocpp.payloads import OCPP21, OCPP201

F = TypeVar("F", bound=Callable[..., Any])
SUBPROTOCOLS = (OCPP21, OCPP201)
BASES: dict[str, type[Any]] = {OCPP21: ocpp.v21.ChargePoint, OCPP201: ocpp.v201.ChargePoint}

__all__ = ["BASES", "SUBPROTOCOLS", "OCPPError", "for_version", "handles", "make_call", "result"]


def handles(action: str) -> Callable[[F], F]:
    """Mark a method as the handler of an incoming OCPP *action* (``ocpp.routing.on``)."""
    return cast(Callable[[F], F], ocpp.routing.on(action))


def make_call(peer: Any, action: str, payload: dict[str, Any]) -> Any:
    """The request object of *action* in *peer*'s negotiated version, from a snake_case payload.

    The package's field names differ between versions where the camelCase has digits
    (``iso15118_schema_version`` in 2.0.1, ``iso_15118_schema_version`` in 2.1; both are
    ``iso15118SchemaVersion`` on the wire), so keys are matched without their underscores.
    """
    cls = getattr(peer._call, action)
    names = {f.name.replace("_", ""): f.name for f in dataclasses.fields(cls)}
    return cls(**{names.get(key.replace("_", ""), key): value for key, value in payload.items()})


def result(peer: Any, action: str, **payload: Any) -> Any:
    """The response object of *action* in *peer*'s negotiated version."""
    return getattr(peer._call_result, action)(**payload)


def for_version(subprotocol: str | None, mixin: type[Any]) -> type[Any]:
    """The ``ocpp`` ChargePoint class of *subprotocol* with *mixin*'s handlers."""
    if subprotocol not in BASES:
        raise ValueError(f"no OCPP 2.x subprotocol negotiated (got {subprotocol!r})")
    return type(f"{mixin.__name__}_{subprotocol.replace('.', '')}", (mixin, BASES[subprotocol]), {})
