"""Reading XML Schema files into the small model the EXI schema compiler needs.

Only what the V2G schemas use is modelled: global and local element declarations, substitution
groups, named and anonymous complex types (sequence, choice, extension, restriction, simple
content, mixed content, attributes, wildcards) and simple types (restriction facets, lists).
Anything else is a compile error naming the file and construct, never silently ignored.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path

XS = "http://www.w3.org/2001/XMLSchema"
QName = tuple[str, str]  # (namespace URI, local name)
UNBOUNDED = -1


class SchemaError(Exception):
    """The XSD uses a construct the compiler does not know, or refers to something undefined."""


@dataclass
class Facets:
    """Constraining facets of a simple type (XML Schema Part 2, 4.3)."""

    min_inclusive: int | None = None
    max_inclusive: int | None = None
    length: int | None = None
    min_length: int | None = None
    max_length: int | None = None
    enumeration: list[str] = field(default_factory=list)
    pattern: str | None = None


@dataclass
class SimpleType:
    """A simple type reduced to its built-in primitive and the facets that accumulated on the way."""

    name: QName | None
    builtin: str  # local name of the XML Schema built-in it derives from (e.g. "unsignedShort")
    facets: Facets
    item: SimpleType | None = None  # for xs:list


@dataclass
class ElementDecl:
    """An element declaration; ``type`` resolved lazily through the schema set."""

    qname: QName
    type_ref: QName | None
    anon_type: ComplexType | SimpleType | None
    is_global: bool
    abstract: bool = False
    substitution_group: QName | None = None
    nillable: bool = False


@dataclass
class Wildcard:
    """``xs:any`` / ``xs:anyAttribute``: the namespace constraint as written."""

    namespace: str


@dataclass
class Particle:
    """A term (element, model group or wildcard) with its occurrence bounds."""

    term: ElementDecl | ModelGroup | Wildcard
    min_occurs: int
    max_occurs: int  # UNBOUNDED for "unbounded"


@dataclass
class ModelGroup:
    """``xs:sequence`` or ``xs:choice`` with its particles in schema order."""

    kind: str
    particles: list[Particle]


@dataclass
class AttributeUse:
    """An attribute declared on a complex type."""

    qname: QName
    type: SimpleType
    required: bool


@dataclass
class ComplexType:
    """A complex type as XML Schema defines its content: element-only, mixed, simple or empty."""

    name: QName | None
    base: QName | None = None
    derivation: str | None = None  # "extension" or "restriction"
    particle: Particle | None = None  # own particle, before combining with the base
    simple_content: SimpleType | None = None
    simple_base: QName | None = None  # simpleContent derived from a complex type
    attributes: list[AttributeUse] = field(default_factory=list)
    attribute_wildcard: Wildcard | None = None
    mixed: bool = False
    abstract: bool = False


BUILTIN_INTEGER_BOUNDS: dict[str, tuple[int | None, int | None]] = {
    "integer": (None, None),
    "nonNegativeInteger": (0, None),
    "positiveInteger": (1, None),
    "nonPositiveInteger": (None, 0),
    "negativeInteger": (None, -1),
    "long": (-(2**63), 2**63 - 1),
    "int": (-(2**31), 2**31 - 1),
    "short": (-(2**15), 2**15 - 1),
    "byte": (-128, 127),
    "unsignedLong": (0, 2**64 - 1),
    "unsignedInt": (0, 2**32 - 1),
    "unsignedShort": (0, 2**16 - 1),
    "unsignedByte": (0, 255),
}
BUILTIN_STRINGS = {"string", "normalizedString", "token", "ID", "IDREF", "NCName", "Name", "anyURI", "language"}
BUILTIN_OTHER = {"boolean", "hexBinary", "base64Binary", "decimal", "float", "double", "dateTime"}


class SchemaSet:
    """All declarations reachable from one root XSD through xs:import and xs:include."""

    def __init__(self, root: Path) -> None:
        self.elements: dict[QName, ElementDecl] = {}
        self.complex_types: dict[QName, ComplexType] = {}
        self.simple_types: dict[QName, SimpleType] = {}
        self._raw_simple: dict[QName, tuple[ET.Element, dict[str, str], str]] = {}
        self.local_elements: list[ElementDecl] = []
        self._loaded: set[Path] = set()
        # The ur-type (XSD 3.4.7) for elements declared without a type: mixed, any elements.
        self.any_type = ComplexType(
            name=(XS, "anyType"),
            mixed=True,
            particle=Particle(ModelGroup("sequence", [Particle(Wildcard("##any"), 0, UNBOUNDED)]), 1, 1),
        )
        self._load(root.resolve())

    # -- loading ---------------------------------------------------------------------------------
    def _load(self, root: Path) -> None:
        """Two passes: collect every file and its simple types first, then parse declarations."""
        files: list[tuple[Path, ET.Element, _FileContext]] = []
        pending = [root]
        while pending:
            path = pending.pop()
            if path in self._loaded:
                continue
            self._loaded.add(path)
            nsmap: dict[str, str] = {}
            for _event, item in ET.iterparse(path, events=("start-ns",)):
                prefix, uri = item  # type: ignore[misc]
                nsmap.setdefault(prefix, uri)
            node = ET.parse(path).getroot()
            tns = node.get("targetNamespace", "")
            ctx = _FileContext(self, path, nsmap, tns, node.get("elementFormDefault") == "qualified",
                               node.get("attributeFormDefault") == "qualified")
            files.append((path, node, ctx))
            for child in node:
                tag = _local(child.tag)
                if tag in ("import", "include") and child.get("schemaLocation"):
                    pending.append((path.parent / child.attrib["schemaLocation"]).resolve())
                elif tag == "simpleType":
                    self._raw_simple[(tns, child.attrib["name"])] = (child, nsmap, str(path))
        for path, node, ctx in files:
            for child in node:
                tag = _local(child.tag)
                if tag == "element":
                    decl = ctx.element(child, is_global=True)
                    placeholder = self.elements.get(decl.qname)
                    if placeholder is not None:  # referenced before it was declared
                        placeholder.__dict__.update(decl.__dict__)
                    else:
                        self.elements[decl.qname] = decl
                elif tag == "complexType":
                    name = (ctx.tns, child.attrib["name"])
                    self.complex_types[name] = ctx.complex_type(child, name)
                elif tag in ("group", "attributeGroup", "attribute"):
                    raise SchemaError(f"{path.name}: top-level xs:{tag} is not supported")
                elif tag not in ("import", "include", "simpleType", "annotation", "notation"):
                    raise SchemaError(f"{path.name}: unexpected top-level xs:{tag}")

    def simple_type(self, qname: QName) -> SimpleType:
        """Resolve a named simple type (built-in or declared)."""
        if qname[0] == XS:
            return _builtin(qname[1])
        resolved = self.simple_types.get(qname)
        if resolved is not None:
            return resolved
        raw = self._raw_simple.get(qname)
        if raw is None:
            raise SchemaError(f"undefined simple type {{{qname[0]}}}{qname[1]}")
        node, nsmap, path = raw
        st = _FileContext(self, Path(path), nsmap, qname[0], True, False).simple_type(node, qname)
        self.simple_types[qname] = st
        return st

    def is_simple(self, qname: QName) -> bool:
        return (qname[0] == XS and qname[1] != "anyType") or qname in self._raw_simple

    def type_of(self, decl: ElementDecl) -> ComplexType | SimpleType:
        """The (resolved) type of an element declaration."""
        if decl.anon_type is not None:
            return decl.anon_type
        if decl.type_ref is None:
            if decl.substitution_group is not None:
                return self.type_of(self.elements[decl.substitution_group])
            return self.any_type
        if self.is_simple(decl.type_ref):
            return self.simple_type(decl.type_ref)
        ct = self.complex_types.get(decl.type_ref)
        if ct is None:
            raise SchemaError(f"element {decl.qname[1]}: undefined type {decl.type_ref[1]}")
        return ct

    def substitutes(self, head: QName) -> list[ElementDecl]:
        """Every global element that can substitute for *head*, transitively (not the head itself)."""
        out: list[ElementDecl] = []
        for decl in self.elements.values():
            group = decl.substitution_group
            while group is not None:
                if group == head:
                    out.append(decl)
                    break
                group = self.elements[group].substitution_group
        return out


class _FileContext:
    """Parsing helpers bound to one XSD file's prefixes, target namespace and form defaults."""

    def __init__(self, schema: SchemaSet, path: Path, nsmap: dict[str, str], tns: str,
                 element_qualified: bool, attribute_qualified: bool) -> None:
        self.schema = schema
        self.path = path
        self.nsmap = nsmap
        self.tns = tns
        self.element_qualified = element_qualified
        self.attribute_qualified = attribute_qualified

    def qname(self, text: str) -> QName:
        prefix, _, local = text.rpartition(":")
        uri = self.nsmap.get(prefix)
        if uri is None:
            raise SchemaError(f"{self.path.name}: unknown prefix {prefix!r} in {text!r}")
        return (uri, local)

    def error(self, what: str) -> SchemaError:
        return SchemaError(f"{self.path.name}: {what}")

    def element(self, node: ET.Element, is_global: bool) -> ElementDecl:
        name = node.attrib["name"]
        qualified = is_global or node.get("form", "qualified" if self.element_qualified else "") == "qualified"
        qname = (self.tns if qualified else "", name)
        anon: ComplexType | SimpleType | None = None
        for child in node:
            tag = _local(child.tag)
            if tag == "complexType":
                anon = self.complex_type(child, None)
            elif tag == "simpleType":
                anon = self.simple_type(child, None)
        type_attr = node.get("type")
        decl = ElementDecl(
            qname=qname,
            type_ref=self.qname(type_attr) if type_attr else None,
            anon_type=anon,
            is_global=is_global,
            abstract=node.get("abstract") == "true",
            substitution_group=self.qname(group) if (group := node.get("substitutionGroup")) else None,
            nillable=node.get("nillable") == "true",
        )
        if not is_global:
            self.schema.local_elements.append(decl)
        return decl

    def complex_type(self, node: ET.Element, name: QName | None) -> ComplexType:
        ct = ComplexType(name=name, mixed=node.get("mixed") == "true", abstract=node.get("abstract") == "true")
        for child in node:
            tag = _local(child.tag)
            if tag in ("sequence", "choice", "all"):
                ct.particle = self.particle(child)
            elif tag == "attribute":
                ct.attributes.append(self.attribute(child))
            elif tag == "anyAttribute":
                ct.attribute_wildcard = Wildcard(child.get("namespace", "##any"))
            elif tag == "complexContent":
                if child.get("mixed") == "true":
                    ct.mixed = True
                self._derivation(ct, child, simple=False)
            elif tag == "simpleContent":
                self._derivation(ct, child, simple=True)
            elif tag != "annotation":
                raise self.error(f"xs:{tag} inside complexType {name} is not supported")
        return ct

    def _derivation(self, ct: ComplexType, node: ET.Element, simple: bool) -> None:
        for deriv in node:
            tag = _local(deriv.tag)
            if tag == "annotation":
                continue
            if tag not in ("extension", "restriction"):
                raise self.error(f"xs:{tag} in content of {ct.name} is not supported")
            base = self.qname(deriv.attrib["base"])
            ct.base, ct.derivation = base, tag
            if simple:
                if self.schema.is_simple(base):
                    ct.simple_content = self.schema.simple_type(base)
                else:
                    ct.simple_base = base  # a complex type with simple content
            for child in deriv:
                ctag = _local(child.tag)
                if ctag in ("sequence", "choice", "all"):
                    ct.particle = self.particle(child)
                elif ctag == "attribute":
                    ct.attributes.append(self.attribute(child))
                elif ctag == "anyAttribute":
                    ct.attribute_wildcard = Wildcard(child.get("namespace", "##any"))
                elif ctag != "annotation":
                    raise self.error(f"xs:{ctag} in derivation of {ct.name} is not supported")

    def attribute(self, node: ET.Element) -> AttributeUse:
        if "ref" in node.attrib:
            raise self.error("attribute references are not supported")
        name = node.attrib["name"]
        qualified = node.get("form", "qualified" if self.attribute_qualified else "") == "qualified"
        type_attr = node.get("type")
        if type_attr:
            st = self.schema.simple_type(self.qname(type_attr))
        else:
            inner = next((c for c in node if _local(c.tag) == "simpleType"), None)
            st = self.simple_type(inner, None) if inner is not None else _builtin("string")
        return AttributeUse((self.tns if qualified else "", name), st, node.get("use") == "required")

    def particle(self, node: ET.Element) -> Particle:
        tag = _local(node.tag)
        min_occurs = int(node.get("minOccurs", "1"))
        max_text = node.get("maxOccurs", "1")
        max_occurs = UNBOUNDED if max_text == "unbounded" else int(max_text)
        term: ElementDecl | ModelGroup | Wildcard
        if tag == "element":
            if "ref" in node.attrib:
                ref = self.qname(node.attrib["ref"])
                term = self.schema.elements.get(ref) or _ForwardRef(self.schema, ref).resolve()
            else:
                term = self.element(node, is_global=False)
        elif tag in ("sequence", "choice"):
            parts = [self.particle(c) for c in node if _local(c.tag) != "annotation"]
            term = ModelGroup(tag, parts)
        elif tag == "any":
            term = Wildcard(node.get("namespace", "##any"))
        else:
            raise self.error(f"particle xs:{tag} is not supported")
        return Particle(term, min_occurs, max_occurs)

    def simple_type(self, node: ET.Element, name: QName | None) -> SimpleType:
        for child in node:
            tag = _local(child.tag)
            if tag == "restriction":
                base_attr = child.get("base")
                if base_attr:
                    base = self.schema.simple_type(self.qname(base_attr))
                else:
                    inner = next(c for c in child if _local(c.tag) == "simpleType")
                    base = self.simple_type(inner, None)
                facets = Facets(**{k: (list(v) if isinstance(v, list) else v) for k, v in vars(base.facets).items()})
                facets.enumeration = []
                for f in child:
                    ftag = _local(f.tag)
                    value = f.get("value", "")
                    if ftag == "minInclusive":
                        facets.min_inclusive = int(value)
                    elif ftag == "maxInclusive":
                        facets.max_inclusive = int(value)
                    elif ftag == "minExclusive":
                        facets.min_inclusive = int(value) + 1
                    elif ftag == "maxExclusive":
                        facets.max_inclusive = int(value) - 1
                    elif ftag == "length":
                        facets.length = int(value)
                    elif ftag == "minLength":
                        facets.min_length = int(value)
                    elif ftag == "maxLength":
                        facets.max_length = int(value)
                    elif ftag == "enumeration":
                        facets.enumeration.append(value)
                    elif ftag == "pattern":
                        facets.pattern = value
                    elif ftag not in ("annotation", "simpleType", "whiteSpace", "totalDigits", "fractionDigits"):
                        raise self.error(f"facet xs:{ftag} is not supported")
                return SimpleType(name, base.builtin, facets, base.item)
            if tag == "list":
                item_attr = child.get("itemType")
                if item_attr:
                    item = self.schema.simple_type(self.qname(item_attr))
                else:
                    item = self.simple_type(next(c for c in child if _local(c.tag) == "simpleType"), None)
                return SimpleType(name, "list", Facets(), item)
            if tag == "union":
                raise self.error(f"xs:union in simple type {name} is not supported")
        raise self.error(f"simple type {name} has no restriction or list")


class _ForwardRef:
    """An element reference to a global declared later in the same or another file."""

    def __init__(self, schema: SchemaSet, ref: QName) -> None:
        self.schema, self.ref = schema, ref

    def resolve(self) -> ElementDecl:
        # Declarations are loaded file by file; a reference may precede its target. A placeholder
        # declaration is patched when the real one arrives (same object identity is kept).
        placeholder = ElementDecl(self.ref, None, None, is_global=True)
        self.schema.elements.setdefault(self.ref, placeholder)
        return self.schema.elements[self.ref]


def _builtin(local: str) -> SimpleType:
    if local in BUILTIN_INTEGER_BOUNDS:
        lo, hi = BUILTIN_INTEGER_BOUNDS[local]
        return SimpleType((XS, local), "integer", Facets(min_inclusive=lo, max_inclusive=hi))
    if local in BUILTIN_STRINGS:
        return SimpleType((XS, local), "string", Facets())
    if local in BUILTIN_OTHER:
        return SimpleType((XS, local), local, Facets())
    raise SchemaError(f"built-in type xs:{local} is not supported")


def _local(tag: str) -> str:
    return tag.rpartition("}")[2]
