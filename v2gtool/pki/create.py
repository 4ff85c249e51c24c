"""``pki init``: a complete ISO 15118-20 test PKI (Annex B profiles) plus an ISO 15118-2 SECC chain.

Three -20 PKIs, each root -> Sub-CA 1 (pathLen 1) -> Sub-CA 2 (pathLen 0) -> leaf:
V2G root -> CPO Sub-CAs -> SECC leaf (DC=CPO); OEM root -> OEM Sub-CAs -> vehicle leaf (DC=OEM);
MO root -> MO Sub-CAs -> contract leaf (DC=MO). A charger that also speaks -2 needs a second SECC
leaf on secp256r1 (one key cannot serve both, EVerest/EVerest#2683), so an -2 V2G chain is made too.

Layout (``certs_dir`` defaults to ``/etc/v2g/certs``, ``trust_dir`` to ``/etc/v2g/trust/certs``):
``<name>.pem`` is a leaf followed by its Sub-CA 2 and Sub-CA 1 (what a TLS peer sends) and
``<name>.key`` its private key; CA certificates and keys are in ``ca/``; the roots go into the
trust directory with hash links. Private keys are written mode 0600 and never printed.
Replacing a PKI (``force``) rewrites these files and removes the previous PKI's roots (those of
its ``ca/*_root_ca.pem``) from the trust directory; other roots there are kept.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448
from cryptography.x509.oid import NameOID

from v2gtool.pki.profiles import (
    ALLOWED_KEY_TYPES,
    LEAF_PROFILES,
    ROOT,
    SUB_CA_1,
    SUB_CA_2,
    KeyType,
    LeafRole,
    PkiError,
    Profile,
    Protocol,
)
from v2gtool.pki.trust import fsync_dir, install_roots, load_pem_chain, stage, staged_name

DEFAULT_CERTS_DIR = Path("/etc/v2g/certs")
log = logging.getLogger(__name__)
ORGANIZATION = "v2gtool test PKI"
# Validity is PKI policy, not fixed by the standard (standards digest section 5).
ROOT_DAYS = 3650
SUB_CA_DAYS = 1460
LEAF_DAYS = 365
_KEY_USAGE_BITS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
    "encipher_only",
    "decipher_only",
)

PrivateKey = ec.EllipticCurvePrivateKey | ed448.Ed448PrivateKey


@dataclass(frozen=True)
class Issued:
    """A certificate and its private key."""

    cert: x509.Certificate
    key: PrivateKey


def generate_key(key_type: KeyType) -> PrivateKey:
    if key_type is KeyType.ED448:
        return ed448.Ed448PrivateKey.generate()
    curve = ec.SECP521R1() if key_type is KeyType.SECP521R1 else ec.SECP256R1()
    return ec.generate_private_key(curve)


def v2g_name(common_name: str, domain_component: str) -> x509.Name:
    """A subject as V2G PKIs write it: ``CN=..., O=..., DC=...`` (the DC names the role)."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.DOMAIN_COMPONENT, domain_component),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, ORGANIZATION),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _signature_hash(key: PrivateKey) -> hashes.SHA256 | hashes.SHA512 | None:
    """ECDSA with SHA-512 on secp521r1, SHA-256 on secp256r1; Ed448 hashes internally (None)."""
    if isinstance(key, ed448.Ed448PrivateKey):
        return None
    return hashes.SHA512() if key.curve.name == KeyType.SECP521R1.value else hashes.SHA256()


def issue(
    subject: x509.Name,
    profile: Profile,
    key: PrivateKey,
    issuer: Issued | None,
    *,
    not_before: dt.datetime,
    days: int,
) -> Issued:
    """Issue a certificate for *key* with *profile*'s extensions, signed by *issuer* (self-signed if None).

    An empty ``profile.key_usage`` leaves the keyUsage extension out.
    """
    signer = issuer.key if issuer else key
    issuer_cert = issuer.cert if issuer else None
    public = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_cert.subject if issuer_cert else subject)
        .public_key(public)
        .serial_number(secrets.randbits(63) + 1)
        .not_valid_before(not_before)
        .not_valid_after(not_before + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(profile.ca, profile.path_length if profile.ca else None), True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), False)
    )
    if profile.key_usage:
        usage = {bit: bit in profile.key_usage for bit in _KEY_USAGE_BITS}
        builder = builder.add_extension(x509.KeyUsage(**usage), True)
    if issuer_cert is not None:
        ski = issuer_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), False
        )
    return Issued(builder.sign(signer, _signature_hash(signer)), key)


