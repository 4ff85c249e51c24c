"""The -20 profile checker: a good chain per PKI passes; each defect is named in one precise line."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from v2gtool.pki.create import LEAF_DAYS, Chain, Issued, build_chain, issue, v2g_name, write_private_key
from v2gtool.pki.profiles import (
    LEAF_PROFILES,
    SUB_CA_1,
    SUB_CA_2,
    ChainReport,
    KeyType,
    LeafRole,
    Protocol,
    Severity,
    check_chain,
)

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
ISSUED = NOW - dt.timedelta(days=30)
SECC_DN = "CN=SECC,O=v2gtool test PKI,DC=CPO"


@pytest.fixture(scope="module")
def cpo() -> Chain:
    return build_chain("V2G", "V2G", "SECC", LeafRole.SECC, KeyType.SECP521R1, ISSUED)


def check(
    chain: Chain, leaf: object | None = None, role: LeafRole = LeafRole.SECC, **kwargs: object
) -> ChainReport:
    certs = [leaf or chain.leaf.cert, chain.sub_ca_2.cert, chain.sub_ca_1.cert]
    return check_chain(certs, [chain.root.cert], role, **kwargs)  # type: ignore[arg-type]


def lines(report: ChainReport) -> list[str]:
    return [str(f) for f in report.findings]


@pytest.mark.parametrize(
    ("role", "key_type", "protocol"),
    [
        (LeafRole.SECC, KeyType.SECP521R1, Protocol.ISO20),
        (LeafRole.VEHICLE, KeyType.SECP521R1, Protocol.ISO20),
        (LeafRole.CONTRACT, KeyType.SECP521R1, Protocol.ISO20),
        (LeafRole.SECC, KeyType.ED448, Protocol.ISO20),
        (LeafRole.VEHICLE, KeyType.ED448, Protocol.ISO20),
        (LeafRole.SECC, KeyType.SECP256R1, Protocol.ISO2),
    ],
)
def test_conforming_chains_pass(role: LeafRole, key_type: KeyType, protocol: Protocol) -> None:
    dc = {LeafRole.SECC: "V2G", LeafRole.VEHICLE: "OEM", LeafRole.CONTRACT: "MO"}[role]
    chain = build_chain(dc, dc, "leaf", role, key_type, ISSUED)
    report = check(chain, role=role, protocol=protocol, now=NOW)
    assert report.findings == ()
    assert report.ok
    assert len(report.subjects) == 4


def test_expired_leaf(cpo: Chain) -> None:
    report = check(cpo, now=ISSUED + dt.timedelta(days=LEAF_DAYS + 2))
    assert not report.ok
    assert lines(report) == [
        f"error: expired: {SECC_DN}: expired 2027-05-02 12:00:00Z, "
        "2.0 days before the local clock (2027-05-04 12:00:00Z)"
    ]
    assert report.margin.ahead == dt.timedelta(days=-2)


def test_not_yet_valid_leaf_names_the_clock_skew(cpo: Chain) -> None:
    future = issue(
        v2g_name("SECC", "CPO"),
        LEAF_PROFILES[LeafRole.SECC],
        ec.generate_private_key(ec.SECP521R1()),
        cpo.sub_ca_2,
        not_before=NOW + dt.timedelta(hours=3),
        days=365,
    )
    report = check(cpo, future.cert, now=NOW)
    assert lines(report) == [
        f"error: not-yet-valid: {SECC_DN}: valid from 2026-06-01 15:00:00Z, 3.0 h after the local clock "
        "(2026-06-01 12:00:00Z): the local clock is behind or the certificate was issued early"
    ]
    assert report.margin.behind == dt.timedelta(hours=-3)


def test_clock_margin_of_a_valid_chain(cpo: Chain) -> None:
    report = check(cpo, now=NOW)
    assert report.margin.behind == NOW - ISSUED  # a clock this far behind would see notBefore in the future
    assert report.margin.ahead == ISSUED + dt.timedelta(days=LEAF_DAYS) - NOW


def test_expires_soon_is_a_warning(cpo: Chain) -> None:
    report = check(cpo, now=ISSUED + dt.timedelta(days=LEAF_DAYS - 10))
    assert report.ok
    assert lines(report) == [
        f"warning: expires-soon: {SECC_DN}: expires 2027-05-02 12:00:00Z, "
        "in 10.0 days (within 14 days, [V2G20-2218])"
    ]


def test_wrong_curve(cpo: Chain) -> None:
    leaf = issue(
        v2g_name("SECC", "CPO"),
        LEAF_PROFILES[LeafRole.SECC],
        ec.generate_private_key(ec.SECP384R1()),
        cpo.sub_ca_2,
        not_before=ISSUED,
        days=365,
    )
    assert lines(check(cpo, leaf.cert, now=NOW)) == [
        f"error: wrong-key-type: {SECC_DN}: key is EC secp384r1; ISO 15118-20 requires ed448 or secp521r1"
    ]


def test_iso2_chain_under_iso20_rules() -> None:
    chain = build_chain("V2G", "V2G", "SECC", LeafRole.SECC, KeyType.SECP256R1, ISSUED)
    report = check(chain, now=NOW)
    assert {f.code for f in report.findings} == {"wrong-key-type"}
    assert len(report.findings) == 4  # leaf, both Sub-CAs and the root


def test_missing_key_usage(cpo: Chain) -> None:
    profile = dataclasses.replace(LEAF_PROFILES[LeafRole.SECC], key_usage=frozenset())
    leaf = issue(
        v2g_name("SECC", "CPO"),
        profile,
        ec.generate_private_key(ec.SECP521R1()),
        cpo.sub_ca_2,
        not_before=ISSUED,
        days=365,
    )
    assert lines(check(cpo, leaf.cert, now=NOW)) == [
        f"error: missing-key-usage: {SECC_DN}: SECC leaf has no keyUsage extension"
    ]


def test_key_usage_lacking_key_agreement(cpo: Chain) -> None:
    profile = dataclasses.replace(LEAF_PROFILES[LeafRole.SECC], key_usage=frozenset({"digital_signature"}))
    leaf = issue(
        v2g_name("SECC", "CPO"),
        profile,
        ec.generate_private_key(ec.SECP521R1()),
        cpo.sub_ca_2,
        not_before=ISSUED,
        days=365,
    )
    assert lines(check(cpo, leaf.cert, now=NOW)) == [
        f"error: key-usage: {SECC_DN}: SECC leaf keyUsage lacks key_agreement"
    ]


def test_path_length_violated(cpo: Chain) -> None:
    key = ec.generate_private_key
    sub1 = issue(
        v2g_name("V2G Sub-CA 1", "V2G"),
        dataclasses.replace(SUB_CA_1, path_length=0),
        key(ec.SECP521R1()),
        cpo.root,
        not_before=ISSUED,
        days=900,
    )
    sub2 = issue(
        v2g_name("V2G Sub-CA 2", "V2G"), SUB_CA_2, key(ec.SECP521R1()), sub1, not_before=ISSUED, days=900
    )
    leaf = issue(
        v2g_name("SECC", "CPO"),
        LEAF_PROFILES[LeafRole.SECC],
        key(ec.SECP521R1()),
        sub2,
        not_before=ISSUED,
        days=365,
    )
    report = check_chain([leaf.cert, sub2.cert, sub1.cert], [cpo.root.cert], LeafRole.SECC, now=NOW)
    assert lines(report) == [
        "error: path-length-violated: CN=V2G Sub-CA 1,O=v2gtool test PKI,DC=V2G: "
        "pathLen 0 but 1 Sub-CA(s) below it in the chain"
    ]


def test_unknown_root(cpo: Chain) -> None:
    other = build_chain("V2G", "V2G", "SECC", LeafRole.SECC, KeyType.SECP521R1, ISSUED)
    report = check_chain(
        [cpo.leaf.cert, cpo.sub_ca_2.cert, cpo.sub_ca_1.cert], [other.root.cert], LeafRole.SECC, now=NOW
    )
    assert lines(report) == [
        "error: unknown-root: CN=V2G Sub-CA 1,O=v2gtool test PKI,DC=V2G: "
        "issuer CN=V2G Root CA,O=v2gtool test PKI,DC=V2G is not a trusted root CA of the trust store"
    ]


def test_contract_certificate_as_secc_leaf_is_wrong_role() -> None:
    mo = build_chain("MO", "MO", "DEV2GTOOLC000001", LeafRole.CONTRACT, KeyType.SECP521R1, ISSUED)
    report = check(mo, now=NOW)
    assert lines(report)[:2] == [
        "error: wrong-root: CN=MO Root CA,O=v2gtool test PKI,DC=MO: "
        "a SECC certificate must chain to a root with DC=V2G, this root has DC=MO",
        "error: wrong-role: CN=DEV2GTOOLC000001,O=v2gtool test PKI,DC=MO: is a contract certificate (DC=MO), "
        "expected a SECC certificate (DC=CPO)",
    ]


def test_broken_signature_is_named(cpo: Chain) -> None:
    other = build_chain("V2G", "V2G", "SECC", LeafRole.SECC, KeyType.SECP521R1, ISSUED)
    report = check(cpo, other.leaf.cert, now=NOW)
    assert lines(report) == [
        f"error: bad-signature: {SECC_DN}: "
        "not issued by the next certificate CN=V2G Sub-CA 2,O=v2gtool test PKI,DC=V2G"
    ]


def test_severity_of_every_error_is_error(cpo: Chain) -> None:
    report = check(cpo, now=ISSUED - dt.timedelta(days=1))
    assert {f.code for f in report.findings} == {"not-yet-valid"}
    assert {f.severity for f in report.findings} == {Severity.ERROR}
    assert len(report.findings) == 4


def test_wrong_signature_hash(cpo: Chain) -> None:
    template = cpo.leaf.cert
    builder = (
        x509.CertificateBuilder()
        .subject_name(template.subject)
        .issuer_name(template.issuer)
        .public_key(ec.generate_private_key(ec.SECP521R1()).public_key())
        .serial_number(7)
        .not_valid_before(ISSUED)
        .not_valid_after(ISSUED + dt.timedelta(days=365))
    )
    for extension in template.extensions:
        builder = builder.add_extension(extension.value, extension.critical)
    leaf = builder.sign(cpo.sub_ca_2.key, hashes.SHA256())  # type: ignore[arg-type]
    assert lines(check(cpo, leaf, now=NOW)) == [
        f"error: wrong-signature-algorithm: {SECC_DN}: "
        "signed with ecdsa-with-SHA256, expected ecdsa-with-SHA512"
    ]


needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl CLI not installed")


_LEAF_EXT = "basicConstraints=critical,CA:false\nkeyUsage=critical,digitalSignature,keyAgreement\n"
_SUB_CA_2_EXT = "basicConstraints=critical,CA:true,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n"


def _files(tmp_path: Path, name: str, issued: Issued) -> tuple[Path, Path]:
    cert, key = tmp_path / f"{name}.pem", tmp_path / f"{name}.key"
    cert.write_bytes(issued.cert.public_bytes(Encoding.PEM))
    write_private_key(key, issued.key)
    return cert, key


def _openssl_issue(
    tmp_path: Path, name: str, dc: str, extensions: str, ca: tuple[Path, Path]
) -> tuple[Path, Path]:
    """A secp521r1 key with explicit curve parameters (``-param_enc explicit``), certified by *ca*."""
    cert, key, ext = (tmp_path / f"{name}{suffix}" for suffix in (".pem", ".key", ".cnf"))
    ext.write_text(extensions)
    openssl = functools.partial(subprocess.run, check=True, capture_output=True)
    openssl(["openssl", "ecparam", "-name", "secp521r1", "-param_enc", "explicit", "-genkey", "-out", str(key)])
    csr = openssl(["openssl", "req", "-new", "-key", str(key), "-subj", f"/DC={dc}/CN={name}"]).stdout
    openssl(
        ["openssl", "x509", "-req", "-CA", str(ca[0]), "-CAkey", str(ca[1]), "-sha512", "-days", "400",
         "-set_serial", "7", "-extfile", str(ext), "-out", str(cert)],
        input=csr,
    )  # fmt: skip
    return cert, key


@needs_openssl
def test_explicit_curve_parameters_are_refused_in_leaf_and_sub_ca(tmp_path: Path) -> None:
    """RFC 5480 section 2.1.1: PKIX EC keys name their curve; openssl -x509_strict refuses others too."""
    now = dt.datetime.now(dt.UTC)
    cpo = build_chain("V2G", "V2G", "SECC", LeafRole.SECC, KeyType.SECP521R1, now - dt.timedelta(hours=1))
    sub_ca_1 = _files(tmp_path, "sub1", cpo.sub_ca_1)
    leaf = _openssl_issue(tmp_path, "leaf", "CPO", _LEAF_EXT, _files(tmp_path, "sub2", cpo.sub_ca_2))
    sub_ca_2 = _openssl_issue(tmp_path, "xsub2", "V2G", _SUB_CA_2_EXT, sub_ca_1)
    leaf_under_it = _openssl_issue(tmp_path, "leaf2", "CPO", _LEAF_EXT, sub_ca_2)
    for chain, subjects in (
        ([leaf[0], tmp_path / "sub2.pem"], ["CN=leaf,DC=CPO"]),
        ([leaf_under_it[0], sub_ca_2[0]], ["CN=leaf2,DC=CPO", "CN=xsub2,DC=V2G"]),
    ):
        certs = [x509.load_pem_x509_certificate(p.read_bytes()) for p in [*chain, sub_ca_1[0]]]
        report = check_chain(certs, [cpo.root.cert], LeafRole.SECC, now=now + dt.timedelta(minutes=1))
        assert lines(report) == [
            f"error: explicit-curve-parameters: {subject}: "
            "EC key with explicit curve parameters; RFC 5480 section 2.1.1 requires a named curve"
            for subject in subjects
        ]
