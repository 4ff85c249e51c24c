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

from v2gtool.errors import ConfigError


def _load(context: ssl.SSLContext, what: str, action: str, *paths: Path | None) -> None:
    try:
        if action == "chain":
            context.load_cert_chain(str(paths[0]), str(paths[1]) if paths[1] else None)
        else:
            context.load_verify_locations(cafile=str(paths[0]))
    except (OSError, ssl.SSLError) as exc:
        reason = getattr(exc, "strerror", None) or getattr(exc, "reason", None) or exc
        raise ConfigError(f"{what} {paths[0]}: {reason}") from None


def client_context(ca: Path | None, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    """The station's context: trust *ca* (or the system's roots), present *cert* (profile 3)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca is not None:
        _load(context, "CSMS root CA", "verify", ca)
    if cert is not None:
        _load(context, "station certificate", "chain", cert, key)
    return context


def server_context(cert: Path, key: Path | None, client_ca: Path | None = None) -> ssl.SSLContext:
    """The CSMS's context; with *client_ca* every station must present a certificate it issued."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load(context, "CSMS certificate", "chain", cert, key)
    if client_ca is not None:
        _load(context, "station CA", "verify", client_ca)
        context.verify_mode = ssl.CERT_REQUIRED
    return context