@dataclass(frozen=True)
class Chain:
    """One PKI branch: root, Sub-CA 1, Sub-CA 2 and leaf."""

    root: Issued
    sub_ca_1: Issued
    sub_ca_2: Issued
    leaf: Issued


def build_chain(
    ca_label: str,
    ca_dc: str,
    leaf_cn: str,
    role: LeafRole,
    key_type: KeyType,
    not_before: dt.datetime,
) -> Chain:
    """Issue root, Sub-CA 1, Sub-CA 2 and a *role* leaf, every key of *key_type*."""
    root = issue(
        v2g_name(f"{ca_label} Root CA", ca_dc),
        ROOT,
        generate_key(key_type),
        None,
        not_before=not_before,
        days=ROOT_DAYS,
    )
    sub1 = issue(
        v2g_name(f"{ca_label} Sub-CA 1", ca_dc),
        SUB_CA_1,
        generate_key(key_type),
        root,
        not_before=not_before,
        days=SUB_CA_DAYS,
    )
    sub2 = issue(
        v2g_name(f"{ca_label} Sub-CA 2", ca_dc),
        SUB_CA_2,
        generate_key(key_type),
        sub1,
        not_before=not_before,
        days=SUB_CA_DAYS,
    )
    leaf = issue(
        v2g_name(leaf_cn, role.value),
        LEAF_PROFILES[role],
        generate_key(key_type),
        sub2,
        not_before=not_before,
        days=LEAF_DAYS,
    )
    return Chain(root, sub1, sub2, leaf)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _private_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def write_private_key(path: Path, key: PrivateKey) -> None:
    """Write *key* as unencrypted PKCS#8 PEM, readable by its owner only (0600 from creation on);
    a crash leaves the old file or the new one (:func:`stage`, then a rename)."""
    os.replace(stage(path, _private_pem(key), 0o600), path)


@dataclass(frozen=True)
class PkiLayout:
    """What :func:`init_pki` wrote: leaf names -> (chain file, key file), CA files, trust files."""

    leaves: dict[str, tuple[Path, Path]]
    cas: tuple[Path, ...]
    roots: tuple[Path, ...]


@dataclass(frozen=True)
class ChainSpec:
    """One chain ``pki init`` makes: names of its CAs and leaf, the leaf's role, the protocol."""

    ca_label: str
    ca_dc: str
    leaf_cn: str
    role: LeafRole
    protocol: Protocol = Protocol.ISO20


CHAINS: dict[str, ChainSpec] = {
    "secc_iso20": ChainSpec("V2G", "V2G", "SECC", LeafRole.SECC),
    "vehicle": ChainSpec("OEM", "OEM", "V2GTOOL0VEHICLE0001", LeafRole.VEHICLE),
    "contract": ChainSpec("MO", "MO", "DEV2GTOOLC000001", LeafRole.CONTRACT),
    "secc_iso2": ChainSpec("V2G ISO 15118-2", "V2G", "SECC ISO 15118-2", LeafRole.SECC, Protocol.ISO2),
}
"""File name -> chain. -20 chains use the chosen key type; the -2 chain is always secp256r1."""


def init_pki(
    certs_dir: Path = DEFAULT_CERTS_DIR,
    trust_dir: Path | None = None,
    key_type: KeyType = KeyType.SECP521R1,
    *,
    now: dt.datetime | None = None,
    force: bool = False,
) -> PkiLayout:
    """Create every chain of :data:`CHAINS` under *certs_dir* and install the roots into *trust_dir*.

    Crash and disk-full safe: every file is written whole under a temporary name first
    (:func:`stage`), the roots are installed, and only then do the files take their names, each by
    an atomic rename. An interruption leaves each file old or new, never partial, and the staged
    roots of the interrupted run tell the next one which roots it installed (:func:`_old_roots`), so
    ``force`` repairs it.
    """
    if key_type not in ALLOWED_KEY_TYPES[Protocol.ISO20]:
        raise PkiError("ISO 15118-20 keys are secp521r1 or ed448; secp256r1 is only for the -2 chain")
    trust = trust_dir if trust_dir is not None else certs_dir.parent / "trust" / "certs"
    existing = [certs_dir / f"{name}.key" for name in CHAINS if (certs_dir / f"{name}.key").exists()]
    if existing and not force:
        raise PkiError(f"{existing[0]} exists; pass --force to replace the PKI in {certs_dir}")
    not_before = (now or dt.datetime.now(dt.UTC)).replace(microsecond=0) - dt.timedelta(minutes=5)
    try:
        return _write_pki(certs_dir, trust, key_type, not_before, _old_roots(certs_dir, trust))
    except OSError as exc:  # a directory or a rename (a file's own write is a PkiError naming it)
        raise PkiError(f"cannot write the PKI: {exc.filename or certs_dir}: {exc.strerror}") from None


