"""Plug & Charge authorization (ISO 15118-20 clause 8.3.4.2 / 8.4.x): the signed challenge.

The EVCC signs its PnC_AReqAuthorizationMode, which carries the SECC's GenChallenge and the contract
certificate chain, with the contract key. As xmldsig profiled for ISO 15118 (exi-profile.md): the
referenced element is encoded as an EXI *fragment* with the CommonMessages grammar and hashed
(SHA-512); SignedInfo is encoded as a fragment with the xmldsig-only grammar and signed with ECDSA
P-521 / SHA-512, the signature value being the raw r||s. The SECC checks the challenge, the digest,
the signature and the contract chain (profiles of :mod:`v2gtool.pki.profiles`, MO / V2G roots).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from v2gtool.exi import codec, namespaces
from v2gtool.messages import iso20_cm as cm
from v2gtool.messages import xmldsig as ds
from v2gtool.pki.profiles import LeafRole, Severity, check_chain

CANONICAL_EXI = "http://www.w3.org/TR/canonical-exi/"
ECDSA_SHA512 = "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512"
SHA512 = "http://www.w3.org/2001/04/xmlenc#sha512"
REFERENCE_ID = "id1"
P521_BYTES = 66


@dataclass(frozen=True)
class Contract:
    """The EV's contract credentials: its chain (leaf first, without the root) and private key."""

    chain: tuple[x509.Certificate, ...]
    key: ec.EllipticCurvePrivateKey


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


def sign_element(name: str, element: object, element_id: str, key: ec.EllipticCurvePrivateKey) -> ds.SignatureType:
    """A Header Signature over one CommonMessages element (*name*, its ``Id`` *element_id*)."""
    digest = hashlib.sha512(_fragment(name, element, "iso20")).digest()
    signed_info = ds.SignedInfoType(
        CanonicalizationMethod=ds.CanonicalizationMethodType(Algorithm=CANONICAL_EXI),
        SignatureMethod=ds.SignatureMethodType(Algorithm=ECDSA_SHA512),
        Reference=(
            ds.ReferenceType(
                URI=f"#{element_id}",
                Transforms=ds.TransformsType(Transform=(ds.TransformType(Algorithm=CANONICAL_EXI),)),
                DigestMethod=ds.DigestMethodType(Algorithm=SHA512),
                DigestValue=digest,
            ),
        ),
    )
    der = key.sign(_fragment("SignedInfo", signed_info, "xmldsig"), ec.ECDSA(hashes.SHA512()))
    r, s = decode_dss_signature(der)
    raw = r.to_bytes(P521_BYTES, "big") + s.to_bytes(P521_BYTES, "big")
    return ds.SignatureType(SignedInfo=signed_info, SignatureValue=ds.SignatureValueType(value=raw))


class PncRejected(Exception):
    """Why an AuthorizationReq (PnC) is refused: its ISO 15118-20 response code name and the reason."""

    def __init__(self, response_code: str, reason: str) -> None:
        super().__init__(reason)
        self.response_code = response_code


def verify(req: cm.AuthorizationReqType, challenge: bytes, roots: tuple[x509.Certificate, ...]) -> x509.Certificate:
    """Check a PnC AuthorizationReq and return the contract certificate that signed it; raise
    :class:`PncRejected` with the response code to send."""
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
        code = "WARNING_CertificateExpired" if first.code == "expired" else "WARNING_CertificateValidationError"
        raise PncRejected(code, f"contract chain: {first}")
    return chain[0]


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
    key = signer.public_key()
    raw = signature.SignatureValue.value
    if not isinstance(key, ec.EllipticCurvePublicKey) or len(raw) != 2 * P521_BYTES:
        raise PncRejected(code, "signature is not ECDSA P-521 r||s")
    der = encode_dss_signature(int.from_bytes(raw[:P521_BYTES], "big"), int.from_bytes(raw[P521_BYTES:], "big"))
    try:
        key.verify(der, _fragment("SignedInfo", signature.SignedInfo, "xmldsig"), ec.ECDSA(hashes.SHA512()))
    except InvalidSignature:
        raise PncRejected(code, "signature over SignedInfo does not verify") from None
