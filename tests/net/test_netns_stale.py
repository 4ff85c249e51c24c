"""A SIGKILLed run leaves its namespaces behind; a later run that gets the same pid reuses the names."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from v2gtool.net.netns import veth_pair

pytestmark = pytest.mark.netns


def test_namespaces_left_by_a_killed_run_with_our_pid_do_not_stop_the_next() -> None:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("network namespaces need root and iproute2")
    stale = [f"v2gk{os.getpid()}ev", f"v2gk{os.getpid()}se"]
    for name in stale:
        subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        with veth_pair("v2gk") as pair:
            assert [pair.ev_ns, pair.secc_ns] == stale
            up = subprocess.run(["ip", "-n", pair.ev_ns, "link", "show", pair.ev_if], capture_output=True, text=True)
            assert up.returncode == 0, up.stderr
    finally:
        for name in stale:
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    assert not any(name in listed for name in stale)
