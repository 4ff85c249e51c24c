"""Byte-exact interop with the PyPI `iso15118` codec (EXIficient), both directions.

Their stack builds a corpus of every -20 DC and DC_BPT request and response with its own message
models and encoder; we decode each into the same values and re-encode the same bytes. Then our
encoder produces messages (schema-valid, generated from our grammars) that their decoder reads into
the same values and their encoder turns into the same bytes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.exi.strategies import message_of
from tests.interop.iso15118_oracle_client import Iso15118Oracle
from tests.interop.peer_form import convert
from v2gtool.exi import codec, jsonform, namespaces

pytestmark = pytest.mark.interop


def test_their_corpus_decodes_and_reencodes_identically(iso15118_oracle: Iso15118Oracle) -> None:
    corpus = iso15118_oracle.corpus()
    assert len(corpus) >= 70
    checked = 0
    for entry in corpus:
        if "schema_deviation" in entry:
            continue  # their encoder filled in or dropped a mandatory element (reported)
        schema = namespaces.grammar(entry["namespace"])
        data = bytes.fromhex(entry["hex"])
        name, message = codec.decode(schema, data)
        ours = jsonform.to_json(schema, name, message)
        assert convert(schema, ours, to_peer=True) == entry["json"], entry["name"]
        assert codec.encode(schema, name, message) == data, entry["name"]
        # and from their JSON straight to their bytes
        again_name, again = jsonform.from_json(schema, convert(schema, entry["json"], to_peer=False))
        assert codec.encode(schema, again_name, again) == data, entry["name"]
        checked += 1
    assert checked >= 70


DC_SESSION = [("iso20", n) for n in (
    "SessionSetupReq", "SessionSetupRes", "AuthorizationSetupReq", "AuthorizationSetupRes", "AuthorizationReq",
    "AuthorizationRes", "ServiceDiscoveryReq", "ServiceDiscoveryRes", "ServiceDetailReq", "ServiceDetailRes",
    "ServiceSelectionReq", "ServiceSelectionRes", "ScheduleExchangeReq", "ScheduleExchangeRes",
    "PowerDeliveryReq", "PowerDeliveryRes", "SessionStopReq", "SessionStopRes",
    "MeteringConfirmationReq", "MeteringConfirmationRes")]
DC_SESSION += [("iso20-dc", n) for n in (
    "DC_ChargeParameterDiscoveryReq", "DC_ChargeParameterDiscoveryRes", "DC_CableCheckReq", "DC_CableCheckRes",
    "DC_PreChargeReq", "DC_PreChargeRes", "DC_ChargeLoopReq", "DC_ChargeLoopRes",
    "DC_WeldingDetectionReq", "DC_WeldingDetectionRes")]
DC_SESSION += [("apphand", "supportedAppProtocolReq"), ("apphand", "supportedAppProtocolRes")]


@pytest.mark.parametrize(("ns", "name"), DC_SESSION, ids=[n for _ns, n in DC_SESSION])
@settings(max_examples=4, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                 HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_our_messages_decode_and_reencode_identically_in_theirs(
    iso15118_oracle: Iso15118Oracle, ns: str, name: str, data: Any
) -> None:
    schema = namespaces.grammar(ns)
    message = data.draw(message_of(schema, name))
    if getattr(message, "Header", None) is not None:
        # EXIficient's JSON lists HMACOutputLength (xmldsig mixed content) as an array: a JSON-form
        # difference only; signed content is covered by the fragment vectors and properties.
        message = dataclasses.replace(message, Header=dataclasses.replace(message.Header, Signature=None))
    # Their codec decodes a supportedAppProtocolRes without SchemaID as SchemaID 0 (a known loss), and
    # its JAXB layer cannot build elements whose type is abstract (e.g. the substitution-group head
    # CLReqControlMode, valid in EXI): both are their limits, not differences of encoding.
    assume(name != "supportedAppProtocolRes" or message.SchemaID is not None)
    assume(not _has_abstract_typed_element(message))
    ours = codec.encode(schema, name, message)
    urn = namespaces.lookup(ns).urn
    theirs = iso15118_oracle.decode(urn, ours)
    expected = convert(schema, jsonform.to_json(schema, name, message), to_peer=True)
    assert theirs == expected
    assert iso15118_oracle.encode(urn, theirs) == ours


ABSTRACT_TYPES = {"CLReqControlModeType", "CLResControlModeType", "PriceScheduleType", "V2GRequestType",
                  "V2GResponseType", "ChargeLoopReqType", "ChargeLoopResType"}


def _has_abstract_typed_element(value: Any) -> bool:
    if dataclasses.is_dataclass(value):
        return type(value).__name__ in ABSTRACT_TYPES or any(
            _has_abstract_typed_element(getattr(value, f.name)) for f in dataclasses.fields(value))
    if isinstance(value, tuple):
        return any(_has_abstract_typed_element(v) for v in value)
    return False
