"""Every incoming OCPP-J frame answered: the RPC framework's CALLERROR instead of silence or a traceback.

The ``ocpp`` package's ChargePoint leaves gaps on the receiving side: a frame that is no JSON or no
OCPP-J array is logged with a full traceback and never answered, and over OCPP 2.1 a CALL with no
handler gets no answer at all (its ``_raise_key_error`` knows only 1.6 and 2.0.1). Mixed in before
the package's ChargePoint, :class:`AnswersEveryFrame` replaces its ``route_message`` hook so that
every CALL gets its CALLRESULT or a CALLERROR (OCPP 2.0.1 / 2.1 part 4 4.2.3, error codes 4.3):

==================================  =========================================================
frame                               CALLERROR
==================================  =========================================================
no JSON, or no string MessageId     RpcFrameworkError, MessageId "-1" (its own cannot be read)
other than ``[2, Id, Action, {}]``  ProtocolError ("not conform the PDU structure")
an unknown MessageTypeId            MessageTypeNotSupported (2.1's CALLRESULTERROR and SEND:
                                    not answered, part 4 4.2.4 / 4.2.5)
a CALL of an Action not known       NotImplemented ("not known by the receiver")
a known Action without a handler    NotSupported ("recognized but not supported")
a payload the schema refuses        by the violated keyword (:data:`SCHEMA_CODES`): a required
                                    field missing OccurrenceConstraintViolation, a wrong JSON
                                    type TypeConstraintViolation, a field the message does not
                                    have FormatViolation, a value not allowed (enum, length,
                                    range) PropertyConstraintViolation
a handler that raises               InternalError
==================================  =========================================================

Each refused frame is reported once, as a :class:`FrameRejected` event (one line, its description
naming the field, never a Python repr of the payload); a traceback only when the peer's
:attr:`AnswersEveryFrame.debug` is set (``--debug``). A malformed CALLRESULT or CALLERROR, or one
whose MessageId is not that of the CALL awaiting its answer, is reported but not answered (a
response is never answered).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import ocpp.v21.enums
import ocpp.v201.enums
from ocpp.charge_point import camel_to_snake_case, remove_nones, serialize_as_dict, snake_to_camel_case
from ocpp.messages import Call, CallError, CallResult, get_validator

from v2gtool.session.events import Event

UNKNOWN_ID = "-1"  # the MessageId of a CALLERROR to a frame whose own cannot be read (part 4 4.2.3)
MAX_DESCRIPTION = 255  # errorDescription is at most 255 characters (part 4 4.2.3)
# The Actions each version defines: one without a handler here is NotSupported, any other NotImplemented.
ACTIONS = {
    "2.0.1": frozenset(a.value for a in ocpp.v201.enums.Action),
    "2.1": frozenset(a.value for a in ocpp.v21.enums.Action),
}
# The CALLERROR of a payload by the JSON schema keyword it violates (part 4 4.3); any other keyword
# (enum, maxLength, minimum, ...) is a value not allowed: PropertyConstraintViolation.
SCHEMA_CODES = {
    "required": "OccurrenceConstraintViolation",
    "minItems": "OccurrenceConstraintViolation",
    "maxItems": "OccurrenceConstraintViolation",
    "type": "TypeConstraintViolation",
    "additionalProperties": "FormatViolation",
}
JSON_TYPES = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "a boolean",
              "object": "an object", "array": "an array", "null": "null"}  # fmt: skip
log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class FrameRejected(Event):
    """A peer's frame answered with a CALLERROR (or, when it was no CALL, only dropped)."""

    station: str
    message_id: str
    code: str
    reason: str


