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
    # An EXI stream starts 0x80 (EXI 1.0 section 5), a V2GTP header 0x01 (its protocol version): input
    # starting 0x01 is a frame, and a malformed header is reported as such (V2GTPError names the byte).
    if data[:1] == bytes((v2gtp.PROTOCOL_VERSION,)):
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
def _declaring_sets() -> tuple[dict[str, tuple[Namespace, ...]], dict[str, tuple[Namespace, ...]]]:
    """Element name -> every schema set declaring it in its own namespace: as a message (a global
    element, a document root: EXI 1.0 section 8.5.1), and as any element (the fragment grammar,
    section 8.5.2: local elements too, e.g. the signed -20 ``PnC_AReqAuthorizationMode``)."""
    messages: dict[str, list[Namespace]] = {}
    elements: dict[str, list[Namespace]] = {}
    for ns in NAMESPACES:
        schema = grammar(ns.short)
        for name in schema.messages():
            messages.setdefault(name, []).append(ns)
        for name, kind, _arg, own in schema.fragments:
            if own and kind >= 0 and ns not in elements.get(name, ()):
                elements.setdefault(name, []).append(ns)
    return ({k: tuple(v) for k, v in messages.items()}, {k: tuple(v) for k, v in elements.items()})


def namespace_of_message(name: str) -> Namespace:
    """The one schema set that declares the element *name* in its own namespace: as a message, else
    as an element usable as a fragment. A name two sets declare (``V2G_Message`` of ISO 15118-2 and
    DIN SPEC 70121, whose streams do not say which: see exi-profile.md) is an error asking for the
    namespace, never a guess that encodes the other standard's grammar."""
    messages, elements = _declaring_sets()
    sets = messages.get(name) or elements.get(name)
    if sets is None:
        raise EXIError(f"no schema set declares an element named {name!r} "
                       "(check the spelling; names are case-sensitive)")
    if len(sets) > 1:
        raise EXIError(f"{name} is declared by {', '.join(ns.short for ns in sets)}: "
                       "give --namespace to say which")
    return sets[0]


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
