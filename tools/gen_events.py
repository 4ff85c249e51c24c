#!/usr/bin/env python3
"""Regenerate ``man/v2gtool-events.7``: every event ``v2gtool --json session run`` writes as a JSON line.

The page comes from the event classes themselves (frozen dataclasses under
:class:`v2gtool.session.events.Event`, DESIGN.md rule 4) in the modules of :data:`SECTIONS`: each
event's name, the first paragraph of its docstring, and its fields with their JSON types as
:func:`v2gtool.session.events.jsonable` writes them. ``tests/tools`` fails while the committed page
differs from this output, and when ``session run`` loads an event module no section lists.
"""

from __future__ import annotations

import argparse
import dataclasses
import enum
import importlib
import inspect
import ipaddress
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path

from gen_man import MANUAL, PROG, bold, esc

from v2gtool import __version__
from v2gtool.session.events import Event
from v2gtool.slac.states import Role

REPO = Path(__file__).resolve().parent.parent
PAGE = f"{PROG}-events.7"

#: What the ``role`` field says in the events of a module: ISO 15118-3 names the SLAC roles EVSE and
#: EV (written as ``--role`` takes them), ISO 15118-20 its communication controllers SECC and EVCC.
ISO20_ROLES = ("SECC", "EVCC")
ROLES: dict[str, tuple[str, ...]] = {
    "v2gtool.slac.events": tuple(role.value for role in Role),
    "v2gtool.iso20.events": ISO20_ROLES,
    "v2gtool.net.v2g_tcp": ISO20_ROLES,
}


@dataclasses.dataclass(frozen=True)
class Section:
    """Events of one step of the chain, in the order a session meets them."""

    title: str
    text: str
    modules: tuple[str, ...]


SECTIONS = (
    Section("SCHEDULING", "With --rt or --cpu, first: the scheduling the process got.", ("v2gtool.realtime",)),
    Section(
        "STATION",
        "The charger's hardware and its safety interlock: --sim, --netns and --role evse (the station is the "
        "EVSE's).",
        ("v2gtool.hw.events",),
    ),
    Section(
        "SLAC",
        "ISO 15118-3 matching on the PLC link. With --sim and --netns both roles report; SlacMatched's nmk is empty "
        "(the key is never written out).",
        ("v2gtool.slac.events", "v2gtool.session.slac_step"),
    ),
    Section("SDP", "The SECC Discovery Protocol on ff02::1, UDP port 15118.", ("v2gtool.sdp",)),
    Section(
        "ISO 15118-20 SESSION",
        "The -20 messages of both sides, the phases, the power flow and the session's end.",
        ("v2gtool.iso20.events", "v2gtool.session.plant"),
    ),
    Section("CONNECTION", "The TCP connection (TLS 1.3 unless --no-tls) under the session.", ("v2gtool.net.v2g_tcp",)),
)


# --- types as JSON ---------------------------------------------------------------------------


