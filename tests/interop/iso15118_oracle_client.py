"""Client for the iso15118 (EXIficient) EXI oracle subprocess; importable without pytest.

The oracle (``iso15118_oracle.py``) runs in a separate "peer" virtualenv holding
``iso15118==0.31.2`` and needs ``java``; this client only speaks its JSON-lines
protocol, so v2gtool's own environment never imports the peer package.

Usage (e.g. from a benchmark)::

    python = find_peer_python(repo_root)
    with Iso15118Oracle.start(python) as oracle:
        data = oracle.encode("urn:iso:std:iso:15118:-20:DC", {"DC_ChargeLoopReq": {...}})
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType
from typing import IO, Any

ORACLE_SCRIPT = Path(__file__).with_name("iso15118_oracle.py")
FALLBACK_PEER_PYTHON = Path("/tmp/peers/iso15118-venv/bin/python")
START_TIMEOUT_S = 90.0
REQUEST_TIMEOUT_S = 120.0


class OracleError(RuntimeError):
    """The oracle answered with an error, or died, or did not answer in time."""


def find_peer_python(repo_root: Path) -> Path | None:
    """The peer interpreter: $V2GTOOL_PEER_PYTHON, <repo>/.venv-peers, or the shared fallback."""
    configured = os.environ.get("V2GTOOL_PEER_PYTHON")
    candidates = (
        [Path(configured)]
        if configured
        else [repo_root / ".venv-peers" / "bin" / "python", FALLBACK_PEER_PYTHON]
    )
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def java_available() -> bool:
    return shutil.which("java") is not None


class Iso15118Oracle:
    """One running oracle process; every call is one request line and one reply line."""

    def __init__(self, process: subprocess.Popen[str], stderr: IO[bytes]) -> None:
        self._process = process
        self._stderr = stderr
        self.codec_version = ""
        self._corpus: dict[str, Any] | None = None

    @classmethod
    def start(cls, python: Path) -> Iso15118Oracle:
        stderr = tempfile.TemporaryFile()  # noqa: SIM115 - owned by the oracle, closed in close()
        process = subprocess.Popen(
            [str(python), str(ORACLE_SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            encoding="utf-8",
        )
        oracle = cls(process, stderr)
        try:
            ready = oracle._read_reply(START_TIMEOUT_S)
        except OracleError:
            oracle.close()
            raise
        oracle.codec_version = str(ready["codec"])
        return oracle

    def __enter__(self) -> Iso15118Oracle:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def encode(self, namespace: str, obj: dict[str, Any]) -> bytes:
        """EXI bytes the peer codec produces for a JSON message object."""
        return bytes.fromhex(self._request({"op": "encode", "namespace": namespace, "json": obj})["hex"])

    def decode(self, namespace: str, data: bytes) -> dict[str, Any]:
        """The peer codec's JSON form of an EXI stream."""
        decoded: dict[str, Any] = self._request({"op": "decode", "namespace": namespace, "hex": data.hex()})[
            "json"
        ]
        return decoded

    def corpus(self) -> list[dict[str, Any]]:
        """Entries ``{"name", "namespace", "hex", "json"[, "schema_deviation"]}`` built by the peer."""
        corpus: list[dict[str, Any]] = self._corpus_reply()["corpus"]
        return corpus

    def skipped(self) -> list[dict[str, Any]]:
        """Corpus messages the peer models or codec could not build: ``{"name", "stage", "reason"}``."""
        skipped: list[dict[str, Any]] = self._corpus_reply()["skipped"]
        return skipped

    def lossy(self) -> list[dict[str, Any]]:
        """Corpus entries whose peer decode differs from what the peer model sent."""
        lossy: list[dict[str, Any]] = self._corpus_reply()["lossy"]
        return lossy

    def time(self, namespace: str, data: bytes, repeat: int) -> dict[str, Any]:
        """Median microseconds of ``repeat`` peer decodes and encodes of one message."""
        return self._request({"op": "time", "namespace": namespace, "hex": data.hex(), "repeat": repeat})

    def version(self) -> dict[str, Any]:
        return self._request({"op": "version"})

    def close(self) -> None:
        """Stop the oracle (closing stdin ends it; kill it if it lingers)."""
        process = self._process
        if process.poll() is None:
            try:
                if process.stdin is not None:
                    process.stdin.close()
                process.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
        self._stderr.close()

    def _corpus_reply(self) -> dict[str, Any]:
        if self._corpus is None:
            self._corpus = self._request({"op": "corpus"})
        return self._corpus

    def _request(self, request: dict[str, Any]) -> dict[str, Any]:
        stdin = self._process.stdin
        if stdin is None or self._process.poll() is not None:
            raise OracleError(f"oracle is not running{self._stderr_tail()}")
        try:
            stdin.write(json.dumps(request) + "\n")
            stdin.flush()
        except OSError as exc:
            raise OracleError(f"oracle stdin closed ({exc}){self._stderr_tail()}") from exc
        return self._read_reply(REQUEST_TIMEOUT_S)

    def _read_reply(self, timeout_s: float) -> dict[str, Any]:
        stdout = self._process.stdout
        assert stdout is not None
        ready, _, _ = select.select([stdout], [], [], timeout_s)
        if not ready:
            raise OracleError(f"oracle gave no answer within {timeout_s:.0f} s{self._stderr_tail()}")
        line = stdout.readline()
        if not line:
            raise OracleError(f"oracle exited (rc={self._process.poll()}){self._stderr_tail()}")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise OracleError(str(reply["error"]))
        return reply

    def _stderr_tail(self) -> str:
        self._stderr.seek(0)
        tail = self._stderr.read()[-800:].decode("utf-8", "replace").strip()
        return f"; oracle stderr: {tail}" if tail else ""
