"""OCPP security profiles (OCPP 2.0.1 part 2 A00 "Security profiles"), as TLS contexts.

==========  ======================================  =========================================
profile     station                                 CSMS
==========  ======================================  =========================================
1           ws://, HTTP Basic (station id, password)  checks the password
2           wss://, HTTP Basic; verifies the CSMS    TLS server certificate, checks the password
3           wss://, a client certificate             TLS, requires and verifies the certificate
==========  ======================================  =========================================

TLS 1.2 is the floor OCPP sets (A00.FR.309); Python's defaults negotiate 1.3 where both sides can.
"""

from __future__ import annotations

import ssl
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from v2gtool.pki.profiles import CertificateError
from v2gtool.pki.tls import TlsError, check_credentials, load_credentials
from v2gtool.pki.trust import load_pem_chain


def _load(context: ssl.SSLContext, what: str, path: Path, key: Path | None = None, chain: bool = False) -> None:
    """Load *path* into *context*: with *chain* our certificate chain (and its *key*, never asking
    for a passphrase), else trusted CA certificates.

    A file that is missing, unreadable, not a PEM certificate (or key), or a key that does not match
    its certificate is a :class:`~v2gtool.pki.tls.TlsError`, exit 5 as in every command that reads
    certificates, in one line that says which file it is."""
    try:
        if chain:
            check_credentials(path, key)
            load_credentials(context, path, key)
        else:
            cadata = "".join(cert.public_bytes(Encoding.PEM).decode() for cert in load_pem_chain(path))
            context.load_verify_locations(cadata=cadata)
    except (CertificateError, TlsError) as exc:
        raise TlsError(f"{what}: {exc}") from None


def client_context(ca: Path | None, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """The station's context: trust *ca* (or the system's roots), present *cert* (profile 3)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca is not None:
        _load(context, "CSMS root CA", ca)
    if cert is not None:
        _load(context, "station certificate", cert, key, chain=True)
    return context


def server_context(cert: Path, key: Path | None, client_ca: Path | None = None) -> ssl.SSLContext:
    """The CSMS's context; with *client_ca* every station must present a certificate it issued."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(context, "CSMS certificate", cert, key, chain=True)
    if client_ca is not None:
        _load(context, "station CA", client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
