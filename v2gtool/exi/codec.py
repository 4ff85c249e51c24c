"""Decoding and encoding EXI documents and fragments with a compiled schema set.

Options are those of ISO 15118 (see ../shared/spec/exi-profile.md): schema-informed, bit-packed,
strict = false, no fidelity options, ``valuePartitionCapacity = 0`` (values never enter a string
table) and the header byte 0x80 (EXI 1.0 section 5: distinguishing bits, no options, version 1).
"""

from __future__ import annotations

import enum
import re
from typing import Any

from v2gtool.exi import fastpath
from v2gtool.exi.bitstream import MAX_LENGTH, BitReader, BitWriter
from v2gtool.exi.errors import EXIDecodeError, EXIEncodeError
from v2gtool.exi.grammar import (
    AT,
    BINARY,
    BOOL,
    CH,
    EE,
    ENUM,
    FIXED_BOOL,
    FIXED_INT,
    INT,
    LIST,
    NBIT,
    SE_COMPLEX,
    SE_FIXED,
    SE_SIMPLE,
    SE_VARINT,
    SIMPLE_SECOND_LEVEL_WIDTH,
    STRING,
    UINT,
    DType,
    RootElement,
    SchemaGrammar,
    TypeGrammar,
)

EXI_HEADER = 0x80
_EMPTY_ELEMENT = 0b1000  # the 1-bit escape of the first level, then the 3-bit second-level EE
_EMPTY_VALUES = {STRING: ("", ""), BINARY: (b"", "")}  # datatype kind -> empty value (message form, JSON form)
# xs:string values are XML character data: XML 1.0 production [2] Char is #x9 | #xA | #xD |
# [#x20-#xD7FF] | [#xE000-#xFFFD] | [#x10000-#x10FFFF]. This matches every code point outside it
# (those above U+10FFFF are no Python characters). Encoding refuses them, and so does decoding: a
# peer's string with a surrogate is not text (and would not even print as UTF-8).
NON_XML_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def length_violation(n: int, lo: int | None, hi: int | None, unit: str) -> str | None:
    """What is wrong with a value of *n* units under the length facets ``[lo, hi]`` (XSD length,
    minLength, maxLength; maxOccurs of a list), or None when it fits. Shared by encoder and decoder."""
    if (lo is not None and n < lo) or (hi is not None and n > hi):
        return f"{n} {unit}, the schema allows {lo or 0} to {hi}"
    return None


def range_violation(value: int, lo: int | None, hi: int | None) -> str | None:
    """What is wrong with the integer *value* under the facets minInclusive / maxInclusive (and the
    bounds of the built-in type, e.g. xs:unsignedShort), or None when it fits."""
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        return f"{value} outside the schema range [{lo}, {hi}]"
    return None


def non_xml_char(text: str) -> str | None:
    """What is wrong with *text* as XML character data (XML 1.0 production [2] Char), or None."""
    bad = NON_XML_CHAR.search(text)
    if bad is None:
        return None
    return f"character U+{ord(bad.group()):04X} is not allowed in XML text (XML 1.0 Char)"


_FIXED_LIMITS: dict[SchemaGrammar, tuple[dict[str, int], ...]] = {}  # schema sets live as long as the process


def fixed_int_limits(schema: SchemaGrammar) -> tuple[dict[str, int], ...]:
    """Per type (by index): field -> upper bound of each n-bit integer element whose width holds more
    than its facets allow (EXI 1.0 section 7.1.9 takes ceil(log2(range)) bits: xs:byte fills its 8
    bits, [0, 100] does not fill 7). Decoding checks those bounds; the other n-bit fields cannot
    exceed theirs."""
    limits = _FIXED_LIMITS.get(schema)
    if limits is None:
        limits = _FIXED_LIMITS[schema] = tuple(
            {spec.name: dt[4] for spec in t.fields if spec.kind == SE_SIMPLE
             for dt in (schema.dtypes[spec.arg],)
             if dt[0] == NBIT and dt[4] is not None and dt[2] + (1 << dt[1]) - 1 > dt[4]}
            for t in schema.types)
    return limits


