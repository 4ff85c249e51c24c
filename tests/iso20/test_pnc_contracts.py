"""Plug & Charge with each -20 contract key type (ECDSA P-521 and Ed448, standards digest section 5)
and the contract chain's validity period: OK_CertificateExpiresSoon within 14 days ([V2G20-2218])
authorizes, a chain not yet valid is WARNING_CertificateNotYetValid."""

from __future__ import annotations

import dataclasses
import datetime as dt
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from tests.iso20.harness import Exchange, Plant, run
from tests.iso20.test_power_limits import CHARGER, VEHICLE
from v2gtool.iso20 import pnc
from v2gtool.iso20.evcc import Evcc, EvccConfig
from v2gtool.iso20.events import MeteringConfirmed, SessionEnded
from v2gtool.iso20.secc import Secc, SeccConfig
from v2gtool.messages import iso20_cm as cm
from v2gtool.messages import iso20_ct as ct
from v2gtool.pki.create import init_pki
from v2gtool.pki.profiles import KeyType
from v2gtool.pki.trust import TrustStore, load_pem_chain

NOW = dt.datetime.now(dt.UTC)


def make_pki(base: Path, key_type: KeyType, issued: dt.datetime) -> tuple[pnc.Contract, TrustStore]:
    init_pki(base / "certs", base / "trust", key_type, now=issued)
    key = load_pem_private_key((base / "certs" / "contract.key").read_bytes(), None)
    assert isinstance(key, pnc.ContractKey)
    return pnc.Contract(tuple(load_pem_chain(base / "certs" / "contract.pem")), key), TrustStore.load(base / "trust")


@pytest.fixture(scope="module")
def p521(tmp_path_factory: pytest.TempPathFactory) -> tuple[pnc.Contract, TrustStore]:
    return make_pki(tmp_path_factory.mktemp("p521"), KeyType.SECP521R1, NOW)


@pytest.fixture(scope="module")
def ed448(tmp_path_factory: pytest.TempPathFactory) -> tuple[pnc.Contract, TrustStore]:
    return make_pki(tmp_path_factory.mktemp("ed448"), KeyType.ED448, NOW)


def session(contract: pnc.Contract, trust: TrustStore) -> Exchange:
    plant = Plant(CHARGER, VEHICLE)
    evcc = Evcc(EvccConfig(duration=3.0, contract=contract), plant.vehicle)
    secc = Secc(SeccConfig(pnc_roots=trust.roots, metering_confirmation_interval=1.0), plant, 0.0)
    return run(evcc, secc)


def only(exchange: Exchange, name: str) -> object:
    (body,) = [body for _, message, body in exchange.messages if message == name]
    return body


def ended_ok(exchange: Exchange) -> bool:
    ends = [e for e in exchange.events if isinstance(e, SessionEnded)]
    return len(ends) == 2 and all(e.ok for e in ends)


def signed_request(contract: pnc.Contract, challenge: bytes) -> cm.AuthorizationReqType:
    mode = pnc.authorization_mode(challenge, contract)
    return cm.AuthorizationReqType(
        Header=ct.MessageHeaderType(SessionID=bytes(8), TimeStamp=1, Signature=pnc.sign(mode, contract)),
        SelectedAuthorizationService=cm.authorizationType.PnC, PnC_AReqAuthorizationMode=mode)


@pytest.mark.parametrize(("fixture", "method", "size"), [
    ("p521", pnc.ECDSA_SHA512, 2 * pnc.P521_BYTES),
    ("ed448", pnc.EDDSA_ED448, 114),  # RFC 8032 section 5.2.6: a 114-octet signature
])
def test_each_contract_key_type_authorizes_and_signs_metering(
    fixture: str, method: str, size: int, request: pytest.FixtureRequest
) -> None:
    contract, trust = request.getfixturevalue(fixture)
    exchange = session(contract, trust)
    req = only(exchange, "AuthorizationReq")
    assert isinstance(req, cm.AuthorizationReqType) and req.Header.Signature is not None
    assert req.Header.Signature.SignedInfo.SignatureMethod.Algorithm == method
    assert len(req.Header.Signature.SignatureValue.value) == size
    res = only(exchange, "AuthorizationRes")
    assert isinstance(res, cm.AuthorizationResType) and res.ResponseCode == ct.responseCodeType.OK
    confirmed = [e for e in exchange.events if isinstance(e, MeteringConfirmed)]
    assert confirmed and all(e.signed for e in confirmed)  # the SECC verified each with the contract key
    assert ended_ok(exchange)


def test_the_signature_method_must_be_the_signers_key_type(
    p521: tuple[pnc.Contract, TrustStore], ed448: tuple[pnc.Contract, TrustStore]
) -> None:
    challenge = os.urandom(16)
    for (contract, trust), claimed in ((ed448, pnc.ECDSA_SHA512), (p521, pnc.EDDSA_ED448)):
        req = signed_request(contract, challenge)
        pnc.verify(req, challenge, trust.roots)  # as signed, it passes
        signature = req.Header.Signature
        assert signature is not None
        relabelled = dataclasses.replace(signature, SignedInfo=dataclasses.replace(
            signature.SignedInfo, SignatureMethod=dataclasses.replace(
                signature.SignedInfo.SignatureMethod, Algorithm=claimed)))
        forged = dataclasses.replace(req, Header=dataclasses.replace(req.Header, Signature=relabelled))
        with pytest.raises(pnc.PncRejected, match=f"SignatureMethod {claimed} with a") as exc:
            pnc.verify(forged, challenge, trust.roots)
        assert exc.value.response_code == "FAILED_SignatureError"


def test_an_ed448_signature_by_another_key_does_not_verify(ed448: tuple[pnc.Contract, TrustStore]) -> None:
    contract, trust = ed448
    stranger = dataclasses.replace(contract, key=Ed448PrivateKey.generate())
    challenge = os.urandom(16)
    with pytest.raises(pnc.PncRejected, match="does not verify"):
        pnc.verify(signed_request(stranger, challenge), challenge, trust.roots)


def test_a_contract_expiring_within_14_days_is_ok_certificate_expires_soon_and_the_ev_charges(
    tmp_path: Path,
) -> None:
    # Issued 356 days ago: the 365-day contract leaf expires in 9 days.
    contract, trust = make_pki(tmp_path, KeyType.SECP521R1, NOW - dt.timedelta(days=356))
    exchange = session(contract, trust)
    res = only(exchange, "AuthorizationRes")
    assert isinstance(res, cm.AuthorizationResType)
    assert res.ResponseCode == ct.responseCodeType.OK_CertificateExpiresSoon
    assert any(name == "DC_ChargeLoopReq" for _, name, _ in exchange.messages)
    assert ended_ok(exchange)


def test_a_contract_not_yet_valid_is_warning_certificate_not_yet_valid(tmp_path: Path) -> None:
    contract, trust = make_pki(tmp_path, KeyType.SECP521R1, NOW + dt.timedelta(days=2))
    challenge = os.urandom(16)
    with pytest.raises(pnc.PncRejected, match="not-yet-valid") as exc:
        pnc.verify(signed_request(contract, challenge), challenge, trust.roots)
    assert exc.value.response_code == "WARNING_CertificateNotYetValid"
