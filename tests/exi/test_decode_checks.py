"""Decoding refuses what encoding refuses: text outside XML 1.0 Char and values outside the XSD facets.

A peer's stream that breaks the schema is a protocol error of the peer, named by field, on the
straight-line path (``as_json``, what ``pcap-decode`` runs) and the table-driven one alike; and
what decodes always encodes again (property-tested on mutated vectors).
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.exi.test_fuzz import SEEDS
from v2gtool.exi import api, codec, jsonform, namespaces
from v2gtool.exi.errors import EXIDecodeError

HEADER = {"SessionID": "0011223344556677", "TimeStamp": 1}


def _broken(document: dict[str, Any], namespace: str, fragment: bool = False) -> bytes:
    """Encode without the facet and character checks, as a broken peer would."""
    with pytest.MonkeyPatch.context() as patch:
        for check in ("length_violation", "range_violation", "non_xml_char"):
            patch.setattr(codec, check, lambda *args: None)
        return api.encode_json(document, namespace, fragment)


def _refused(data: bytes, namespace: str, fragment: bool = False) -> str:
    """The error of both decoders (JSON form and message objects): they must agree."""
    schema = namespaces.grammar(namespace)
    messages = []
    for as_json in (True, False):
        with pytest.raises(EXIDecodeError) as info:
            codec.decode(schema, data, fragment, as_json)
        messages.append(str(info.value))
    assert messages[0] == messages[1]
    return messages[0]


@pytest.mark.parametrize("char", ["\ud800", "\udfff", "\x00", "\x1b", "\ufffe", "\uffff"])
def test_a_string_with_a_non_xml_character_is_refused(char: str) -> None:
    data = _broken({"SessionSetupReq": {"Header": HEADER, "EVCCID": f"AB{char}C"}}, "iso20")
    message = _refused(data, "iso20")
    assert f"character U+{ord(char):04X} is not allowed in XML text (XML 1.0 Char)" in message
    assert "EVCCID" in message


def test_tab_newline_and_astral_characters_are_text() -> None:
    document = {"SessionSetupReq": {"Header": HEADER, "EVCCID": "a\tb\nc\r\U0001f600\ue000"}}
    assert api.decode_json(api.encode_json(document), "iso20")[1] == document


def test_the_surrogate_vector_of_the_report_is_an_exi_error() -> None:
    with pytest.raises(EXIDecodeError, match="U\\+D800"):
        api.decode_json(bytes.fromhex("808c040000000000000000001201c0580180"), "iso20")


@pytest.mark.parametrize(("namespace", "document", "expected"), [
    ("iso20", {"SessionSetupReq": {"Header": {"SessionID": "00112233445566778899", "TimeStamp": 1},
                                   "EVCCID": "x"}},
     "SessionID: 10 bytes, the schema allows 8 to 8"),
    ("iso20", {"SessionSetupReq": {"Header": HEADER, "EVCCID": "x" * 300}},
     "EVCCID: 300 characters, the schema allows 0 to 255"),
    ("iso20-dc", {"DC_ChargeLoopReq": {"Header": HEADER, "DisplayParameters": {"PresentSOC": 120},
                                       "MeterInfoRequested": False,
                                       "EVPresentVoltage": {"Exponent": 0, "Value": 4000},
                                       "Scheduled_DC_CLReqControlMode": {
                                           "EVTargetCurrent": {"Exponent": 0, "Value": 1},
                                           "EVTargetVoltage": {"Exponent": 0, "Value": 40000}}}},
     "PresentSOC: 120 outside the schema range [0, 100]"),
    ("iso20-dc", {"DC_ChargeLoopReq": {"Header": HEADER, "MeterInfoRequested": False,
                                       "EVPresentVoltage": {"Exponent": 0, "Value": 40000},
                                       "Scheduled_DC_CLReqControlMode": {
                                           "EVTargetCurrent": {"Exponent": 0, "Value": 1},
                                           "EVTargetVoltage": {"Exponent": 0, "Value": 40000}}}},
     "Value: 40000 outside the schema range [-32768, 32767]"),
    ("iso20", {"SessionSetupReq": {"Header": {"SessionID": "0011223344556677", "TimeStamp": 2**64},
                                   "EVCCID": "x"}},
     "TimeStamp: 18446744073709551616 outside the schema range [0, 18446744073709551615]"),
    ("din", {"V2G_Message": {"Header": {"SessionID": "00" * 9},
                             "Body": {"ServiceDiscoveryReq": {"ServiceCategory": "EVCharging"}}}},
     "SessionID: 9 bytes, the schema allows 0 to 8"),
])
def test_a_value_outside_its_facets_is_a_decode_error_naming_the_field(
        namespace: str, document: dict[str, Any], expected: str) -> None:
    data = _broken(document, namespace)
    assert expected in _refused(data, namespace)


def test_an_empty_value_below_its_minimum_length_is_refused() -> None:
    """An empty element (the second-level EE of EXI 1.0 section 8.5.4.4.2) has length 0 too."""
    pnc = {"Id": "x", "GenChallenge": "",  # base64Binary, xs:length 16
           "ContractCertificateChain": {"Certificate": "AA", "SubCertificates": {"Certificate": ["BB"]}}}
    document = {"AuthorizationReq": {"Header": HEADER, "SelectedAuthorizationService": "PnC",
                                     "PnC_AReqAuthorizationMode": pnc}}
    assert "GenChallenge: 0 bytes, the schema allows 16 to 16" in _refused(_broken(document, "iso20"), "iso20")
    fragment = _broken({"PnC_AReqAuthorizationMode": pnc}, "iso20", fragment=True)
    assert "GenChallenge: 0 bytes" in _refused(fragment, "iso20", fragment=True)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4))
def test_what_decodes_encodes_again(seed: bytes, flips: list[tuple[int, int]]) -> None:
    """Decoding accepts nothing the encoder refuses: a decoded message always re-encodes."""
    data = bytearray(seed)
    for position, value in flips:
        data[position % len(data)] = value
    for ns in ("iso20", "iso20-dc", "iso20-ac"):
        schema = namespaces.grammar(ns)
        try:
            name, message = codec.decode(schema, bytes(data))
        except EXIDecodeError:
            continue
        again = codec.encode(schema, name, message)
        assert codec.decode(schema, again) == (name, message)
        assert api.decode_json(again, ns)[1] == jsonform.to_json(schema, name, message)
