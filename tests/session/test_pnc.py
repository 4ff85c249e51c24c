"""Plug & Charge: the EV signs the SECC's challenge with its contract key; the SECC checks the
challenge, the EXI-fragment digest, the ECDSA P-521 signature and the contract chain (MO root)."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from v2gtool.iso20 import pnc
from v2gtool.iso20.events import MessageSent
from v2gtool.messages import iso20_cm as cm
from v2gtool.messages import iso20_ct as ct
from v2gtool.pki.trust import TrustStore, load_pem_chain
from v2gtool.session import scenario as scenarios
from v2gtool.session.runner import run_sim


def make_pki(base: Path) -> tuple[pnc.Contract, TrustStore]:
    subprocess.run([sys.executable, "-m", "v2gtool", "pki", "init", str(base)], check=True, capture_output=True,
                   timeout=120)
    key = load_pem_private_key((base / "certs" / "contract.key").read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    chain = tuple(load_pem_chain(base / "certs" / "contract.pem"))
    return pnc.Contract(chain, key), TrustStore.load(base / "trust" / "certs")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> tuple[pnc.Contract, TrustStore, TrustStore]:
    contract, trust = make_pki(tmp_path_factory.mktemp("pki"))
    _other_contract, other = make_pki(tmp_path_factory.mktemp("other"))
    return contract, trust, other


def test_pnc_session_charges(pki: tuple[pnc.Contract, TrustStore, TrustStore]) -> None:
    contract, trust, _other = pki
    result = asyncio.run(run_sim(scenarios.load(None, duration=3.0), contract=contract, pnc_roots=trust.roots))
    assert result.ok, result.reason
    auth = [e for e in result.events if isinstance(e, MessageSent) and e.message == "AuthorizationRes"]
    assert auth and auth[0].summary == {"ResponseCode": "OK", "EVSEProcessing": "Finished"}


def test_contract_from_an_unknown_root_is_refused(pki: tuple[pnc.Contract, TrustStore, TrustStore]) -> None:
    contract, _trust, other = pki
    result = asyncio.run(run_sim(scenarios.load(None, duration=3.0), contract=contract, pnc_roots=other.roots))
    assert not result.ok
    assert result.reason == "authorization refused: WARNING_CertificateValidationError"


def signed_request(contract: pnc.Contract, challenge: bytes) -> cm.AuthorizationReqType:
    mode = pnc.authorization_mode(challenge, contract)
    return cm.AuthorizationReqType(
        Header=ct.MessageHeaderType(SessionID=bytes(8), TimeStamp=1, Signature=pnc.sign(mode, contract)),
        SelectedAuthorizationService=cm.authorizationType.PnC, PnC_AReqAuthorizationMode=mode)


def test_each_tampering_is_named(pki: tuple[pnc.Contract, TrustStore, TrustStore]) -> None:
    contract, trust, _other = pki
    challenge = os.urandom(16)
    req = signed_request(contract, challenge)
    pnc.verify(req, challenge, trust.roots)  # the untouched request passes
    with pytest.raises(pnc.PncRejected, match="GenChallenge differs") as exc:
        pnc.verify(req, os.urandom(16), trust.roots)
    assert exc.value.response_code == "WARNING_ChallengeInvalid"
    # the signed element changed after signing: its digest no longer matches
    mode = req.PnC_AReqAuthorizationMode
    assert mode is not None
    renamed = dataclasses.replace(req, PnC_AReqAuthorizationMode=dataclasses.replace(mode, Id="id2"))
    with pytest.raises(pnc.PncRejected, match="does not reference PnC_AReqAuthorizationMode") as exc:
        pnc.verify(renamed, challenge, trust.roots)
    assert exc.value.response_code == "FAILED_SignatureError"
    subs = mode.ContractCertificateChain.SubCertificates
    assert subs is not None and len(subs.Certificate) == 2
    chain = dataclasses.replace(mode.ContractCertificateChain, SubCertificates=cm.SubCertificatesType(
        Certificate=subs.Certificate[:1]))
    swapped = dataclasses.replace(req, PnC_AReqAuthorizationMode=dataclasses.replace(
        mode, ContractCertificateChain=chain))
    with pytest.raises(pnc.PncRejected, match="DigestValue does not match") as exc:
        pnc.verify(swapped, challenge, trust.roots)
    assert exc.value.response_code == "FAILED_SignatureError"
    # a flipped bit in the signature value
    signature = req.Header.Signature
    assert signature is not None
    value = bytearray(signature.SignatureValue.value)
    value[10] ^= 1
    bad = dataclasses.replace(req, Header=dataclasses.replace(req.Header, Signature=dataclasses.replace(
        signature, SignatureValue=dataclasses.replace(signature.SignatureValue, value=bytes(value)))))
    with pytest.raises(pnc.PncRejected, match="does not verify"):
        pnc.verify(bad, challenge, trust.roots)
