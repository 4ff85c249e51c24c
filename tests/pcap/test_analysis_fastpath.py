"""The analysis' fast paths give what the general ones give.

The charge loop's series fields are taken by direct key access (:data:`LOOP_LAYOUTS`) instead of
walking the message (:func:`first_of`); -20 RationalNumbers are converted inline instead of by
:func:`physical_value`; records are dispatched on their exact type. Each is pinned here against the
general path: on documents of every shape the schemas allow (hypothesis, through the EXI codec so the
decoder's own element order is used), on the typed messages' schema (no other place can hold a
wanted field) and on whole captures (the summary with and without the fast paths).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.pcap.session import SHARED_PCAPS, analyse, dc_session, dissect, write_session
from v2gtool.exi import api
from v2gtool.messages import din, iso2, iso20_ct, iso20_dc
from v2gtool.pcap import analysis
from v2gtool.pcap.analysis import LOOP_LAYOUTS, RESPONSE_FIELDS, SERIES_FIELDS, TraceAnalysis, first_of, message_kind
from v2gtool.pcap.records import Frame, KeyDisclosed, V2GMessage, physical_value

SESSION_ID = "CCEC07A64440C546"
# message name -> (schema set, its typed message class)
LOOP_TYPES: dict[str, list[tuple[str, type]]] = {
    "DC_ChargeLoopReq": [("iso20-dc", iso20_dc.DC_ChargeLoopReqType)],
    "DC_ChargeLoopRes": [("iso20-dc", iso20_dc.DC_ChargeLoopResType)],
    "CurrentDemandReq": [("iso2", iso2.CurrentDemandReqType), ("din", din.CurrentDemandReqType)],
    "CurrentDemandRes": [("iso2", iso2.CurrentDemandResType), ("din", din.CurrentDemandResType)],
}


def _field_types(cls: type) -> dict[str, Any]:
    """Each field's type with ``| None`` removed."""
    hints = typing.get_type_hints(cls)
    result = {}
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        if isinstance(hint, types.UnionType):
            (hint,) = [arg for arg in typing.get_args(hint) if arg is not type(None)]
        result[field.name] = hint
    return result


def _strategy(cls: type) -> st.SearchStrategy[dict[str, Any]]:
    """Elements of the schema type *cls* in the JSON message form: every optional field present or not.

    The ``*ControlMode`` fields are an XSD choice: exactly one of the concrete ones is present.
    Optional lists, binary and signature fields are left out (they cannot hold a wanted field: the
    schema test below checks that); every int is in 1..100, valid for all the types used here.
    """
    required: dict[str, st.SearchStrategy[Any]] = {}
    optional: dict[str, st.SearchStrategy[Any]] = {}
    modes: list[st.SearchStrategy[dict[str, Any]]] = []
    for field, hint in _field_types(cls).items():
        is_optional = next(f for f in dataclasses.fields(cls) if f.name == field).default is not dataclasses.MISSING
        if field.endswith("ControlMode"):
            if dataclasses.fields(hint):  # not the abstract CLReq/CLResControlMode
                modes.append(st.fixed_dictionaries({field: _strategy(hint)}))
            continue
        if hint in (iso20_ct.RationalNumberType,):
            strategy: st.SearchStrategy[Any] = st.fixed_dictionaries(
                {"Exponent": st.integers(-3, 3), "Value": st.integers(-32768, 32767)})
        elif hint in (iso2.PhysicalValueType, din.PhysicalValueType):
            strategy = st.fixed_dictionaries({"Multiplier": st.integers(-3, 3), "Unit": st.sampled_from("AVW"),
                                              "Value": st.integers(-32768, 32767)})
        elif field == "Header" and hint is iso20_ct.MessageHeaderType:
            strategy = st.fixed_dictionaries({"SessionID": st.just(SESSION_ID), "TimeStamp": st.integers(1, 100)})
        elif hint is bool:
            strategy = st.booleans()
        elif hint is int:
            strategy = st.integers(1, 100)
        elif hint is str:
            strategy = st.just("ZZ00000")
        elif isinstance(hint, type) and issubclass(hint, enum.Enum):
            strategy = st.sampled_from([member.value for member in hint])
        elif dataclasses.is_dataclass(hint) and hint.__module__ != "v2gtool.messages.xmldsig":
            strategy = _strategy(hint)  # type: ignore[arg-type]
        else:
            assert is_optional, f"{cls.__name__}.{field}: no strategy for a required {hint}"
            continue
        (optional if is_optional else required)[field] = strategy
    element = st.fixed_dictionaries(required, optional=optional)
    if not modes:
        return element
    return st.tuples(element, st.one_of(modes)).map(lambda parts: {**parts[0], **parts[1]})


