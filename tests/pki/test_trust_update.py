"""``install_roots`` is all or nothing, and ``trust-update`` hangs up only services that reload on SIGHUP."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from v2gtool.pki import trust
from v2gtool.pki.profiles import PkiError
from v2gtool.pki.trust import TrustStore, catches_sighup, install_roots, load_pem_chain

REPO = Path(__file__).resolve().parents[2]


def snapshot(directory: Path) -> dict[str, bytes | str]:
    """Every entry of *directory*: a link's target, a file's content."""
    return {
        p.name: os.readlink(p) if p.is_symlink() else p.read_bytes() for p in sorted(directory.iterdir())
    }


def roots(pki_dir: Path, *names: str) -> list:  # type: ignore[type-arg]
    return [load_pem_chain(next((pki_dir / "trust" / "certs").glob(f"{name}_*.pem")))[0] for name in names]


@pytest.mark.parametrize("failing_call", [1, 2, 3, 4])
def test_an_error_partway_leaves_the_trust_directory_as_it_was(
    pki_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, failing_call: int
) -> None:
    # The update writes two roots (os.replace calls 1-2), removes the root it replaces and rebuilds
    # the two new roots' hash links (calls 3-4). Whichever step fails, nothing of it remains.
    old, first, second = roots(pki_dir, "V2G_Root_CA", "OEM_Root_CA", "MO_Root_CA")
    directory = tmp_path / "trust"
    install_roots([old], directory)
    before = snapshot(directory)
    calls = 0
    replace = os.replace

    def flaky(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        nonlocal calls
        calls += 1
        if calls == failing_call:
            raise OSError(28, "No space left on device", str(dst))
        replace(src, dst)

    monkeypatch.setattr(trust.os, "replace", flaky)
    with pytest.raises(PkiError, match=r"cannot update the trust directory: .*: No space left on device"):
        install_roots([first, second], directory, replaces=[old])
    monkeypatch.undo()
    assert snapshot(directory) == before
    assert TrustStore.load(directory).roots == (old,)
    # and without the fault the same update goes through
    install_roots([first, second], directory, replaces=[old])
    assert set(TrustStore.load(directory).roots) == {first, second}
    assert not any(p.name.startswith(".") for p in directory.iterdir())


def test_each_new_root_is_on_disk_before_its_rename_and_the_directory_after_the_renames(
    pki_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A power loss right after the update must not leave an empty root file (rename(2) can reach
    the disk before the data it renames) nor the old names (the renames live in the directory)."""
    first, second = roots(pki_dir, "OEM_Root_CA", "MO_Root_CA")
    directory = tmp_path / "trust"
    directory.mkdir()
    calls: list[tuple[str, Path]] = []
    fsync, replace = os.fsync, os.replace

    def recorded_fsync(fd: int) -> None:
        calls.append(("fsync", Path(os.readlink(f"/proc/self/fd/{fd}"))))
        fsync(fd)

    def recorded_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        calls.append(("replace", Path(src).resolve()))
        replace(src, dst)

    monkeypatch.setattr(os, "fsync", recorded_fsync)
    monkeypatch.setattr(os, "replace", recorded_replace)
    written = install_roots([first, second], directory)
    for path in written:
        tmp = trust.staged_name(path).resolve()
        assert calls.index(("fsync", tmp)) < calls.index(("replace", tmp))
    last_rename = max(i for i, (call, _) in enumerate(calls) if call == "replace")
    assert ("fsync", directory.resolve()) in calls[last_rename + 1 :]


def test_a_directory_that_cannot_be_synced_is_named_and_left_as_it_was(
    pki_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = roots(pki_dir, "V2G_Root_CA", "OEM_Root_CA")
    directory = tmp_path / "trust"
    install_roots([old], directory)
    before = snapshot(directory)
    fsync = os.fsync

    def failing_on_directories(fd: int) -> None:
        if os.path.isdir(f"/proc/self/fd/{fd}"):
            raise OSError(5, "Input/output error")  # fsync(2) gives no file name
        fsync(fd)

    monkeypatch.setattr(os, "fsync", failing_on_directories)
    where = re.escape(str(directory))
    with pytest.raises(PkiError, match=rf"^cannot update the trust directory: {where}: Input/output error$"):
        install_roots([new], directory, replaces=[old])
    assert snapshot(directory) == before


def test_sigcgt_says_whether_sighup_is_caught() -> None:
    assert catches_sighup("Name:\tpython3\nSigIgn:\t0000000001001000\nSigCgt:\t0000000180004a03\n")
    assert not catches_sighup("Name:\tpython3\nSigCgt:\t0000000180004a02\n")
    assert not catches_sighup("")  # unreadable (hidepid): not signalled


def test_trust_update_does_not_hang_up_a_v2gtool_process_that_does_not_reload(
    pki_dir: Path, tmp_path: Path
) -> None:
    """``serve`` and ``session run`` have no SIGHUP handler: SIGHUP would end a charging session."""
    script = tmp_path / "bin" / "v2gtool"  # run as the console script runs: a v2gtool process
    script.parent.mkdir()
    script.write_text("import time\nprint('ready', flush=True)\ntime.sleep(30)\n")
    service = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert service.stdout is not None and service.stdout.readline() == "ready\n"
        pid_file = tmp_path / "serve.pid"
        pid_file.write_text(f"{service.pid}\n")
        bundle = next((pki_dir / "trust" / "certs").glob("V2G_Root_CA_*.pem"))
        result = subprocess.run(
            [sys.executable, "-m", "v2gtool", "pki", "trust-update", str(bundle), "--trust-dir",
             str(tmp_path / "trust"), "--pid-file", str(pid_file)],
            cwd=REPO, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert result.stderr == (
            f"v2gtool: warning: not reloaded: pid {service.pid} (pid file {pid_file}): the process does not "
            "reload on SIGHUP (SIGHUP would end it): restart it to use the new roots\n"
        )
        assert TrustStore.load(tmp_path / "trust").roots == tuple(load_pem_chain(bundle))
        assert service.poll() is None  # still running
    finally:
        service.kill()
        service.wait()
