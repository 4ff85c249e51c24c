"""V2G certificate profiles (ISO 15118-20 Annex B, ISO 15118-2 Annex F) and the profile checker.

A V2G chain is leaf -> Sub-CA 2 (pathLen 0) -> Sub-CA 1 (pathLen 1) -> root, at most two
Sub-CAs, in three PKIs: V2G/CPO (SECC leaf, DC=CPO), OEM (vehicle or provisioning leaf, DC=OEM)
and MO (contract leaf, DC=MO, issued under an MO root or the V2G root). -20 keys are secp521r1
(ECDSA with SHA-512) or Ed448; -2 keys are secp256r1 (ECDSA with SHA-256).

"Valid" goes beyond X.509 path validation (standards digest section 5): every certificate is
checked for key type and curve, signature algorithm, basicConstraints and path length, keyUsage,
the leaf's domain component for its role, and validity against the local clock, with the
14-day "expires soon" warning of [V2G20-2218].
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec, ed448
from cryptography.x509.oid import NameOID, SignatureAlgorithmOID

from v2gtool.errors import V2GToolError
from v2gtool.exit_codes import ExitCode

EXPIRES_SOON = dt.timedelta(days=14)
"""[V2G20-2218]: a certificate expiring within 14 days is reported as OK_CertificateExpiresSoon."""
MAX_SUB_CAS = 2


class PkiError(V2GToolError):
    """A certificate, key or trust store cannot be read, written or used."""


class CertificateError(PkiError):
    """A certificate or trust store is missing, unreadable or unusable: exit status 5 (TLS or
    certificate failure) in every command, whichever option or default named the file."""

    exit_code = ExitCode.SECURITY


class Protocol(enum.Enum):
    """Which standard's profiles apply."""

    ISO20 = "iso20"
    ISO2 = "iso2"


class KeyType(enum.Enum):
    """Key types of the V2G PKIs."""

    SECP521R1 = "secp521r1"
    ED448 = "ed448"
    SECP256R1 = "secp256r1"


ALLOWED_KEY_TYPES = {
    Protocol.ISO20: frozenset({KeyType.SECP521R1, KeyType.ED448}),
    Protocol.ISO2: frozenset({KeyType.SECP256R1}),
}
_SIGNATURE_NAMES = {
    SignatureAlgorithmOID.ECDSA_WITH_SHA256: "ecdsa-with-SHA256",
    SignatureAlgorithmOID.ECDSA_WITH_SHA384: "ecdsa-with-SHA384",
    SignatureAlgorithmOID.ECDSA_WITH_SHA512: "ecdsa-with-SHA512",
    SignatureAlgorithmOID.ED448: "Ed448",
    SignatureAlgorithmOID.ED25519: "Ed25519",
}
_SIGNATURE_FOR_KEY = {
    KeyType.SECP521R1: SignatureAlgorithmOID.ECDSA_WITH_SHA512,
    KeyType.ED448: SignatureAlgorithmOID.ED448,
    KeyType.SECP256R1: SignatureAlgorithmOID.ECDSA_WITH_SHA256,
}


class LeafRole(enum.Enum):
    """The end-entity certificates, by the domain component their subject must carry."""

    SECC = "CPO"
    VEHICLE = "OEM"
    CONTRACT = "MO"

    @property
    def label(self) -> str:
        return {"CPO": "SECC certificate", "OEM": "vehicle certificate", "MO": "contract certificate"}[
            self.value
        ]

    @property
    def anchors(self) -> frozenset[str]:
        """Domain components of the root CAs this leaf may chain to."""
        return frozenset({"V2G", "MO"}) if self is LeafRole.CONTRACT else frozenset({self.anchor_dc})

    @property
    def anchor_dc(self) -> str:
        return {"CPO": "V2G", "OEM": "OEM", "MO": "MO"}[self.value]


ROOT_DOMAIN_COMPONENTS = frozenset(dc for role in LeafRole for dc in role.anchors)
"""Domain components of the roots some V2G chain may anchor at (V2G, OEM, MO)."""


@dataclass(frozen=True)
class Profile:
    """The extensions one position of a chain must have."""

    name: str
    ca: bool
    path_length: int | None
    key_usage: frozenset[str]


