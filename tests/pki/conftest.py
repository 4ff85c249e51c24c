"""A test PKI made once per session (secp521r1 and Ed448), shared read-only by the PKI and TLS tests."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from v2gtool.pki.create import init_pki
from v2gtool.pki.profiles import KeyType

NOW = dt.datetime.now(dt.UTC).replace(microsecond=0)


@pytest.fixture(scope="session")
def pki_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("pki521")
    init_pki(base / "certs", base / "trust" / "certs", KeyType.SECP521R1, now=NOW)
    return base


@pytest.fixture(scope="session")
def pki_dir_ed448(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("pki448")
    init_pki(base / "certs", base / "trust" / "certs", KeyType.ED448, now=NOW)
    return base