class Decoder:
    """Decodes one stream; keeps the reader so errors can name the bit position.

    With *as_json* the values come out in the JSON message form of :mod:`v2gtool.exi.jsonform`
    (dicts in field order, enumeration names, upper-case hex, lists) instead of message objects:
    what ``jsonform.to_json`` would make of the decoded message, without building it first.
    """

    __slots__ = ("as_json", "dtypes", "fixed_limits", "reader", "schema", "types")

    def __init__(self, schema: SchemaGrammar, data: bytes, as_json: bool = False) -> None:
        if not data:
            raise EXIDecodeError("empty input: an EXI stream has at least the header byte")
        if data[0] != EXI_HEADER:
            raise EXIDecodeError(
                f"byte 0: EXI header 0x{data[0]:02X}, expected 0x80 (no options, version 1, no cookie)"
            )
        self.schema = schema
        self.types = schema.types
        self.dtypes = schema.dtypes
        self.reader = BitReader(data, 8)
        self.as_json = as_json
        self.fixed_limits = fixed_int_limits(schema)

    def _fail(self, what: str, where: str) -> EXIDecodeError:
        pos = self.reader.pos
        return EXIDecodeError(f"{what} at bit {pos} (byte {pos // 8}) in {where}")

    def document(self) -> tuple[str, Any]:
        """DocContent (EXI 8.5.1): SE(global element) ... ED."""
        code = self.reader.read(self.schema.global_width)
        root = self._root(self.schema.globals, code, "document grammar")
        value = self._element(root[1], root[2], f"document element {root[0]}")
        self._end()
        return root[0], value

    def fragment(self) -> tuple[str, Any]:
        """FragmentContent (EXI 8.5.2): one element of any declaration, then ED."""
        width = self.schema.fragment_width
        code = self.reader.read(width)
        root = self._root(self.schema.fragments, code, "fragment grammar")
        value = self._element(root[1], root[2], f"fragment element {root[0]}")
        if self.reader.read(width) != len(self.schema.fragments) + 1:
            raise self._fail("expected ED after the fragment's element", "fragment grammar")
        self._end()
        return root[0], value

    def _root(self, table: tuple[RootElement, ...], code: int, where: str) -> RootElement:
        if code >= len(table):
            raise self._fail(f"event code {code} is not a declared element (wildcard SE(*) unsupported)", where)
        entry = table[code]
        if entry[1] < 0:
            raise self._fail(f"element {entry[0]} is abstract or has no single type", where)
        return entry

    def _end(self) -> None:
        if not self.reader.remaining_padding_ok():
            raise self._fail("trailing data after the end of the document", "document end")

    def _element(self, kind: int, arg: int, where: str) -> Any:
        if kind == SE_COMPLEX:
            return self._complex(self.types[arg])
        return self._simple_element(arg, where)

    def _simple_element(self, dtype: int, where: str) -> Any:
        # Element of simple type: CH then EE, each a 1-bit first-level code (strict=false escape = 1).
        read = self.reader.read
        dt = self.dtypes[dtype]
        if read(1):
            if read(SIMPLE_SECOND_LEVEL_WIDTH):
                raise self._fail("second-level event (xsi:type/xsi:nil/undeclared content) unsupported", where)
            empty = _EMPTY_VALUES.get(dt[0])  # EE right after SE: no characters at all
            if empty is None:
                raise self._fail("element without content, but its type has no empty value", where)
            self._facet(length_violation(0, dt[3], dt[4], "characters" if dt[0] == STRING else "bytes"), where)
            return empty[self.as_json]
        value = self._value(dt, where)
        if read(1):
            raise self._fail("expected EE after the value", where)
        return value

    def _complex(self, grammar: TypeGrammar) -> Any:
        # The hot path: bit fields are taken inline from the stream's int (no call per field), and
        # fixed-width simple elements (CH code, value, EE code) come out of one field.
        r = self.reader
        stream = r.value
        total = r.bits
        pos = r.pos
        states = grammar.decode_json if self.as_json else grammar.decode
        list_fields = grammar.list_fields
        limits = self.fixed_limits[grammar.index]
        values: dict[str, Any] = {}
        state = 0
        while True:
            width, prods = states[state]
            end = pos + width
            if end > total:
                r.pos = pos
                r.read(width)  # raises the truncation error
            code = (stream >> (total - end)) & ((1 << width) - 1)
            pos = end
            if code >= len(prods):
                r.pos = pos
                raise self._fail(
                    f"event code {code} selects a second-level (undeclared) event, unsupported",
                    grammar.state_name(state),
                )
            kind, name, arg, nxt, conv, extra = prods[code]
            if kind == SE_FIXED:
                end = pos + arg
                if end > total:
                    r.pos = pos
                    r.read(arg)
                field = (stream >> (total - end)) & ((1 << arg) - 1)
                pos = end
                if field & 1 or field >> (arg - 1):
                    r.pos = pos
                    raise self._fail("second-level event or missing EE in a simple element", name)
                field >>= 1
                if conv == FIXED_INT:
                    value = field + extra
                    if name in limits and value > limits[name]:
                        r.pos = pos
                        self._facet(range_violation(value, extra, limits[name]), name)
                elif conv == FIXED_BOOL:
                    value = field == 1
                elif field < len(extra):
                    value = extra[field]
                else:
                    r.pos = pos
                    raise self._fail(f"enumeration index {field} out of range ({len(extra)} values)", name)
            elif kind == SE_VARINT:
                # CH code 0 and (for a signed integer) the sign bit, then 7-bit groups, then EE code 0
                head = 1 + conv
                end = pos + head
                if end > total:
                    r.pos = pos
                    r.read(head)
                head_bits = (stream >> (total - end)) & ((1 << head) - 1)
                pos = end
                value = 0
                shift = 0
                while True:
                    end = pos + 8
                    if end > total or shift > 140:
                        r.pos = pos
                        if shift > 140:
                            raise self._fail("integer longer than 20 octets", name)
                        r.read(8)
                    octet = (stream >> (total - end)) & 0xFF
                    pos = end
                    value |= (octet & 0x7F) << shift
                    if octet < 0x80:
                        break
                    shift += 7
                end = pos + 1
                if end > total:
                    r.pos = pos
                    r.read(1)
                if head_bits >> conv or (stream >> (total - end)) & 1:
                    r.pos = pos
                    raise self._fail("second-level event or missing EE in a simple element", name)
                pos = end
                if head_bits & conv:
                    value = -value - 1
                dt = self.dtypes[arg]
                if (dt[3] is not None and value < dt[3]) or (dt[4] is not None and value > dt[4]):
                    r.pos = pos
                    self._facet(range_violation(value, dt[3], dt[4]), name)
            elif kind == EE:
                break
            else:
                r.pos = pos
                if kind == SE_COMPLEX:
                    value = self._complex(self.types[arg])
                elif kind == SE_SIMPLE:
                    value = self._simple_element(arg, name)
                elif kind in (AT, CH):
                    value = self._value(self.dtypes[arg], name)
                else:
                    raise self._fail(
                        "wildcard or mixed-content event is not supported by this codec", grammar.state_name(state)
                    )
                pos = r.pos
            if name in list_fields:
                values.setdefault(name, []).append(value)
            else:
                values[name] = value
            state = nxt
        r.pos = pos
        if self.as_json and values.keys() >= grammar.required:
            if grammar.in_field_order:
                return values
            return {spec.name: values[spec.name] for spec in grammar.fields if spec.name in values}
        if not self.as_json:
            for name in list_fields:
                if name in values:
                    values[name] = tuple(values[name])
        # With as_json this is reached only when a required field is missing: the class names it.
        try:
            return grammar.cls(**values)
        except TypeError as exc:  # a required field missing: the grammar allowed EE too early
            raise self._fail(f"incomplete content ({exc})", grammar.cls.__name__) from None

    def _facet(self, violation: str | None, where: str) -> None:
        """Refuse a value outside its XSD facets: the peer broke the schema (encoding refuses the same)."""
        if violation is not None:
            pos = self.reader.pos
            raise EXIDecodeError(f"{where}: {violation} (at bit {pos}, byte {pos // 8})")

    def _value(self, dt: DType, where: str) -> Any:
        r = self.reader
        kind = dt[0]
        if kind in (NBIT, UINT, INT):
            if kind == NBIT:
                number: int = r.read(dt[1]) + dt[2]
            elif kind == UINT:
                number = r.read_uint()
            else:
                sign = r.read(1)
                magnitude = r.read_uint()
                number = -magnitude - 1 if sign else magnitude
            self._facet(range_violation(number, dt[3], dt[4]), where)
            return number
        if kind == BOOL:
            return bool(r.read(1))
        if kind == ENUM:
            index = r.read(dt[1])
            members = dt[2]
            if index >= len(members):
                raise self._fail(f"enumeration index {index} out of range ({len(members)} values)", where)
            return members[index].value if self.as_json else members[index]
        if kind == BINARY:
            length = r.read_uint()
            if length > MAX_LENGTH:
                raise self._fail(f"binary length {length} is implausible", where)
            self._facet(length_violation(length, dt[3], dt[4], "bytes"), where)
            data = r.read_bytes(length)
            return data.hex().upper() if self.as_json else data
        if kind == STRING:
            length = r.read_uint()
            if length < 2:
                raise self._fail("string-table hit, but values never enter the table (capacity 0)", where)
            length -= 2
            if length > MAX_LENGTH:
                raise self._fail(f"string length {length} is implausible", where)
            self._facet(length_violation(length, dt[3], dt[4], "characters"), where)
            chars = []
            for _ in range(length):
                cp = r.read_uint()
                if cp > 0x10FFFF:
                    raise self._fail(f"code point {cp} out of range", where)
                chars.append(chr(cp))
            text = "".join(chars)
            bad = non_xml_char(text)
            if bad is not None:
                raise self._fail(bad, where)
            return text
        if kind == LIST:
            count = r.read_uint()
            if count > MAX_LENGTH:
                raise self._fail(f"list length {count} is implausible", where)
            self._facet(length_violation(count, dt[3], dt[4], "items"), where)
            item = self.dtypes[dt[1]]
            items = [self._value(item, where) for _ in range(count)]
            return items if self.as_json else tuple(items)
        raise self._fail(f"datatype kind {kind} unknown", where)