class CallRejected(Exception):
    """A frame answered with a CALLERROR: *code* is one of the RPC framework's error codes (part 4
    4.3), *reason* its one-line errorDescription."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def decode_frame(raw: str | bytes) -> list[Any]:
    """The JSON array of an OCPP-J frame (part 4 4.1.3) with a string MessageId; RpcFrameworkError
    ("MessageId could not be read", part 4 4.3) when it is not JSON (RFC 8259 has no NaN or
    Infinity) or no such array."""

    def no_constant(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        frame = json.loads(raw, parse_constant=no_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CallRejected("RpcFrameworkError", f"not a JSON frame: {exc}") from None
    except RecursionError:
        raise CallRejected("RpcFrameworkError", "not a JSON frame: nested too deeply") from None
    if not (isinstance(frame, list) and len(frame) >= 2 and isinstance(frame[1], str)):
        raise CallRejected("RpcFrameworkError", "no MessageId: not an OCPP-J frame [MessageTypeId, MessageId, ...]")
    return frame


def check_payload(message_type_id: int, action: str, payload: dict[str, Any], version: str) -> None:
    """The payload against its schema in OCPP *version*: :class:`CallRejected` with the code of the
    keyword it violates (:data:`SCHEMA_CODES`) and a description naming the field."""
    error = next(iter(get_validator(message_type_id, action, version).iter_errors(payload)), None)
    if error is None:
        return
    field = ".".join(str(p) if isinstance(p, str) else f"[{p}]" for p in error.absolute_path).replace(".[", "[")
    where = f"{action} {field}" if field else action
    keyword, limit, value = str(error.validator), error.validator_value, error.instance
    if keyword == "required":
        what = f"has no {', '.join(name for name in limit if name not in value)}"
    elif keyword == "type":
        what = f"is not {' or '.join(JSON_TYPES.get(t, t) for t in ([limit] if isinstance(limit, str) else limit))}"
    elif keyword == "additionalProperties":
        known = error.schema.get("properties", {})
        what = f"has no field {next((name for name in value if name not in known), '?')}"
    else:
        shown = json.dumps(value)
        what = f"{shown if len(shown) <= 40 else shown[:37] + '...'} violates its {keyword} {json.dumps(limit)}"
    raise CallRejected(SCHEMA_CODES.get(keyword, "PropertyConstraintViolation"), f"{where} {what}")


def response(frame: list[Any]) -> Any:
    """The ``ocpp`` message of a CALLRESULT ``[3, MessageId, {Payload}]`` or CALLERROR ``[4,
    MessageId, errorCode, errorDescription, {errorDetails}]`` (part 4 4.2.2, 4.2.3)."""
    if frame[0] == CallResult.message_type_id and len(frame) == 3 and isinstance(frame[2], dict):
        return CallResult(*frame[1:])
    if frame[0] == CallError.message_type_id and len(frame) == 5 and isinstance(frame[2], str):
        return CallError(*frame[1:])
    raise CallRejected("ProtocolError", "a CALLRESULT is [3, MessageId, {Payload}], a CALLERROR has 5 elements")


class AnswersEveryFrame:
    """The ``route_message`` of an ``ocpp`` ChargePoint that answers every frame (see the module).

    Put it before the package's ChargePoint in the bases; override :meth:`frame_rejected` to report
    refused frames elsewhere than the log."""

    debug: bool = False  # a handler's traceback is logged (else its one-line InternalError only)
    _awaited: str | None = None  # the MessageId of the CALL of ours awaiting its answer
    # set by the ocpp ChargePoint: the peer's id, the handlers, the version, the pending call's inbox
    id: str
    route_map: dict[str, dict[str, Any]]
    _ocpp_version: str
    _response_queue: asyncio.Queue[Any]
    _send: Callable[[str], Awaitable[None]]

    async def route_message(self, raw: str | bytes) -> None:
        """Every frame from the peer (the ``ocpp`` ChargePoint's hook): a CALLRESULT or CALLERROR goes
        to the pending call, a CALL is answered with its CALLRESULT or a CALLERROR, and so is a frame
        that cannot be read or has a MessageTypeId this side does not know."""
        try:
            frame = decode_frame(raw)
        except CallRejected as error:
            await self._send(self._rejected(UNKNOWN_ID, error))
            return
        kind, message_id = frame[0] if type(frame[0]) is int else None, frame[1]
        if kind in (CallResult.message_type_id, CallError.message_type_id):
            try:
                answer = response(frame)
                if message_id != self._awaited:  # late, repeated or made up: no CALL of ours awaits it
                    raise CallRejected("ProtocolError", "an answer to no CALL awaiting one: dropped")
                self._response_queue.put_nowait(answer)
            except CallRejected as error:
                self._rejected(message_id, error)
            return
        if kind != Call.message_type_id:
            reply = self._rejected(message_id, CallRejected("MessageTypeNotSupported", f"MessageTypeId {frame[0]}"))
            if not (self._ocpp_version == "2.1" and kind in (5, 6)):
                await self._send(reply)
            return
        try:
            reply = await self._answer(frame)
        except CallRejected as error:
            reply = self._rejected(message_id, error)
        except Exception as exc:  # a bug of ours: the peer still gets its answer
            if self.debug:
                log.error("%s: %s", self.id, frame[2], exc_info=exc)
            reply = self._rejected(message_id, CallRejected("InternalError", f"{type(exc).__name__}: {exc}"))
        await self._send(reply)

    async def _get_specific_response(self, unique_id: str, timeout: float) -> Any:
        """The answer to our CALL *unique_id* within *timeout* s (the ``ocpp`` ChargePoint's hook, run
        under its call lock, so one CALL at a time): :meth:`route_message` queues only that one and
        reports any other as one :class:`FrameRejected` (the package would log its Python repr)."""
        while not self._response_queue.empty():  # one queued as the CALL before timed out
            self._response_queue.get_nowait()
        self._awaited = unique_id
        try:
            return await asyncio.wait_for(self._response_queue.get(), timeout)
        finally:
            self._awaited = None

    async def _answer(self, frame: list[Any]) -> str:
        """The CALLRESULT of a CALL ``[2, MessageId, Action, {Payload}]`` (part 4 4.2.1): the payload
        checked against the version's schema, handled, and the response checked too."""
        if len(frame) != 4 or not isinstance(frame[2], str) or not isinstance(frame[3], dict):
            raise CallRejected("ProtocolError", "a CALL is [2, MessageId, Action, {Payload}]")
        call = Call(*frame[1:])
        handler = self.route_map.get(call.action, {}).get("_on_action")
        if handler is None:
            if call.action in ACTIONS[self._ocpp_version]:
                raise CallRejected("NotSupported", f"{call.action} is not supported here")
            raise CallRejected("NotImplemented", f"{call.action[:40]!r} is not an OCPP {self._ocpp_version} action")
        check_payload(Call.message_type_id, call.action, call.payload, self._ocpp_version)
        result = handler(**camel_to_snake_case(call.payload))
        if inspect.isawaitable(result):
            result = await result
        reply = call.create_call_result(snake_to_camel_case(remove_nones(serialize_as_dict(result))))
        try:
            check_payload(CallResult.message_type_id, call.action, reply.payload, self._ocpp_version)
        except CallRejected as error:  # our answer breaks the schema: a bug of ours
            raise CallRejected("InternalError", f"our answer: {error.reason}") from None
        return str(reply.to_json())

    def _rejected(self, message_id: str, error: CallRejected) -> str:
        """Report one refused frame (:meth:`frame_rejected`); its CALLERROR (part 4 4.2.3)."""
        reason = " ".join(error.reason.split())[:MAX_DESCRIPTION]
        self.frame_rejected(
            FrameRejected(t=time.time(), station=self.id, message_id=message_id[:36], code=error.code, reason=reason)
        )
        return str(CallError(message_id, error.code, reason, {}).to_json())

    def frame_rejected(self, event: FrameRejected) -> None:
        """Told of every refused frame: one log line here."""
        log.warning("%s: frame %s refused: %s %s", event.station, event.message_id, event.code, event.reason)
