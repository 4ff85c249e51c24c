"""Public EXI vectors from other codecs' test suites decode and re-encode to the same bytes."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from tests.conftest import public_vectors
from v2gtool.exi import codec, jsonform, namespaces

SUPPORTED = {n.urn for n in namespaces.NAMESPACES}


def _ours(vector: dict[str, Any]) -> bool:
    return vector["namespace"].split(" ")[0] in SUPPORTED and "roundtrip_identical=1" in vector["libcbv2g_check"]


VECTORS = [v for v in public_vectors() if _ours(v)]


@pytest.mark.skipif(not VECTORS, reason="../shared/testdata/vectors is absent")
@pytest.mark.parametrize("vector", VECTORS, ids=[f"{v['message']}-{i}" for i, v in enumerate(VECTORS)])
def test_vector_round_trips_bit_exactly(vector: dict[str, Any]) -> None:
    schema = namespaces.grammar(vector["namespace"].split(" ")[0])
    fragment = "fragment" in vector["namespace"]
    data = bytes.fromhex(vector["hex"])
    name, message = codec.decode(schema, data, fragment=fragment)
    # The vector's label names the root element (in its own spelling), or for -2/DIN the body element.
    root = name
    if name == "V2G_Message":
        root = next(iter(jsonform.to_json(schema, name, message)[name]["Body"]))
    assert vector["message"].split(" ")[0].lower().replace("_", "") in root.lower().replace("_", "")
    assert codec.encode(schema, name, message, fragment=fragment) == data
    # The JSON form is lossless too.
    again_name, again = jsonform.from_json(schema, jsonform.to_json(schema, name, message))
    assert again == message
    assert codec.encode(schema, again_name, again, fragment=fragment) == data


def test_every_iso20_namespace_has_vectors() -> None:
    if not VECTORS:
        pytest.skip("../shared/testdata/vectors is absent")
    covered = {v["namespace"].split(" ")[0] for v in VECTORS}
    for urn in ("CommonMessages", "DC", "AC"):
        assert f"urn:iso:std:iso:15118:-20:{urn}" in covered


def test_signed_fragment_digest_matches_the_signedinfo_reference() -> None:
    """ISO 15118-2 Annex J style: SHA-256 over our re-encoded AuthorizationReq fragment is the
    DigestValue that the (independently produced) SignedInfo fragment carries."""
    fragments = {v["namespace"].split(" ")[0]: bytes.fromhex(v["hex"])
                 for v in public_vectors() if "fragment" in v["namespace"]}
    if len(fragments) < 2:
        pytest.skip("../shared/testdata/vectors with the signed fragments is absent")
    iso2 = namespaces.grammar("iso2")
    name, auth = codec.decode(iso2, fragments["urn:iso:15118:2:2013:MsgDef"], fragment=True)
    assert name == "AuthorizationReq"
    reencoded = codec.encode(iso2, name, auth, fragment=True)
    dsig = namespaces.grammar("xmldsig")
    _name, signed_info = codec.decode(dsig, fragments["http://www.w3.org/2000/09/xmldsig#"], fragment=True)
    (reference,) = signed_info.Reference
    assert f"#{auth.Id}" == reference.URI
    assert hashlib.sha256(reencoded).digest() == reference.DigestValue