class Encoder:
    """Encodes one message into a fresh bit stream."""

    __slots__ = ("dtypes", "schema", "types", "writer")

    def __init__(self, schema: SchemaGrammar) -> None:
        self.schema = schema
        self.types = schema.types
        self.dtypes = schema.dtypes
        self.writer = BitWriter()
        self.writer.write(EXI_HEADER, 8)

    def document(self, name: str, value: Any) -> bytes:
        code = self.schema.global_codes.get(name)
        if code is None:
            raise EXIEncodeError(f"{name} is not a global element of {self.schema.name}")
        self.writer.write(code, self.schema.global_width)
        _name, kind, arg, _own = self.schema.globals[code]
        self._element(kind, arg, value, name)
        return self.writer.to_bytes()

    def fragment(self, name: str, value: Any) -> bytes:
        code = self.schema.fragment_codes.get(name)
        if code is None:
            raise EXIEncodeError(f"{name} is not an element of {self.schema.name} usable as a fragment")
        width = self.schema.fragment_width
        self.writer.write(code, width)
        _name, kind, arg, _own = self.schema.fragments[code]
        self._element(kind, arg, value, name)
        self.writer.write(len(self.schema.fragments) + 1, width)  # ED
        return self.writer.to_bytes()

    def _element(self, kind: int, arg: int, value: Any, path: str) -> None:
        if kind == SE_COMPLEX:
            self._complex(self.types[arg], value, path)
        else:
            self._simple_element(self.dtypes[arg], value, path)

    def _simple_element(self, dt: DType, value: Any, path: str) -> None:
        """The content of an element of simple type: CH, the value, EE; an empty string or binary value as
        the second-level EE alone, as EXIficient writes it (EXI 1.0 section 8.5.4.4.2)."""
        w = self.writer
        if dt[0] in _EMPTY_VALUES and type(value) is type(_EMPTY_VALUES[dt[0]][0]) and not value:
            self._check_length(0, dt[3], dt[4], path, "characters" if dt[0] == STRING else "bytes")
            w.write(_EMPTY_ELEMENT, 1 + SIMPLE_SECOND_LEVEL_WIDTH)
            return
        w.write(0, 1)  # CH
        self._value(dt, value, path)
        w.write(0, 1)  # EE

    def _complex(self, grammar: TypeGrammar, obj: Any, path: str) -> None:
        if type(obj) is not grammar.cls:
            raise EXIEncodeError(f"{path}: expected {grammar.cls.__name__}, got {type(obj).__name__}")
        w = self.writer
        encode = grammar.encode
        state = 0
        for spec in grammar.fields:
            value = getattr(obj, spec.name)
            if value is None:
                continue
            for item in value if spec.is_list else (value,):
                entry = encode[state].get(spec.name)
                if entry is None:
                    raise self._misplaced(grammar, state, spec.name, path)
                code, width, kind, arg, state, conv, extra = entry
                if kind == SE_FIXED:
                    # event code, CH code 0, value, EE code 0: one field
                    field = self._fixed_field(conv, extra, item, f"{path}.{spec.name}")
                    w.value = (w.value << (width + arg)) | (code << arg) | (field << 1)
                    w.bits += width + arg
                    continue
                w.write(code, width)
                where = f"{path}.{spec.name}"
                if kind == SE_COMPLEX:
                    self._complex(self.types[arg], item, where)
                elif kind == SE_SIMPLE:
                    self._simple_element(self.dtypes[arg], item, where)
                else:
                    self._value(self.dtypes[arg], item, where)
        entry = encode[state].get("")
        if entry is None:
            raise self._misplaced(grammar, state, "", path)
        w.write(entry[0], entry[1])

    @staticmethod
    def _fixed_field(conv: int, extra: Any, value: Any, path: str) -> int:
        """The value bits of a fixed-width simple element, checked against its facets."""
        if conv == FIXED_INT:
            low, high = extra
            if type(value) is not int:
                raise EXIEncodeError(f"{path}: expected an integer, got {value!r}")
            out_of_range = range_violation(value, low, high)
            if out_of_range is not None:
                raise EXIEncodeError(f"{path}: {out_of_range}")
            field: int = value - low
            return field
        if conv == FIXED_BOOL:
            if type(value) is not bool:
                raise EXIEncodeError(f"{path}: expected a boolean, got {value!r}")
            return int(value)
        if not isinstance(value, enum.Enum) or value not in extra:
            raise EXIEncodeError(f"{path}: {value!r} is not one of {[m.value for m in extra]}")
        index: int = extra.index(value)
        return index

    @staticmethod
    def _misplaced(grammar: TypeGrammar, state: int, name: str, path: str) -> EXIEncodeError:
        expected = [n or "end of element" for n in grammar.encode[state]]
        what = f"element {name} is not allowed here" if name else "content is incomplete"
        return EXIEncodeError(f"{path}: {what}; expected one of: {', '.join(expected)}")

    def _value(self, dt: DType, value: Any, path: str) -> None:
        w = self.writer
        kind, a, b, lo, hi = dt
        if kind in (NBIT, UINT, INT):
            if type(value) is not int:
                raise EXIEncodeError(f"{path}: expected an integer, got {value!r}")
            out_of_range = range_violation(value, lo, hi)
            if out_of_range is not None:
                raise EXIEncodeError(f"{path}: {out_of_range}")
            if kind == NBIT:
                w.write(value - b, a)
            elif kind == UINT:
                w.write_uint(value)
            elif value < 0:
                w.write(1, 1)
                w.write_uint(-value - 1)
            else:
                w.write(0, 1)
                w.write_uint(value)
        elif kind == BOOL:
            if type(value) is not bool:
                raise EXIEncodeError(f"{path}: expected a boolean, got {value!r}")
            w.write(int(value), 1)
        elif kind == ENUM:
            if not isinstance(value, enum.Enum) or value not in b:
                raise EXIEncodeError(f"{path}: {value!r} is not one of {[m.value for m in b]}")
            w.write(b.index(value), a)
        elif kind == BINARY:
            if not isinstance(value, bytes):
                raise EXIEncodeError(f"{path}: expected bytes, got {type(value).__name__}")
            self._check_length(len(value), lo, hi, path, "bytes")
            w.write_uint(len(value))
            w.write_bytes(value)
        elif kind == STRING:
            if not isinstance(value, str):
                raise EXIEncodeError(f"{path}: expected a string, got {type(value).__name__}")
            self._check_length(len(value), lo, hi, path, "characters")
            bad = non_xml_char(value)
            if bad is not None:
                raise EXIEncodeError(f"{path}: {bad}")
            w.write_uint(len(value) + 2)
            for ch in value:
                w.write_uint(ord(ch))
        elif kind == LIST:
            if not isinstance(value, tuple):
                raise EXIEncodeError(f"{path}: expected a list, got {type(value).__name__}")
            self._check_length(len(value), lo, hi, path, "items")
            w.write_uint(len(value))
            item = self.dtypes[a]
            for v in value:
                self._value(item, v, path)
        else:
            raise EXIEncodeError(f"{path}: datatype kind {kind} unknown")

    @staticmethod
    def _check_length(n: int, lo: int | None, hi: int | None, path: str, unit: str) -> None:
        violation = length_violation(n, lo, hi, unit)
        if violation is not None:
            raise EXIEncodeError(f"{path}: {violation}")


def decode(schema: SchemaGrammar, data: bytes, fragment: bool = False, as_json: bool = False) -> tuple[str, Any]:
    """Decode an EXI document (or fragment) into ``(root element name, message)``.

    *as_json* gives the message in the JSON message form (the value ``jsonform.to_json`` puts
    under the root name), decoded directly: the fast path of commands that only print messages.
    """
    decoder = Decoder(schema, data, as_json)
    if as_json and not fragment:
        fast = fastpath.decode_document(decoder, schema)
        if fast is not None:
            return fast
        decoder = Decoder(schema, data, as_json)  # the table-driven walk names what the fast path gave up on
    try:
        return decoder.fragment() if fragment else decoder.document()
    except RecursionError:
        raise decoder._fail("nesting too deep", "element content") from None


def encode(schema: SchemaGrammar, name: str, message: Any, fragment: bool = False) -> bytes:
    """Encode *message* as the element *name* into an EXI document (or fragment)."""
    encoder = Encoder(schema)
    return encoder.fragment(name, message) if fragment else encoder.document(name, message)
