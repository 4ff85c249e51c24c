"""``session run`` with its trace on stdout piped into ``pcap-decode -``, for the tests of that pipe."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

V2GTOOL = [sys.executable, "-m", "v2gtool"]


def trace_through_pcap_decode(
    args: Sequence[str], cwd: Path, timeout: float, env: Mapping[str, str] | None = None
) -> tuple[list[dict[str, Any]], str]:
    """Run ``v2gtool *args*`` (which trace to stdout: ``--trace -`` or ``[session] trace = "-"``) in
    *cwd*, an empty directory, with its stdout piped into ``v2gtool --json pcap-decode -`` (which must
    end within *timeout* seconds): both exit 0 and no file named ``-`` appears in *cwd*. Returns
    pcap-decode's records and the run's stderr (people's lines)."""
    run = subprocess.Popen([*V2GTOOL, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd)
    decode = subprocess.run([*V2GTOOL, "--json", "pcap-decode", "-"], stdin=run.stdout, capture_output=True,
                            text=True, timeout=timeout)
    assert run.stdout is not None and run.stderr is not None
    run.stdout.close()
    run_err = run.stderr.read().decode()
    assert run.wait(timeout=60) == 0, run_err
    assert decode.returncode == 0, decode.stderr
    assert list(cwd.iterdir()) == []
    return [json.loads(line) for line in decode.stdout.splitlines()], run_err
