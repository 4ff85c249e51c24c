"""Where a command's option falls back to the configuration, for the settings several commands share.

A light module (no engines, no sockets): ``sdp-discovery``, ``doctor`` and ``deploy-files`` import it
and stay quick to start.
"""

from __future__ import annotations

from pathlib import Path

from v2gtool.cli.context import AppContext
from v2gtool.pki.create import DEFAULT_CERTS_DIR
from v2gtool.pki.trust import DEFAULT_TRUST_DIR
from v2gtool.sdp import DEFAULT_TCP_PORT


def secc_tcp_port(app: AppContext, port: int | None) -> int:
    """The TCP port the SECC listens on and announces by SDP: *port* (``--port``), else ``[sdp]
    tcp_port`` (a Dynamic Port, checked when the configuration was read), else the default."""
    return port or int(app.config.get("sdp", "tcp_port", DEFAULT_TCP_PORT))


def tls_dirs(app: AppContext, certs_dir: Path | None, trust_dir: Path | None) -> tuple[Path, Path]:
    """The directories of our own certificates and of the trust anchors: each option, else ``[pki]
    certs_dir`` / ``trust_dir``, else the defaults."""
    return (
        certs_dir or Path(app.config.get("pki", "certs_dir", DEFAULT_CERTS_DIR)),
        trust_dir or Path(app.config.get("pki", "trust_dir", DEFAULT_TRUST_DIR)),
    )
