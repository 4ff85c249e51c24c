"""Property: every message of every -20 namespace survives encode -> decode -> encode unchanged."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.exi.strategies import instance_of, message_of
from v2gtool.exi import codec, fastpath, jsonform, namespaces

SETS = ["apphand", "iso20", "iso20-dc", "iso20-ac", "iso20-wpt", "iso20-acdp", "iso2", "din"]
CASES = [(ns, name) for ns in SETS for name in namespaces.grammar(ns).messages()]


def test_every_iso20_message_is_covered() -> None:
    names = {name for _ns, name in CASES}
    for expected in ("SessionSetupReq", "DC_ChargeLoopReq", "DC_ChargeLoopRes", "ScheduleExchangeRes",
                     "DC_ChargeParameterDiscoveryReq", "CertificateInstallationRes", "AC_ChargeLoopRes",
                     "WPT_ChargeLoopReq", "ACDP_VehiclePositioningReq", "supportedAppProtocolReq"):
        assert expected in names
    assert len(CASES) >= 80


@pytest.mark.parametrize(("ns", "name"), CASES, ids=[f"{ns}:{name}" for ns, name in CASES])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_round_trip(ns: str, name: str, data: Any) -> None:
    schema = namespaces.grammar(ns)
    message = data.draw(message_of(schema, name))
    encoded = codec.encode(schema, name, message)
    decoded_name, decoded = codec.decode(schema, encoded)
    assert (decoded_name, decoded) == (name, message)
    assert codec.encode(schema, decoded_name, decoded) == encoded
    # and through the JSON form
    assert jsonform.from_json(schema, jsonform.to_json(schema, name, message)) == (name, message)
    # decoding straight into the JSON form gives the same document, keys in the same order, and the
    # generated straight-line decoders handle every valid message themselves (no fallback)
    direct_name, direct = codec.decode(schema, encoded, as_json=True)
    assert json.dumps({direct_name: direct}) == json.dumps(jsonform.to_json(schema, name, message))
    assert fastpath.decode_document(codec.Decoder(schema, encoded, as_json=True), schema) == (direct_name, direct)


SIGNED = [("iso20", n) for n in ("AuthorizationReq", "PnC_AReqAuthorizationMode", "CertificateInstallationReq",
                                  "SignedInstallationData", "MeteringConfirmationReq", "SignedMeteringData")]
SIGNED += [("xmldsig", "SignedInfo"), ("iso2", "AuthorizationReq")]


@pytest.mark.parametrize(("ns", "name"), SIGNED, ids=[f"{ns}:{name}" for ns, name in SIGNED])
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_fragment_round_trip(ns: str, name: str, data: Any) -> None:
    """Signed elements are encoded as EXI fragments (ISO 15118-20 8.3.4; EXI 8.5.2)."""
    schema = namespaces.grammar(ns)
    _name, _kind, arg, _own = schema.fragments[schema.fragment_codes[name]]
    message = data.draw(instance_of(schema, schema.types[arg]))
    encoded = codec.encode(schema, name, message, fragment=True)
    assert codec.decode(schema, encoded, fragment=True) == (name, message)
    direct_name, direct = codec.decode(schema, encoded, fragment=True, as_json=True)
    assert json.dumps({direct_name: direct}) == json.dumps(jsonform.to_json(schema, name, message))