# The root's pathLen is left to the PKI operator; X.509 still enforces it when present.
ROOT = Profile("root CA", True, None, frozenset({"key_cert_sign", "crl_sign"}))
SUB_CA_1 = Profile("Sub-CA 1", True, 1, frozenset({"key_cert_sign", "crl_sign"}))
SUB_CA_2 = Profile("Sub-CA 2", True, 0, frozenset({"key_cert_sign", "crl_sign"}))
# keyUsage bits by their cryptography names; content_commitment is X.509's nonRepudiation.
LEAF_PROFILES = {
    LeafRole.SECC: Profile("SECC leaf", False, None, frozenset({"digital_signature", "key_agreement"})),
    LeafRole.VEHICLE: Profile("vehicle leaf", False, None, frozenset({"digital_signature", "key_agreement"})),
    LeafRole.CONTRACT: Profile(
        "contract leaf", False, None, frozenset({"digital_signature", "content_commitment"})
    ),
}


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True)
class Finding:
    """One failed (or warned) rule, naming the certificate that caused it."""

    severity: Severity
    code: str
    subject: str
    message: str

    @property
    def detail(self) -> str:
        """The rule, the certificate and what is wrong, without the severity."""
        return f"{self.code}: {self.subject}: {self.message}"

    def __str__(self) -> str:
        return f"{self.severity.value}: {self.detail}"


def first_error(findings: Sequence[Finding]) -> str | None:
    """The first error of *findings* in one line, with how many more there are; None without errors."""
    errors = [f for f in findings if f.severity is Severity.ERROR]
    if not errors:
        return None
    more = len(errors) - 1
    return errors[0].detail + (f" (and {more} more)" if more else "")


@dataclass(frozen=True)
class ClockMargin:
    """How far the local clock may be off before the chain's validity check fails."""

    behind: dt.timedelta
    """The clock may run this much behind (latest notBefore is this long ago)."""
    ahead: dt.timedelta
    """The clock may run this much ahead (earliest notAfter is this far off)."""


@dataclass(frozen=True)
class ChainReport:
    """The result of :func:`check_chain`: the chain as checked, the findings and the clock margin."""

    subjects: tuple[str, ...]
    findings: tuple[Finding, ...]
    margin: ClockMargin

    @property
    def ok(self) -> bool:
        return not any(f.severity is Severity.ERROR for f in self.findings)


def subject_of(cert: x509.Certificate) -> str:
    return cert.subject.rfc4514_string()


def domain_component(name: x509.Name) -> str | None:
    values = name.get_attributes_for_oid(NameOID.DOMAIN_COMPONENT)
    return str(values[0].value) if values else None


def der_items(data: bytes) -> list[tuple[int, bytes, bytes]]:
    """Split concatenated DER TLVs (X.690) into ``(tag, content, whole)`` triples (single-byte tags)."""
    items: list[tuple[int, bytes, bytes]] = []
    pos = 0
    while pos < len(data):
        if pos + 2 > len(data):
            raise PkiError("certificate: truncated DER")
        tag, length = data[pos], data[pos + 1]
        start = pos + 2
        if length & 0x80:
            size = length & 0x7F
            length = int.from_bytes(data[start : start + size], "big")
            start += size
        end = start + length
        if end > len(data):
            raise PkiError("certificate: truncated DER")
        items.append((tag, data[start:end], data[pos:end]))
        pos = end
    return items


_OID, _VERSION_TAG = 0x06, 0xA0


def has_explicit_curve(cert: x509.Certificate) -> bool:
    """True when the EC key's ECParameters are not a namedCurve OID (RFC 5480 section 2.1.1).

    ``cryptography`` maps explicit parameters of a known curve to that curve's name, so the
    subjectPublicKeyInfo of the to-be-signed certificate (RFC 5280 section 4.1) is read directly:
    its AlgorithmIdentifier parameters must be an OID; specifiedCurve (a SEQUENCE) and implicitCurve
    (NULL) MUST NOT be used in PKIX.
    """
    if not isinstance(cert.public_key(), ec.EllipticCurvePublicKey):
        return False
    ((_, tbs, _),) = der_items(cert.tbs_certificate_bytes)
    fields = der_items(tbs)
    first = 1 if fields[0][0] == _VERSION_TAG else 0
    # serialNumber, signature, issuer, validity, subject, then subjectPublicKeyInfo
    (_, algorithm, _), *_ = der_items(fields[first + 5][1])
    parameters = der_items(algorithm)[1:]
    return not parameters or parameters[0][0] != _OID


def key_problem(cert: x509.Certificate, protocol: Protocol) -> tuple[str, str] | None:
    """``(code, message)`` when *cert*'s key may not be used under *protocol*, else None.

    -20 keys are secp521r1 or Ed448, -2 keys secp256r1 (ISO 15118-20 Annex B, ISO 15118-2
    Annex F); an EC key must name its curve (RFC 5480 section 2.1.1).
    """
    if has_explicit_curve(cert):
        return (
            "explicit-curve-parameters",
            "EC key with explicit curve parameters; RFC 5480 section 2.1.1 requires a named curve",
        )
    key_type = key_type_of(cert)
    allowed = ALLOWED_KEY_TYPES[protocol]
    if key_type in allowed:
        return None
    shown = key_type.value if isinstance(key_type, KeyType) else key_type
    names = " or ".join(sorted(k.value for k in allowed))
    return "wrong-key-type", f"key is {shown}; ISO 15118-{protocol.value[3:]} requires {names}"