def _document(name: str, namespace: str, element: dict[str, Any]) -> dict[str, Any]:
    """The message around *element*: the root in -20, ``V2G_Message/Body/<name>`` in -2/DIN."""
    if namespace.startswith("iso20"):
        return {name: element}
    return {"V2G_Message": {"Header": {"SessionID": SESSION_ID}, "Body": {name: element}}}


def _elements(name: str) -> st.SearchStrategy[dict[str, Any]]:
    """Elements of message *name* of each schema set, as the EXI decoder gives them after an encode."""
    return st.one_of([_strategy(cls).map(functools.partial(_round_trip, name, namespace))
                      for namespace, cls in LOOP_TYPES[name]])


def _round_trip(name: str, namespace: str, element: dict[str, Any]) -> dict[str, Any]:
    _, decoded = api.decode_json(api.encode_json(_document(name, namespace, element), namespace), namespace)
    root = decoded[next(iter(decoded))]
    decoded_element: dict[str, Any] = root["Body"][name] if "Body" in root else root
    return decoded_element


@pytest.mark.parametrize("name", sorted(LOOP_LAYOUTS))
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_loop_layout_takes_what_first_of_finds(name: str, data: st.DataObject) -> None:
    """Same fields, same values, same order (the order the series are created in the summary)."""
    element = data.draw(_elements(name))
    keys = SERIES_FIELDS if name.endswith("Req") else RESPONSE_FIELDS
    assert list(LOOP_LAYOUTS[name].fields(element).items()) == list(first_of(element, keys).items())


def _wanted_paths(cls: type, seen: frozenset[type] = frozenset()) -> set[tuple[str, ...]]:
    """Every path below the schema type *cls* at which a series field or EVSENotification can be."""
    paths: set[tuple[str, ...]] = set()
    for field, hint in _field_types(cls).items():
        if field in RESPONSE_FIELDS:
            paths.add((field,))
        for inner in typing.get_args(hint) or (hint,):  # a list (tuple[X, ...]) is searched as X
            if dataclasses.is_dataclass(inner) and inner not in seen and isinstance(inner, type):
                paths |= {(field, *path) for path in _wanted_paths(inner, seen | {cls})}
    return paths


@pytest.mark.parametrize("name", sorted(LOOP_LAYOUTS))
def test_loop_layout_covers_every_place_the_schema_allows(name: str) -> None:
    layout = LOOP_LAYOUTS[name]
    expected = {(key,) for key in layout.own} | {(child, key) for child, keys in layout.nested for key in keys}
    for _, cls in LOOP_TYPES[name]:
        assert _wanted_paths(cls) == expected


def _loop_res(value: Any) -> V2GMessage:
    return V2GMessage(t=1.0, frame=1, tcp_stream=0, sender="SECC", namespace="iso20-dc", payload_type=0x8004,
                      message="DC_ChargeLoopRes", document={"DC_ChargeLoopRes": {"ResponseCode": "OK",
                                                                                 "EVSEPresentVoltage": value}},
                      namespace_source="payload_type", tls=False)


# ints within the schemas' bounds (an Exponent is an int8, a Value at most 64 bits)
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-128, 127), st.floats(allow_nan=False), st.text(max_size=3))


