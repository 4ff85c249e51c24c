"""Plug & Charge authorization (ISO 15118-20 AuthorizationSetup / Authorization, PnC mode): the signed challenge.

The EVCC signs its PnC_AReqAuthorizationMode, which carries the SECC's GenChallenge and the contract
certificate chain, with the contract key. As xmldsig profiled for ISO 15118 (exi-profile.md): the
referenced element is encoded as an EXI *fragment* with the CommonMessages grammar and hashed
(SHA-512); SignedInfo is encoded as a fragment with the xmldsig-only grammar and signed with the
contract key's -20 algorithm (standards digest section 5, [V2G20-1000]): ECDSA P-521 / SHA-512, the
signature value being the raw r||s, or Ed448 (pure EdDSA, RFC 8032), the 114-byte signature. The
SECC checks the challenge, the digest, the signature and the contract chain (profiles of
:mod:`v2gtool.pki.profiles`, MO / V2G roots), and answers OK_CertificateExpiresSoon for a contract
chain that expires within 14 days ([V2G20-2218]).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from v2gtool.exi import codec, namespaces
from v2gtool.messages import iso20_cm as cm
from v2gtool.messages import xmldsig as ds
from v2gtool.pki.profiles import KeyType, LeafRole, Severity, check_chain, key_type_of, subject_of

CANONICAL_EXI = "http://www.w3.org/TR/canonical-exi/"
ECDSA_SHA512 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512"
EDDSA_ED448 = "http://www.w3.org/2021/04/xmldsig-more#eddsa-ed448"
"""RFC 9231 section 2.3.12: pure Ed448 (not the pre-hashed ``#eddsa-ed448ph``)."""
SHA512 = "http://www.w3.org/2001/04/xmlenc#sha512"
REFERENCE_ID = "id1"
P521_BYTES = 66
# The response codes of a contract chain that fails on its validity period; any other failure is
# WARNING_CertificateValidationError (ISO 15118-20 responseCodeType, standards digest section 4.3).
_VALIDITY_CODES = {"expired": "WARNING_CertificateExpired", "not-yet-valid": "WARNING_CertificateNotYetValid"}

ContractKey = ec.EllipticCurvePrivateKey | ed448.Ed448PrivateKey


@dataclass(frozen=True)
class Contract:
    """The EV's contract credentials: its chain (leaf first, without the root) and private key
    (secp521r1 or Ed448, the -20 key types)."""

    chain: tuple[x509.Certificate, ...]
    key: ContractKey


@dataclass(frozen=True)
class Authorized:
    """A PnC AuthorizationReq that passed: the contract certificate that signed it and the OK
    response code to send (OK, or OK_CertificateExpiresSoon)."""

    contract: x509.Certificate
    response_code: str


def _fragment(name: str, message: object, schema: str) -> bytes:
    return codec.encode(namespaces.grammar(schema), name, message, fragment=True)


def authorization_mode(challenge: bytes, contract: Contract) -> cm.PnC_AReqAuthorizationModeType:
    leaf, *subs = contract.chain
    return cm.PnC_AReqAuthorizationModeType(
        Id=REFERENCE_ID,
        GenChallenge=challenge,
        ContractCertificateChain=cm.ContractCertificateChainType(
            Certificate=leaf.public_bytes(Encoding.DER),
            SubCertificates=cm.SubCertificatesType(Certificate=tuple(c.public_bytes(Encoding.DER) for c in subs)),
        ),
    )


def sign(mode: cm.PnC_AReqAuthorizationModeType, contract: Contract) -> ds.SignatureType:
    """The Header Signature over *mode* (one Reference to its Id)."""
    return sign_element("PnC_AReqAuthorizationMode", mode, mode.Id, contract.key)


def sign_element(name: str, element: object, element_id: str, key: ContractKey) -> ds.SignatureType:
    """A Header Signature over one CommonMessages element (*name*, its ``Id`` *element_id*), made
    with *key*'s algorithm: ecdsa-sha512 for a secp521r1 key, Ed448 for an Ed448 key."""
    digest = hashlib.sha512(_fragment(name, element, "iso20")).digest()
    signed_info = ds.SignedInfoType(
        CanonicalizationMethod=ds.CanonicalizationMethodType(Algorithm=CANONICAL_EXI),
        SignatureMethod=ds.SignatureMethodType(
            Algorithm=EDDSA_ED448 if isinstance(key, ed448.Ed448PrivateKey) else ECDSA_SHA512
        ),
        Reference=(
            ds.ReferenceType(
                URI=f"#{element_id}",
                Transforms=ds.TransformsType(Transform=(ds.TransformType(Algorithm=CANONICAL_EXI),)),
                DigestMethod=ds.DigestMethodType(Algorithm=SHA512),
                DigestValue=digest,
            ),
        ),
    )
    signed = _fragment("SignedInfo", signed_info, "xmldsig")
    if isinstance(key, ed448.Ed448PrivateKey):
        raw = key.sign(signed)
    else:
        r, s = decode_dss_signature(key.sign(signed, ec.ECDSA(hashes.SHA512())))
        raw = r.to_bytes(P521_BYTES, "big") + s.to_bytes(P521_BYTES, "big")
    return ds.SignatureType(SignedInfo=signed_info, SignatureValue=ds.SignatureValueType(value=raw))


class PncRejected(Exception):
    """Why an AuthorizationReq (PnC) is refused: its ISO 15118-20 response code name and the reason."""

    def __init__(self, response_code: str, reason: str) -> None:
        super().__init__(reason)
        self.response_code = response_code


def verify(req: cm.AuthorizationReqType, challenge: bytes, roots: tuple[x509.Certificate, ...]) -> Authorized:
    """Check a PnC AuthorizationReq: the contract certificate that signed it and the OK code to answer
    with; raise :class:`PncRejected` with the response code to send."""
    mode = req.PnC_AReqAuthorizationMode
    signature = req.Header.Signature
    if mode is None or signature is None:
        raise PncRejected(
            "FAILED_SignatureError", "PnC AuthorizationReq without PnC_AReqAuthorizationMode or Signature"
        )
    if mode.GenChallenge != challenge:
        raise PncRejected("WARNING_ChallengeInvalid", "GenChallenge differs from the one sent in AuthorizationSetupRes")
    chain_der = [mode.ContractCertificateChain.Certificate]
    if mode.ContractCertificateChain.SubCertificates is not None:
        chain_der += list(mode.ContractCertificateChain.SubCertificates.Certificate)
    try:
        chain = [x509.load_der_x509_certificate(der) for der in chain_der]
    except ValueError:
        raise PncRejected("WARNING_CertificateValidationError", "contract chain is not DER X.509") from None
    verify_element(signature, "PnC_AReqAuthorizationMode", mode, mode.Id, chain[0], "FAILED_SignatureError")
    report = check_chain(chain, roots, LeafRole.CONTRACT)
    if not report.ok:
        first = next(f for f in report.findings if f.severity is Severity.ERROR)
        code = _VALIDITY_CODES.get(first.code, "WARNING_CertificateValidationError")
        raise PncRejected(code, f"contract chain: {first}")
    sent = {subject_of(cert) for cert in chain}  # the EV's own chain, not the SECC's trust anchor
    soon = any(f.code == "expires-soon" and f.subject in sent for f in report.findings)
    return Authorized(chain[0], "OK_CertificateExpiresSoon" if soon else "OK")


def verify_element(
    signature: ds.SignatureType | None,
    name: str,
    element: object,
    element_id: str,
    signer: x509.Certificate,
    code: str,
) -> None:
    """Check that *signature* references *element* by its Id, that the digest matches and that
    *signer*'s key signed SignedInfo; raise :class:`PncRejected` with *code* otherwise."""
    if signature is None:
        raise PncRejected(code, f"{name} is not signed")
    (reference,) = signature.SignedInfo.Reference or (None,)
    if reference is None or f"#{element_id}" != reference.URI:
        raise PncRejected(code, f"Signature does not reference {name}")
    if hashlib.sha512(_fragment(name, element, "iso20")).digest() != reference.DigestValue:
        raise PncRejected(code, f"DigestValue does not match {name}")
    key, key_type = signer.public_key(), key_type_of(signer)
    method = signature.SignedInfo.SignatureMethod.Algorithm
    raw = signature.SignatureValue.value
    signed = _fragment("SignedInfo", signature.SignedInfo, "xmldsig")
    try:
        if isinstance(key, ed448.Ed448PublicKey) and method == EDDSA_ED448:
            key.verify(raw, signed)
        elif isinstance(key, ec.EllipticCurvePublicKey) and key_type is KeyType.SECP521R1 and method == ECDSA_SHA512:
            if len(raw) != 2 * P521_BYTES:
                raise PncRejected(code, "signature is not ECDSA P-521 r||s")
            r, s = int.from_bytes(raw[:P521_BYTES], "big"), int.from_bytes(raw[P521_BYTES:], "big")
            key.verify(encode_dss_signature(r, s), signed, ec.ECDSA(hashes.SHA512()))
        else:
            shown = key_type if isinstance(key_type, str) else key_type.value
            raise PncRejected(
                code,
                f"SignatureMethod {method} with a {shown} key: ISO 15118-20 signs with {ECDSA_SHA512} "
                f"(secp521r1) or {EDDSA_ED448} (Ed448)",
            )
    except InvalidSignature:
        raise PncRejected(code, "signature over SignedInfo does not verify") from None
