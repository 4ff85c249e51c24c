"""Untrusted bytes: random and mutated streams make the decoder raise only its own error class."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import public_vectors
from tests.exi.strategies import message_of
from v2gtool.errors import V2GToolError
from v2gtool.exi import api, codec, jsonform, namespaces
from v2gtool.exi.errors import EXIDecodeError, EXIError
from v2gtool.exi.grammar import SchemaGrammar

SETS = [n.short for n in namespaces.NAMESPACES]
SEEDS = [bytes.fromhex(v["hex"]) for v in public_vectors() if "15118:-20" in v["namespace"]] or [
    bytes.fromhex("8034042d166f29fb80ea560aebdbfb3062810012006164000a02002400c800")
]


def _outcome(schema: SchemaGrammar, data: bytes, fragment: bool, as_json: bool) -> str:
    """The JSON document decoded, or the codec's error message."""
    try:
        name, value = codec.decode(schema, data, fragment=fragment, as_json=as_json)
    except EXIError as exc:
        return f"error: {exc}"
    return json.dumps({name: value} if as_json else jsonform.to_json(schema, name, value))


def _decode_all(data: bytes) -> None:
    """Only codec errors escape, and decoding straight into the JSON form agrees with the objects, errors too."""
    for ns in SETS:
        schema = namespaces.grammar(ns)
        for fragment in (False, True):
            assert _outcome(schema, data, fragment, True) == _outcome(schema, data, fragment, False)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=80))
def test_random_bytes_raise_only_codec_errors(data: bytes) -> None:
    _decode_all(b"\x80" + data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
       st.integers(0, 80))
def test_mutated_vectors_raise_only_codec_errors(seed: bytes, flips: list[tuple[int, int]], cut: int) -> None:
    data = bytearray(seed)
    for position, value in flips:
        data[position % len(data)] = value
    _decode_all(bytes(data[: max(1, len(data) - cut)]))


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=60))
def test_framed_input_raises_only_project_errors(data: bytes) -> None:
    with contextlib.suppress(V2GToolError):
        api.decode_bytes(b"\x01\xfe\x80\x04" + len(data).to_bytes(4, "big") + data)


def test_truncation_names_byte_and_state() -> None:
    data = bytes.fromhex("8034042d166f29fb80ea560aebdbfb3062810012006164000a02002400c800")
    with pytest.raises(EXIDecodeError, match=r"stream ends at byte 12 while reading .* at bit \d+"):
        codec.decode(namespaces.grammar("iso20-dc"), data[:12])


def test_wrong_header_is_named() -> None:
    with pytest.raises(EXIDecodeError, match="byte 0: EXI header 0x00, expected 0x80"):
        codec.decode(namespaces.grammar("iso20-dc"), b"\x00\x01")


def test_undeclared_event_names_the_grammar_state() -> None:
    # SessionStopReq in the DC grammar: all-ones selects the escape code (second level) somewhere.
    with pytest.raises(EXIDecodeError, match=r"at bit \d+ \(byte \d+\) in "):
        codec.decode(namespaces.grammar("iso20-dc"), b"\x80" + b"\xff" * 8)


# Messages whose grammars hold every kind the straight-line decoders read themselves: fixed-width
# fields, signed and unsigned integers of one and several octets, binary, strings, lists, choices.
FLIPPED = [("iso20", "SessionSetupReq"), ("iso20", "ServiceDiscoveryRes"), ("iso20", "AuthorizationSetupRes"),
           ("iso20-dc", "DC_ChargeLoopReq"), ("iso20-dc", "DC_ChargeLoopRes"), ("iso20-dc", "DC_CableCheckRes"),
           ("iso20", "ScheduleExchangeRes"), ("iso2", "V2G_Message"), ("din", "V2G_Message"),
           ("apphand", "supportedAppProtocolReq")]


@pytest.mark.parametrize(("ns", "name"), FLIPPED, ids=[f"{ns}:{name}" for ns, name in FLIPPED])
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_bit_flips_of_valid_messages_decode_alike(ns: str, name: str, data: st.DataObject) -> None:
    """A valid message with any one bit flipped, or its end cut anywhere: the straight-line decoders
    (JSON form) decode it as the table-driven walk does, or give way to it, so both name the same error."""
    schema = namespaces.grammar(ns)
    encoded = codec.encode(schema, name, data.draw(message_of(schema, name)))
    mutants = [encoded[:end] for end in range(1, len(encoded))]
    for bit in range(8, 8 * min(len(encoded), 64)):
        flipped = bytearray(encoded)
        flipped[bit // 8] ^= 0x80 >> (bit % 8)
        mutants.append(bytes(flipped))
    for mutated in mutants:
        assert _outcome(schema, mutated, False, True) == _outcome(schema, mutated, False, False), mutated.hex()
