"""Helpers shared by the OCPP unit tests: payloads through the ``ocpp`` package's own conversion and
JSON-schema validation, as they travel on the wire between a station and a CSMS."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ocpp.charge_point import camel_to_snake_case, snake_to_camel_case
from ocpp.messages import Call, validate_payload

from v2gtool.ocpp.payloads import OCPP21, OCPP201

VERSIONS = {OCPP201: "2.0.1", OCPP21: "2.1"}


async def until(condition: Callable[[], bool], seconds: float) -> bool:
    """Poll *condition* every 50 ms for at most *seconds*; whether it came true (e.g. a bridge's
    outbox drained, a station connected)."""
    for _ in range(max(1, round(seconds / 0.05))):
        if condition():
            return True
        await asyncio.sleep(0.05)
    return condition()


def over_the_wire(action: str, payload: dict[str, Any], subprotocol: str) -> dict[str, Any]:
    """*payload* (snake_case) as the receiving side's handler gets it: camelCase on the wire,
    validated against the version's schema (raises the package's OCPPError subclasses when not),
    and converted back to snake_case."""
    call = Call("19223201", action, snake_to_camel_case(payload))
    asyncio.run(validate_payload(call, VERSIONS[subprotocol]))
    received: dict[str, Any] = camel_to_snake_case(call.payload)
    return received
