"""What the commands need from the codec, in their terms: bytes in (raw EXI or V2GTP), JSON out, and back.

A V2GTP header (ISO 15118-20 Table 12) says which -20 schema set the EXI payload uses; 0x8001
carries the application handshake (or, in -2 and DIN, every message). Raw EXI names no schema set,
so the caller must.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from v2gtool import v2gtp
from v2gtool.exi import codec, jsonform
from v2gtool.exi.errors import EXIError
from v2gtool.exi.namespaces import NAMESPACES, Namespace, grammar, lookup

# Payload type of each schema set's messages when framed (ISO 15118-20 Table 12).
PAYLOAD_TYPE_OF: dict[str, int] = {
    "apphand": v2gtp.PayloadType.EXI,
    "iso2": v2gtp.PayloadType.EXI,  # -2 and DIN carry every message as 0x8001
    "din": v2gtp.PayloadType.EXI,
    **{ns: int(pt) for pt, ns in v2gtp.ISO20_PAYLOAD_NAMESPACES.items() if pt < 0x8100},
}


@dataclass(frozen=True)
class Decoded:
    """One decoded message in the JSON message form (``{name: {...}}``), with where it came from."""

    namespace: Namespace
    name: str
    document: dict[str, Any]
    payload_type: int | None


def decode_bytes(data: bytes, namespace: str | None = None, fragment: bool = False) -> Decoded:
    """Decode raw EXI or a V2GTP frame; the namespace comes from *namespace* or the payload type."""
    payload_type: int | None = None
    if v2gtp.looks_like_frame(data):
        frame = v2gtp.decode_frame(data)
        payload_type = frame.payload_type
        data = frame.payload
        if namespace is None:
            namespace = namespace_of_payload_type(payload_type)
    if namespace is None:
        raise EXIError("raw EXI does not say its schema set: give --namespace (e.g. iso20-dc) or V2GTP framing")
    ns = lookup(namespace)
    name, body = codec.decode(grammar(ns.short), data, fragment, as_json=True)
    return Decoded(ns, name, {name: body}, payload_type)


def decode_json(data: bytes, namespace: str) -> tuple[Namespace, dict[str, Any]]:
    """Decode the raw EXI document *data* of the schema set *namespace* into the JSON form ``{name: {...}}``.

    Straight into the JSON form, without message objects in between (the hot path of ``pcap-decode``).
    """
    ns = lookup(namespace)
    name, body = codec.decode(grammar(ns.short), data, as_json=True)
    return ns, {name: body}


def namespace_of_payload_type(payload_type: int) -> str:
    """The schema set of an EXI payload type (0x8001: the handshake, as -20 uses it)."""
    if payload_type == v2gtp.PayloadType.EXI:
        return "apphand"
    try:
        return v2gtp.ISO20_PAYLOAD_NAMESPACES[v2gtp.PayloadType(payload_type)]
    except (ValueError, KeyError):
        raise EXIError(f"V2GTP payload type 0x{payload_type:04X} carries no EXI message") from None


@cache
def _message_namespaces() -> dict[str, Namespace]:
    """Message name -> the first schema set (in NAMESPACES order) declaring it in its own namespace."""
    table: dict[str, Namespace] = {}
    for ns in NAMESPACES:
        for name in grammar(ns.short).messages():
            table.setdefault(name, ns)
    return table


def namespace_of_message(name: str) -> Namespace:
    """The schema set that declares the message *name* in its own namespace."""
    ns = _message_namespaces().get(name)
    if ns is not None:
        return ns
    raise EXIError(f"no schema set declares a message named {name!r} (check the spelling; names are case-sensitive)")


def encode_json(document: Any, namespace: str | None = None, fragment: bool = False,
                framed: bool = False) -> bytes:
    """Encode the JSON form of one message; *framed* adds the V2GTP header of its schema set."""
    if namespace is None:
        if not isinstance(document, dict) or len(document) != 1:
            raise EXIError('a message is a JSON object with exactly one key, e.g. {"SessionSetupReq": {...}}')
        ns = namespace_of_message(next(iter(document)))
    else:
        ns = lookup(namespace)
    schema = grammar(ns.short)
    name, message = jsonform.from_json(schema, document)
    data = codec.encode(schema, name, message, fragment)
    if framed:
        if ns.short not in PAYLOAD_TYPE_OF:
            raise EXIError(f"{ns.short} messages are not sent in V2GTP frames of their own")
        data = v2gtp.encode_frame(PAYLOAD_TYPE_OF[ns.short], data)
    return data
