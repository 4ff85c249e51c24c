"""The schema sets the codec knows: short names, namespace URNs and their compiled grammars.

Each ISO 15118-20 namespace (CommonMessages, DC, AC, WPT, ACDP) is a schema set of its own with
its own EXI grammar (ISO 15118-20 clause 8.3; see ../shared/spec/exi-profile.md). The application
handshake is a set of its own, and SignedInfo fragments use the xmldsig-only grammar.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from functools import cache

from v2gtool.exi.errors import EXIError
from v2gtool.exi.grammar import SchemaGrammar


@dataclass(frozen=True)
class Namespace:
    """A schema set: the name used on the command line, its URN and its generated module."""

    short: str
    urn: str
    module: str
    title: str


NAMESPACES: tuple[Namespace, ...] = (
    Namespace("apphand", "urn:iso:15118:2:2010:AppProtocol", "apphand", "application handshake"),
    Namespace("iso20", "urn:iso:std:iso:15118:-20:CommonMessages", "iso20_cm", "ISO 15118-20 CommonMessages"),
    Namespace("iso20-dc", "urn:iso:std:iso:15118:-20:DC", "iso20_dc", "ISO 15118-20 DC (incl. DC_BPT)"),
    Namespace("iso20-ac", "urn:iso:std:iso:15118:-20:AC", "iso20_ac", "ISO 15118-20 AC (incl. AC_BPT)"),
    Namespace("iso20-wpt", "urn:iso:std:iso:15118:-20:WPT", "iso20_wpt", "ISO 15118-20 WPT"),
    Namespace("iso20-acdp", "urn:iso:std:iso:15118:-20:ACDP", "iso20_acdp", "ISO 15118-20 ACDP"),
    Namespace("iso2", "urn:iso:15118:2:2013:MsgDef", "iso2", "ISO 15118-2:2014"),
    Namespace("din", "urn:din:70121:2012:MsgDef", "din", "DIN SPEC 70121:2014"),
    Namespace("xmldsig", "http://www.w3.org/2000/09/xmldsig#", "xmldsig", "XML Signature (SignedInfo)"),
)
_BY_NAME = {n.short: n for n in NAMESPACES} | {n.urn: n for n in NAMESPACES}


def lookup(name: str) -> Namespace:
    """Find a schema set by short name or URN; the error lists the valid names."""
    ns = _BY_NAME.get(name) or _BY_NAME.get(name.lower())
    if ns is None:
        valid = ", ".join(n.short for n in NAMESPACES)
        raise EXIError(f"unknown namespace {name!r}; use a schema URN or one of: {valid}")
    return ns


@cache
def grammar(name: str) -> SchemaGrammar:
    """The compiled grammar of a schema set (imported on first use)."""
    ns = lookup(name)
    return SchemaGrammar(importlib.import_module(f"v2gtool.exi.generated.{ns.module}"))