_NUMBERS = st.one_of(st.integers(-128, 127), _SCALARS)


@settings(max_examples=300, deadline=None)
@given(st.one_of(
    _SCALARS, st.integers(-2**63, 2**63),
    st.fixed_dictionaries({"Value": _NUMBERS}, optional=dict.fromkeys(("Exponent", "Multiplier"), _NUMBERS)),
    st.fixed_dictionaries({}, optional=dict.fromkeys(("Value", "Exponent", "Multiplier", "Unit"), _NUMBERS))))
def test_inline_rational_number_is_physical_value(value: Any) -> None:
    """Every form a value may take (well-formed or not) is converted as physical_value converts it."""
    trace = TraceAnalysis()
    trace.add(_loop_res(value))
    expected = physical_value(value)
    points = trace.series["EVSEPresentVoltage"].points if "EVSEPresentVoltage" in trace.series else []
    assert points == ([] if expected is None else [(1.0, expected)])


def _general(monkeypatch: pytest.MonkeyPatch) -> None:
    """Analyse without the layouts: every loop message walked by first_of."""
    monkeypatch.setattr(analysis, "LOOP_LAYOUTS", {})
    monkeypatch.setattr(analysis, "_KINDS", {})


def _captures() -> list[tuple[str, bytes]]:
    crafted = [("discharge", write_session(dc_session([0.1, 0.45, 0.6] * 3, currents=[20, -15, -25] * 3))),
               # more samples than a series keeps: decimated the same way
               ("long loop", write_session(dc_session([0.1] * (analysis.MAX_SERIES + 300))))]
    shared = sorted(SHARED_PCAPS.glob("*DC*.pcapng")) if SHARED_PCAPS.is_dir() else []
    return crafted + [(path.name, path.read_bytes()) for path in shared]


@pytest.mark.parametrize(("label", "capture"), _captures(), ids=[label for label, _ in _captures()])
def test_summary_is_that_of_the_general_path(label: str, capture: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    records = dissect(capture)
    fast = analyse(records)
    with monkeypatch.context() as patch:
        _general(patch)
        general = analyse(records)
    assert fast.summary() == general.summary()
    assert list(fast.series) == list(general.series)
    assert {k: v.points for k, v in fast.series.items()} == {k: v.points for k, v in general.series.items()}


def test_records_are_dispatched_by_type_and_subclasses_as_their_base() -> None:
    @dataclasses.dataclass(frozen=True, kw_only=True)
    class TaggedMessage(V2GMessage):
        tag: str = "x"

    @dataclasses.dataclass(frozen=True, kw_only=True)
    class TaggedFrame(Frame):
        tag: str = "x"

    trace = TraceAnalysis()
    message = _loop_res({"Exponent": 0, "Value": 400})
    trace.add(TaggedMessage(**{f.name: getattr(message, f.name) for f in dataclasses.fields(V2GMessage)}))
    trace.add(TaggedFrame(t=2.0, frame=2, length=60, protocols="eth", source=None, destination=None, info=""))
    trace.add(KeyDisclosed(t=3.0, frame=3, label="CLIENT_RANDOM", client_random="00"))
    assert (trace.messages, trace.frames, trace.start, trace.end) == (1, 1, 1.0, 3.0)
    assert trace.series["EVSEPresentVoltage"].points == [(1.0, 400.0)]


def test_shared_current_demand_capture_uses_the_layout() -> None:
    """Sanity of the premise: the -2/DIN loop of a real capture goes through a layout."""
    path = SHARED_PCAPS / "ISO-2_DC_DS5366.pcapng"
    if not path.exists():
        pytest.skip(f"{path} not present (shared test data)")
    names = {r.message for r in dissect(Path(path).read_bytes()) if isinstance(r, V2GMessage)}
    loop = {name for name in names if message_kind(name).loop}
    assert loop == {"CurrentDemandReq", "CurrentDemandRes"}
    assert all(message_kind(name).layout is LOOP_LAYOUTS[name] for name in loop)
