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
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    Encoding,
    PrivateFormat,
    load_pem_private_key,
)

from v2gtool.cli.live import load_contract
from v2gtool.iso20 import pnc
from v2gtool.iso20.evcc import Direction, Evcc
from v2gtool.iso20.events import MessageSent, MeteringConfirmed
from v2gtool.messages import iso20_cm as cm
from v2gtool.messages import iso20_ct as ct
from v2gtool.pki.tls import TlsError
from v2gtool.pki.trust import TrustStore, load_pem_chain
from v2gtool.session import scenario as scenarios
from v2gtool.session.runner import SessionResult, run_sim


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


def confirmed(result: SessionResult) -> list[MeteringConfirmed]:
    return [e for e in result.events if isinstance(e, MeteringConfirmed)]


@pytest.mark.parametrize("direction", [Direction.CHARGE, Direction.DISCHARGE])
def test_metering_confirmation_signed_in_pnc_unsigned_in_eim(
    pki: tuple[pnc.Contract, TrustStore, TrustStore], direction: Direction
) -> None:
    contract, trust, _other = pki
    scenario = scenarios.load(None, direction=direction, duration=7.0, metering_confirmation_interval=2.0)
    signed = asyncio.run(run_sim(scenario, contract=contract, pnc_roots=trust.roots))
    plain = asyncio.run(run_sim(scenario))
    for result, is_signed in ((signed, True), (plain, False)):
        assert result.ok, result.reason
        readings = confirmed(result)
        assert len(readings) >= 2 and all(r.signed is is_signed for r in readings)
        register = [r.charged_wh if direction is Direction.CHARGE else r.discharged_wh for r in readings]
        assert register == sorted(register) and register[-1] > 0  # the register only grows
        assert abs(register[-1] - abs(result.energy_wh)) <= max(20.0, 0.1 * abs(result.energy_wh))
        sent = [e.message for e in result.events if isinstance(e, MessageSent) and e.role == "EVCC"]
        assert sent.count("MeteringConfirmationReq") == len(readings)


def test_a_metering_confirmation_signed_by_another_key_is_refused(
    pki: tuple[pnc.Contract, TrustStore, TrustStore], monkeypatch: pytest.MonkeyPatch
) -> None:
    contract, trust, _other = pki
    stranger = ec.generate_private_key(ec.SECP521R1())
    real = pnc.sign_element

    def forged(name: str, element: object, element_id: str, key: ec.EllipticCurvePrivateKey) -> object:
        return real(name, element, element_id, stranger if name == "SignedMeteringData" else key)

    monkeypatch.setattr(pnc, "sign_element", forged)
    scenario = scenarios.load(None, duration=5.0, metering_confirmation_interval=2.0)
    result = asyncio.run(run_sim(scenario, contract=contract, pnc_roots=trust.roots))
    assert not result.ok and "FAILED_MeteringSignatureNotValid" in result.secc_reason


def test_a_confirmation_of_another_reading_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    real = Evcc._confirm_metering

    def inflate(self: Evcc, reading: ct.MeterInfoType, now: float) -> None:
        real(self, dataclasses.replace(reading, ChargedEnergyReadingWh=reading.ChargedEnergyReadingWh + 100), now)

    monkeypatch.setattr(Evcc, "_confirm_metering", inflate)
    result = asyncio.run(run_sim(scenarios.load(None, duration=5.0, metering_confirmation_interval=2.0)))
    assert not result.ok and "not the meter reading this SECC sent" in result.secc_reason


def test_an_encrypted_contract_key_is_one_line_not_a_traceback(
    pki: tuple[pnc.Contract, TrustStore, TrustStore], tmp_path: Path
) -> None:
    contract = pki[0]
    (tmp_path / "contract.key").write_bytes(contract.key.private_bytes(
        Encoding.PEM, PrivateFormat.PKCS8, BestAvailableEncryption(b"secret")))
    with pytest.raises(TlsError, match=r"private key .*contract\.key is encrypted") as raised:
        load_contract(tmp_path)
    assert raised.value.exit_code == 5