def _ca_path(certs_dir: Path, spec: ChainSpec, part: str) -> Path:
    """``<certs_dir>/ca/<ca label>_<part>.pem``, e.g. ``ca/v2g_iso_15118_2_root_ca.pem``."""
    slug = spec.ca_label.lower().replace(" ", "_").replace("-", "_")
    return certs_dir / "ca" / f"{slug}_{part}.pem"


def _old_roots(certs_dir: Path, trust: Path) -> list[x509.Certificate]:
    """The roots a ``pki init`` in *certs_dir* may have installed before: its ``ca/*_root_ca.pem``
    and those an interrupted run staged beside them.

    ``--force`` removes exactly these from the trust directory: roots put there by hand or by
    ``pki trust-update`` stay. A root file that cannot be read (one written part-way by a version
    that wrote in place) is skipped with a warning, as its root cannot be named: the new PKI is
    still made. An unreadable staged file needs no warning: its run stopped before it installed any
    root, which it does only once every file is staged whole.
    """
    roots: dict[bytes, x509.Certificate] = {}
    for spec in CHAINS.values():
        path = _ca_path(certs_dir, spec, "root_ca")
        for candidate, warn in ((path, True), (staged_name(path), False)):
            if not candidate.is_file():
                continue
            try:
                cert = load_pem_chain(candidate)[0]
            except PkiError as exc:
                if warn:
                    log.warning("%s: its root, if in %s, stays there (remove it by hand)", exc, trust)
                continue
            roots[cert.fingerprint(hashes.SHA256())] = cert
    return list(roots.values())


def _write_pki(
    certs_dir: Path,
    trust: Path,
    key_type: KeyType,
    not_before: dt.datetime,
    old_roots: list[x509.Certificate],
) -> PkiLayout:
    ca_dir = certs_dir / "ca"
    ca_dir.mkdir(parents=True, exist_ok=True)
    ca_dir.chmod(0o700)
    leaves: dict[str, tuple[Path, Path]] = {}
    cas: list[Path] = []
    roots: list[x509.Certificate] = []
    staged: dict[Path, Path] = {}  # final name -> staged name
    try:
        for name, spec in CHAINS.items():
            chain_key_type = KeyType.SECP256R1 if spec.protocol is Protocol.ISO2 else key_type
            chain = build_chain(spec.ca_label, spec.ca_dc, spec.leaf_cn, spec.role, chain_key_type, not_before)
            for part, issued in (
                ("root_ca", chain.root),
                ("sub_ca_1", chain.sub_ca_1),
                ("sub_ca_2", chain.sub_ca_2),
            ):
                cert_path = _ca_path(certs_dir, spec, part)
                staged[cert_path] = stage(cert_path, _pem(issued.cert), 0o644)
                key_path = cert_path.with_suffix(".key")
                staged[key_path] = stage(key_path, _private_pem(issued.key), 0o600)
                cas.append(cert_path)
            chain_path, key_path = certs_dir / f"{name}.pem", certs_dir / f"{name}.key"
            chain_pem = b"".join(_pem(i.cert) for i in (chain.leaf, chain.sub_ca_2, chain.sub_ca_1))
            staged[chain_path] = stage(chain_path, chain_pem, 0o644)
            staged[key_path] = stage(key_path, _private_pem(chain.leaf.key), 0o600)
            leaves[name] = (chain_path, key_path)
            roots.append(chain.root.cert)
        written = install_roots(roots, trust, replaces=old_roots)
    except PkiError:  # install_roots is all or nothing: no root of this run is installed, nothing to record
        for tmp in staged.values():
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)
        raise
    for path, tmp in staged.items():
        os.replace(tmp, path)
    for directory in (ca_dir, certs_dir):
        fsync_dir(directory)
    return PkiLayout(leaves, tuple(cas), tuple(written))