def key_type_of(cert: x509.Certificate) -> KeyType | str:
    """The certificate's :class:`KeyType`, or a description of a key type outside the V2G PKIs."""
    key = cert.public_key()
    if isinstance(key, ed448.Ed448PublicKey):
        return KeyType.ED448
    if isinstance(key, ec.EllipticCurvePublicKey):
        try:
            return KeyType(key.curve.name)
        except ValueError:
            return f"EC {key.curve.name}"
    return type(key).__name__.removeprefix("_").replace("PublicKey", "")


@functools.lru_cache(maxsize=512)
def verify_issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """True when *issuer*'s subject matches and its key verifies *cert*'s signature.

    Cached: certificates are immutable values (hashed and compared by their DER), and an SECC
    sees the same few chains again and again, so each signature is verified once.
    """
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def format_delta(delta: dt.timedelta) -> str:
    seconds = abs(delta.total_seconds())
    if seconds >= 86400:
        return f"{seconds / 86400:.1f} days"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds:.0f} s"


def _ts(moment: dt.datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M:%SZ")


class _Checker:
    def __init__(self, protocol: Protocol, now: dt.datetime) -> None:
        self.protocol = protocol
        self.now = now
        self.findings: list[Finding] = []

    def fail(
        self, cert: x509.Certificate, code: str, message: str, severity: Severity = Severity.ERROR
    ) -> None:
        self.findings.append(Finding(severity, code, subject_of(cert), message))

    def key(self, cert: x509.Certificate, issuer: x509.Certificate | None) -> None:
        """Key type and curve; the signature algorithm must match the issuer's key (when known)."""
        problem = key_problem(cert, self.protocol)
        if problem is not None:
            self.fail(cert, *problem)
        if issuer is None:
            return
        issuer_type = key_type_of(issuer)
        expected = _SIGNATURE_FOR_KEY.get(issuer_type) if isinstance(issuer_type, KeyType) else None
        actual = cert.signature_algorithm_oid
        if expected is not None and actual != expected:
            shown = _SIGNATURE_NAMES.get(actual, actual.dotted_string)
            self.fail(
                cert,
                "wrong-signature-algorithm",
                f"signed with {shown}, expected {_SIGNATURE_NAMES[expected]}",
            )

    def validity(self, cert: x509.Certificate) -> None:
        not_before, not_after = cert.not_valid_before_utc, cert.not_valid_after_utc
        if self.now < not_before:
            self.fail(
                cert,
                "not-yet-valid",
                f"valid from {_ts(not_before)}, {format_delta(not_before - self.now)} after the local clock "
                f"({_ts(self.now)}): the local clock is behind or the certificate was issued early",
            )
        elif self.now > not_after:
            self.fail(
                cert,
                "expired",
                f"expired {_ts(not_after)}, {format_delta(self.now - not_after)} before the local clock "
                f"({_ts(self.now)})",
            )
        elif not_after - self.now <= EXPIRES_SOON:
            self.fail(
                cert,
                "expires-soon",
                f"expires {_ts(not_after)}, in {format_delta(not_after - self.now)} "
                "(within 14 days, [V2G20-2218])",
                Severity.WARNING,
            )

    def constraints(self, cert: x509.Certificate, profile: Profile, cas_below: int) -> None:
        try:
            bc = cert.extensions.get_extension_for_class(x509.BasicConstraints)
        except x509.ExtensionNotFound:
            self.fail(cert, "missing-basic-constraints", f"{profile.name} has no basicConstraints extension")
            return
        if bc.value.ca != profile.ca:
            self.fail(cert, "basic-constraints", f"{profile.name} must have CA:{str(profile.ca).upper()}")
            return
        if not profile.ca:
            return
        path_length = bc.value.path_length
        if path_length is not None and path_length < cas_below:
            self.fail(
                cert,
                "path-length-violated",
                f"pathLen {path_length} but {cas_below} Sub-CA(s) below it in the chain",
            )
        elif profile.path_length is not None and path_length != profile.path_length:
            self.fail(
                cert,
                "path-length-profile",
                f"{profile.name} must have pathLen {profile.path_length}, has {path_length}",
            )

    def key_usage(self, cert: x509.Certificate, profile: Profile) -> None:
        try:
            ext = cert.extensions.get_extension_for_class(x509.KeyUsage)
        except x509.ExtensionNotFound:
            self.fail(cert, "missing-key-usage", f"{profile.name} has no keyUsage extension")
            return
        usage = ext.value
        missing = sorted(bit for bit in profile.key_usage if not getattr(usage, bit))
        if missing:
            self.fail(cert, "key-usage", f"{profile.name} keyUsage lacks {', '.join(missing)}")
        if not ext.critical:
            self.fail(cert, "key-usage", f"{profile.name} keyUsage must be critical")


def check_chain(
    chain: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    role: LeafRole,
    protocol: Protocol = Protocol.ISO20,
    now: dt.datetime | None = None,
) -> ChainReport:
    """Check *chain* (leaf first; the root may be included) against the trusted *roots* and the profiles."""
    if not chain:
        raise PkiError("empty certificate chain")
    when = now or dt.datetime.now(dt.UTC)
    c = _Checker(protocol, when)
    certs = list(chain)
    if len(certs) > 1 and certs[-1].issuer == certs[-1].subject:
        certs.pop()  # a root sent along is ignored: the trust store decides
    anchor = next((r for r in roots if verify_issued_by(certs[-1], r)), None)
    path = [*certs, anchor] if anchor is not None else certs
    leaf = certs[0]

    if anchor is None:
        c.fail(
            certs[-1],
            "unknown-root",
            f"issuer {certs[-1].issuer.rfc4514_string()} is not a trusted root CA of the trust store",
        )
    elif domain_component(anchor.subject) not in role.anchors:
        c.fail(
            anchor,
            "wrong-root",
            f"a {role.label} must chain to a root with DC={'/'.join(sorted(role.anchors))}, "
            f"this root has DC={domain_component(anchor.subject)}",
        )
    for below, above in itertools.pairwise(certs):
        if not verify_issued_by(below, above):
            c.fail(below, "bad-signature", f"not issued by the next certificate {subject_of(above)}")
    sub_cas = len(certs) - 1
    if sub_cas > MAX_SUB_CAS:
        c.fail(leaf, "too-many-sub-cas", f"chain has {sub_cas} Sub-CAs, at most {MAX_SUB_CAS} are allowed")

    dc = domain_component(leaf.subject)
    if dc is None:
        c.fail(leaf, "missing-domain-component", f"a {role.label} needs DC={role.value} in its subject")
    elif dc != role.value:
        other = next((r for r in LeafRole if r.value == dc), None)
        what = f"a {other.label} (DC={dc})" if other else f"DC={dc}"
        c.fail(leaf, "wrong-role", f"is {what}, expected a {role.label} (DC={role.value})")

    for depth, cert in enumerate(path):
        if depth == 0:
            profile = LEAF_PROFILES[role]
        elif cert is anchor:
            profile = ROOT
        else:
            profile = SUB_CA_2 if depth == 1 else SUB_CA_1
        issuer = path[depth + 1] if depth + 1 < len(path) else (cert if cert is anchor else None)
        c.key(cert, issuer)
        c.validity(cert)
        c.constraints(cert, profile, max(depth - 1, 0))
        c.key_usage(cert, profile)

    margin = ClockMargin(
        behind=when - max(cert.not_valid_before_utc for cert in path),
        ahead=min(cert.not_valid_after_utc for cert in path) - when,
    )
    return ChainReport(tuple(subject_of(cert) for cert in path), tuple(c.findings), margin)


def check_root(cert: x509.Certificate, now: dt.datetime | None = None) -> tuple[Finding, ...]:
    """Check a trust anchor by the root CA profile, as :func:`check_chain` checks the root a chain
    reaches: a key type of ISO 15118-20 or of ISO 15118-2 (checked by the protocol its key belongs
    to, -20 for neither), self-signed with the signature algorithm of that key, CA:TRUE, a critical
    keyUsage with keyCertSign and cRLSign, the domain component of a V2G PKI root, and validity
    against the local clock. An error means no chain can be valid under this root.

    Not yet valid is a warning here, not an error: a renewed root may be installed ahead of its
    validity, and chains under it are valid from then on. Expiry within 14 days warns as for any
    certificate ([V2G20-2218]).
    """
    key_type = key_type_of(cert)
    protocol = next((p for p, allowed in ALLOWED_KEY_TYPES.items() if key_type in allowed), Protocol.ISO20)
    c = _Checker(protocol, now or dt.datetime.now(dt.UTC))
    c.key(cert, cert)
    c.validity(cert)
    c.constraints(cert, ROOT, 0)
    c.key_usage(cert, ROOT)
    dc = domain_component(cert.subject)
    if dc not in ROOT_DOMAIN_COMPONENTS:
        c.fail(
            cert,
            "wrong-root",
            f"a V2G PKI root has DC={'/'.join(sorted(ROOT_DOMAIN_COMPONENTS))} in its subject, "
            f"this one has {f'DC={dc}' if dc else 'none'}: no chain can be valid under it",
        )
    return tuple(
        dataclasses.replace(f, severity=Severity.WARNING) if f.code == "not-yet-valid" else f for f in c.findings
    )
