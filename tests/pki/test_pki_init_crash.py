"""pki init on a full disk or killed part-way: each file old or new, and --force repairs what is left."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.hashes import SHA256

from v2gtool.pki import create
from v2gtool.pki.create import CHAINS, init_pki
from v2gtool.pki.profiles import PkiError
from v2gtool.pki.trust import TrustStore, load_pem_chain

REPO = Path(__file__).resolve().parents[2]


class Killed(BaseException):
    """Stands for SIGKILL: nothing after it runs, no handler sees it."""


def snapshot(base: Path) -> dict[str, bytes]:
    return {str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()}


def failing_after(calls: int, real: Callable[..., Any], error: BaseException) -> Callable[..., Any]:
    count = 0

    def call(*args: Any) -> Any:
        nonlocal count
        count += 1
        if count > calls:
            raise error
        return real(*args)

    return call


def trusted(trust: Path) -> set[bytes]:
    return {root.fingerprint(SHA256()) for root in TrustStore.load(trust).roots}


def test_a_full_disk_names_the_file_and_leaves_the_old_pki_whole(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    certs, trust = tmp_path / "certs", tmp_path / "trust"
    init_pki(certs, trust)
    before = snapshot(tmp_path)
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    monkeypatch.setattr(create.os, "fsync", failing_after(5, os.fsync, full))
    with pytest.raises(PkiError, match=r"^cannot write .*/certs/ca/\w+\.(pem|key): No space left on device$"):
        init_pki(certs, trust, force=True)
    assert snapshot(tmp_path) == before  # no partial file, no staged file left


@pytest.mark.parametrize("force", [False, True])
def test_a_root_written_part_way_by_an_older_version_is_skipped_with_a_warning(tmp_path: Path, force: bool) -> None:
    base = tmp_path / "pki"
    (base / "certs" / "ca").mkdir(parents=True)
    if force:  # a whole PKI whose MO root was then left empty
        assert run("pki", "init", str(base)).returncode == 0
    root = base / "certs" / "ca" / "mo_root_ca.pem"
    root.write_bytes(b"")
    result = run("pki", "init", str(base), *(["--force"] if force else []))
    assert result.returncode == 0, result.stderr
    assert result.stderr == (f"v2gtool: warning: {root}: no PEM certificate found: its root, if in "
                             f"{base / 'trust' / 'certs'}, stays there (remove it by hand)\n")
    assert load_pem_chain(root)


@pytest.mark.parametrize("renames", [0, 3, 17, 4 * len(CHAINS) * 2 - 1])
def test_force_after_a_run_killed_while_renaming_removes_that_runs_roots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, renames: int
) -> None:
    """The killed run installed its roots before its files took their names: the next --force must
    still find them (staged beside the old ones) and remove them from the trust directory."""
    certs, trust = tmp_path / "certs", tmp_path / "trust"
    init_pki(certs, trust)
    with monkeypatch.context() as patch:
        patch.setattr(create.os, "replace", failing_after(renames, os.replace, Killed()))
        with pytest.raises(Killed):
            init_pki(certs, trust, force=True)
    for path in certs.rglob("*.pem"):  # each file old or new, never partial
        assert load_pem_chain(path)
    init_pki(certs, trust, force=True)
    new_roots = {load_pem_chain(path)[0].fingerprint(SHA256()) for path in (certs / "ca").glob("*_root_ca.pem")}
    assert trusted(trust) == new_roots
    assert not list(certs.rglob(".*.tmp"))


def test_plain_init_after_a_run_killed_at_its_first_write(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    certs, trust = tmp_path / "certs", tmp_path / "trust"
    with monkeypatch.context() as patch:
        patch.setattr(create.os, "fsync", failing_after(0, os.fsync, Killed()))
        with pytest.raises(Killed):
            init_pki(certs, trust)
    assert not list(certs.rglob("*.pem"))  # what was written is under its staged name
    layout = init_pki(certs, trust)
    assert len(TrustStore.load(trust).roots) == len(layout.roots) == len(CHAINS)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "v2gtool", *args], cwd=REPO, capture_output=True, text=True, timeout=60
    )
