"""Empty string and binary values: the second-level EE of EXI 1.0 section 8.5.4.4.2 (strict = false).

EXIficient (RISE-V2G, the iso15118 package) writes an element of simple type whose value is empty as
SE, then the escape to the second level and EE (code 1.0 of 3 bits), with no CH at all. We decode
that and write the same bytes; the vectors below are EXIficient's, and with Java and the peer venv
present every case is also checked against its encoder.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.interop.iso15118_oracle_client import Iso15118Oracle, find_peer_python, java_available
from tests.interop.peer_form import convert
from v2gtool.exi import api, codec, namespaces
from v2gtool.exi.errors import EXIDecodeError

REPO_ROOT = Path(__file__).resolve().parents[2]

# (schema set, document, EXIficient's bytes) — from the iso15118 package's codec
VECTORS = [
    ("iso2", {"V2G_Message": {"Header": {"SessionID": "00"}, "Body": {"SessionSetupReq": {"EVCCID": ""}}}},
     "8098004011d400"),
    ("iso20", {"SessionStopReq": {"Header": {"SessionID": "0000000000000000", "TimeStamp": 1},
                                  "ChargingSession": "Pause", "EVTerminationCode": "x",
                                  "EVTerminationExplanation": ""}},
     "809404000000000000000000120006f020"),
]

# Empty values at the end of a message, before further fields, in a list, hexBinary, base64Binary, string
CASES: list[tuple[str, dict[str, Any]]] = [
    *((ns, document) for ns, document, _hex in VECTORS),
    ("iso20", {"SessionStopReq": {"Header": {"SessionID": "0000000000000000", "TimeStamp": 1},
                                  "ChargingSession": "Terminate", "EVTerminationCode": "",
                                  "EVTerminationExplanation": "why"}}),
    ("din", {"V2G_Message": {"Header": {"SessionID": "00"}, "Body": {"SessionSetupReq": {"EVCCID": ""}}}}),
    ("iso2", {"V2G_Message": {"Header": {"SessionID": "00"}, "Body": {"ServiceDiscoveryReq": {
        "ServiceScope": "", "ServiceCategory": "EVCharging"}}}}),
    ("iso2", {"V2G_Message": {"Header": {"SessionID": "00"}, "Body": {"MeteringReceiptReq": {
        "SessionID": "", "SAScheduleTupleID": 1, "MeterInfo": {"MeterID": "", "SigMeterReading": ""}}}}}),
    ("apphand", {"supportedAppProtocolReq": {"AppProtocol": [
        {"ProtocolNamespace": "", "VersionNumberMajor": 1, "VersionNumberMinor": 0, "SchemaID": 1, "Priority": 1},
        {"ProtocolNamespace": "urn:x", "VersionNumberMajor": 2, "VersionNumberMinor": 0, "SchemaID": 2,
         "Priority": 2}]}}),
]


@pytest.mark.parametrize(("ns", "document", "exi"), VECTORS, ids=[ns for ns, _d, _x in VECTORS])
def test_exificient_vectors_decode_and_encode_byte_exact(ns: str, document: dict[str, Any], exi: str) -> None:
    schema = namespaces.grammar(ns)
    name, value = codec.decode(schema, bytes.fromhex(exi), as_json=True)
    assert {name: value} == document
    _, decoded = codec.decode(schema, bytes.fromhex(exi))  # the table-driven decoder, into message objects
    assert codec.encode(schema, name, decoded).hex() == exi
    assert api.encode_json(document, ns).hex() == exi


def test_other_second_level_events_are_refused() -> None:
    """Only EE (code 0) of the second level is decoded; xsi:type, xsi:nil and undeclared content are not."""
    with pytest.raises(EXIDecodeError, match=r"second-level event .* at bit 49 .* in EVCCID"):
        codec.decode(namespaces.grammar("iso2"), bytes.fromhex("8098004011d600"))  # second-level code 4


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(CASES))
def test_empty_values_round_trip_through_both_decoders(case: tuple[str, dict[str, Any]]) -> None:
    ns, document = case
    schema = namespaces.grammar(ns)
    encoded = api.encode_json(document, ns)
    name, fast = codec.decode(schema, encoded, as_json=True)
    assert {name: fast} == document
    assert codec.encode(schema, *codec.decode(schema, encoded)) == encoded


@pytest.fixture(scope="module")
def oracle() -> Iterator[Iso15118Oracle]:
    python = find_peer_python(REPO_ROOT)
    if python is None:
        pytest.skip("no peer python with iso15118 (set V2GTOOL_PEER_PYTHON or run tools/install.sh --peers)")
    if not java_available():
        pytest.skip("java is not on PATH (the iso15118 EXIficient codec needs a JRE: default-jre-headless)")
    with Iso15118Oracle.start(python) as started:
        yield started


@pytest.mark.parametrize(("ns", "document"), CASES, ids=[f"{ns}:{next(iter(d))}:{i}" for i, (ns, d) in
                                                         enumerate(CASES)])
def test_empty_values_are_byte_exact_with_exificient(oracle: Iso15118Oracle, ns: str, document: dict[str, Any]) -> None:
    schema = namespaces.grammar(ns)
    theirs = oracle.encode(namespaces.lookup(ns).urn, convert(schema, document, to_peer=True))
    assert api.encode_json(document, ns) == theirs
    name, value = codec.decode(schema, theirs, as_json=True)
    assert {name: value} == document
