"""Round 3 of deploy-files: every target is checked before anything is written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from v2gtool.deploy import FILES, Placeholders, install
from v2gtool.exit_codes import ExitCode

ARGS = ("deploy-files", "--exec", "/opt/v2gtool/bin/v2gtool", "--interface", "plc0")


def deploy(root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "v2gtool", *ARGS, *extra, str(root)], capture_output=True,
                          text=True, timeout=60)


def _tree(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.mark.parametrize("force", [(), ("--force",)])
def test_a_file_where_a_directory_goes_is_named_and_nothing_is_written(tmp_path: Path, force: tuple[str]) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/apparmor.d").write_text("x\n")
    before = _tree(tmp_path)
    result = deploy(tmp_path, *force)
    assert result.returncode == ExitCode.FAILURE
    assert result.stderr == (f"v2gtool: error: {tmp_path}/etc/apparmor.d is not a directory: nothing installed "
                             f"below {tmp_path}\n")
    assert _tree(tmp_path) == before


def test_after_the_refusal_the_obstacle_alone_needs_fixing(tmp_path: Path) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/nftables.d").symlink_to(tmp_path / "nowhere")  # a dangling symlink is no directory
    assert deploy(tmp_path).returncode == ExitCode.FAILURE
    (tmp_path / "etc/nftables.d").unlink()
    result = deploy(tmp_path)  # no --force needed: nothing was written by the refused run
    assert result.returncode == 0, result.stderr
    assert all((tmp_path / item.target).is_file() for item in FILES)


def test_a_directory_where_a_file_goes_is_refused_even_with_force(tmp_path: Path) -> None:
    (tmp_path / "etc/default/evse-v2g").mkdir(parents=True)
    result = deploy(tmp_path, "--force")
    assert result.returncode == ExitCode.FAILURE
    assert result.stderr == (f"v2gtool: error: {tmp_path}/etc/default/evse-v2g is a directory, not a file: "
                             f"nothing installed below {tmp_path}\n")
    assert not (tmp_path / "etc/systemd").exists()


def test_install_checks_the_last_file_before_writing_the_first(tmp_path: Path) -> None:
    last = tmp_path / FILES[-1].target
    last.parent.parent.mkdir(parents=True)
    last.parent.write_text("")
    with pytest.raises(NotADirectoryError) as raised:
        install(tmp_path, Placeholders(executable=Path("/usr/bin/v2gtool")))
    assert raised.value.filename == str(last.parent)
    assert not (tmp_path / FILES[0].target).exists()