def json_type(tp: object) -> str:
    """What :func:`~v2gtool.session.events.jsonable` makes of a value of type *tp*."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(json_type(arg) for arg in args)
    if origin in (tuple, list):
        return f"array of {json_type(args[0])}" if args else "array"
    if origin is dict:
        return f"object of {json_type(args[1])}" if args and args[1] is not typing.Any else "object"
    if tp is type(None):
        return "null"
    if tp is typing.Any:
        return "any"
    if isinstance(tp, type):
        if issubclass(tp, enum.Enum):
            return f"string ({tp.__name__}: {', '.join(member.name for member in tp)})"
        if dataclasses.is_dataclass(tp):
            return f"object ({tp.__name__})"
        if issubclass(tp, bytes | bytearray):
            return "string (hex)"
        if issubclass(tp, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return "string (IP address)"
        simple = {bool: "boolean", int: "integer", float: "number", str: "string"}
        if tp in simple:
            return simple[tp]
    raise SystemExit(f"gen_events: no JSON type for {tp!r}: teach json_type() how jsonable() writes it")


def nested(tp: object) -> type | None:
    """The dataclass inside *tp* (itself, or in an optional), whose fields the page lists below it."""
    for candidate in (tp, *typing.get_args(tp)):
        if isinstance(candidate, type) and dataclasses.is_dataclass(candidate):
            return candidate
    return None


def render_fields(cls: type, roles: tuple[str, ...] | None, skip: frozenset[str] = frozenset()) -> Iterator[str]:
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        kind = json_type(hints[field.name])
        if field.name == "role" and roles is not None:
            kind = f"{kind}, " + " or ".join(f'"{role}"' for role in roles)
        yield ".IP"
        yield f"{bold(field.name)}: {esc(kind)}"
        if (inner := nested(hints[field.name])) is not None:
            yield ".RS"
            yield from render_fields(inner, None)
            yield ".RE"


# --- docstrings ------------------------------------------------------------------------------

_MARKUP = (
    (re.compile(r":\w+:`~?(?:[\w.]+\.)?([\w]+)`"), r"\1"),  # :class:`~a.b.C` -> C
    (re.compile(r"``([^`]+)``"), r"\1"),
    (re.compile(r"\*([^*\s][^*]*)\*"), r"\1"),
)


def summary(cls: type) -> str | None:
    """The first paragraph of *cls*'s own docstring as plain text; None when it has none (a dataclass
    then makes one of its signature)."""
    doc = cls.__dict__.get("__doc__")
    if not doc or doc.startswith(f"{cls.__name__}("):
        return None
    text = " ".join(inspect.cleandoc(doc).split("\n\n")[0].split())
    for pattern, replacement in _MARKUP:
        text = pattern.sub(replacement, text)
    return text


# --- the page --------------------------------------------------------------------------------


def events_of(module_name: str) -> list[type[Event]]:
    """The Event subclasses *module_name* defines, in the order it defines them."""
    module = importlib.import_module(module_name)
    return [
        obj for obj in vars(module).values()
        if isinstance(obj, type) and issubclass(obj, Event) and obj is not Event and obj.__module__ == module_name
    ]


def role_values(module_name: str, cls: type[Event]) -> tuple[str, ...] | None:
    if "role" not in {field.name for field in dataclasses.fields(cls)}:
        return None
    if module_name not in ROLES:
        raise SystemExit(f"gen_events: {cls.__name__} has a role field: say in ROLES what {module_name} writes in it")
    return ROLES[module_name]


def page() -> str:
    common = frozenset(field.name for field in dataclasses.fields(Event))
    out = [
        f'.TH {esc(PAGE.removesuffix(".7").upper())} 7 "" "{PROG} {__version__}" "{MANUAL}"',
        ".SH NAME",
        f"{esc(PROG)}\\-events \\- the JSON lines of {esc(PROG)} session run \\-\\-json",
        ".SH SYNOPSIS",
        f"{bold('v2gtool --json session run')} ... | {bold('jq')} \\-c 'select(.event == \"PowerFlow\")'",
        ".SH DESCRIPTION",
        ".PP",
        esc("Each line is one JSON object: one event of the session, written when it happens. Every object "
            "has \"event\", the event's type (the headings below), and \"t\", a number: seconds on a monotonic "
            "clock. With --sim one simulated clock runs through the whole chain. With --netns and --role each "
            "side counts its own: SLAC on the system's monotonic clock, the station and the ISO 15118-20 "
            "session on the plant's time line from 0; compare t within one step of one side. "
            "The other keys are the event's fields, in the order listed. Bytes are hex strings, "
            "enumerations their member names, and a field of an object type is an object with the fields "
            "listed under it. Select on \"event\" and ignore keys you do not know: a later version may add some."),
        ".PP",
        esc("The \"role\" field names the side that reported the event, in the words of the standard of its "
            "step, and so differently per step: \"" + '" or "'.join(ROLES["v2gtool.slac.events"]) + "\" in the "
            "SLAC events (ISO 15118-3's EV and EVSE, as --role takes them), \"" + '" or "'.join(ISO20_ROLES)
            + "\" in the ISO 15118-20 session and connection events (its communication controllers). Events "
            "without a role field say by their description which side reports them (the station's are the "
            "EVSE's)."),
        ".PP",
        esc("Under systemd (JOURNAL_STREAM set) and without --json, the same events go to the journal as "
            "structured records: V2G_EVENT is the type, V2G_<FIELD> each field (journalctl -t v2gtool)."),
    ]
    for section in SECTIONS:
        out += [f".SH {esc(section.title)}", ".PP", esc(section.text)]
        for module_name in section.modules:
            for cls in events_of(module_name):
                out += [".SS " + esc(cls.__name__)]
                if (text := summary(cls)) is not None:
                    out += [".PP", esc(text)]
                out += [".PD 0", *render_fields(cls, role_values(module_name, cls), skip=common), ".PD"]
    out += [".SH SEE ALSO", f"\\fB{PROG}\\-session\\fR(1), \\fB{PROG}\\fR(1), \\fBjq\\fR(1)"]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description="Regenerate the event reference of v2gtool session run --json.")
    parser.add_argument("--out", type=Path, default=REPO / "man", help="output directory")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / PAGE
    path.write_text(page())
    print(path)


if __name__ == "__main__":
    main()
