"""EXI oracle: the peer stack's EXIficient codec behind a JSON-lines protocol.

Run with the PEER venv's interpreter (``pip install iso15118==0.31.2``, needs
``java``); it must not import v2gtool.  It starts one JVM and then answers one JSON
object per stdin line with one JSON object per stdout line:

    {"op": "encode", "namespace": URN, "json": {...}}  -> {"hex": "..."}
    {"op": "decode", "namespace": URN, "hex": "..."}    -> {"json": {...}}
    {"op": "corpus"}  -> {"corpus": [...], "skipped": [...], "lossy": [...]}
    {"op": "time", "namespace": URN, "hex": "...", "repeat": N}
                      -> {"decode_us": .., "encode_us": .., "bridge_us": .., "repeat": N}
    {"op": "version"} -> {"codec": "...", "iso15118": "..."}

The first line written is ``{"ready": true, "codec": VERSION}`` once the JVM is up.
Any failure of a request is answered with ``{"error": "one line"}``; the process
keeps serving.  After a failed encode, decode or time request the codec (its JVM)
is restarted: in EXIficient codec 1.55 a failed encode leaves state behind that
makes the next supportedAppProtocol decode fail, so each request must meet a clean
codec.  Everything else that would reach stdout (the peer's logging, which is
configured to write to stdout, the JVM, stray prints) is sent to stderr so the
protocol stream stays clean.

``time`` measures the peer codec as the peer uses it (JSON text through py4j into
the JVM and back), median of ``repeat`` calls each, for same-run speed ratios;
``bridge_us`` is the median of a trivial JVM call (the codec version), i.e. the
py4j round-trip share included in both figures.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from importlib.metadata import version
from typing import IO, Any

MAX_REPEAT = 100_000


def _protect_stdout() -> IO[str]:
    """Keep a private handle on the protocol stream; point fd 1 (and sys.stdout) at stderr.

    Done before the peer package or the JVM start, so their output cannot interleave
    with protocol lines: the JVM child inherits fd 1, which by then is stderr.
    """
    protocol = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return protocol


def _median_us(durations_ns: list[int]) -> float:
    return round(statistics.median(durations_ns) / 1000.0, 2)


class Oracle:
    """Request dispatcher around one running peer codec."""

    def __init__(self) -> None:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import iso15118_corpus

        self._corpus_module = iso15118_corpus
        self.codec = iso15118_corpus.start_codec()
        self._corpus: dict[str, Any] | None = None

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        try:
            return self._dispatch(request)
        except Exception:
            if request.get("op") in ("encode", "decode", "time"):
                self._restart()
            raise

    def _restart(self) -> None:
        self.codec.gateway.shutdown()
        self.codec = self._corpus_module.start_codec()

    def _dispatch(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        if op == "encode":
            return {"hex": self._encode(request["namespace"], json.dumps(request["json"])).hex()}
        if op == "decode":
            decoded = self.codec.decode(bytes.fromhex(request["hex"]), request["namespace"])
            return {"json": json.loads(decoded)}
        if op == "corpus":
            if self._corpus is None:
                self._corpus = self._corpus_module.build_corpus(self.codec)
            return self._corpus
        if op == "time":
            return self._time(request["namespace"], bytes.fromhex(request["hex"]), int(request["repeat"]))
        if op == "version":
            return {"codec": self.codec.get_version(), "iso15118": version("iso15118")}
        raise ValueError(f"unknown op {op!r}")

    def _encode(self, namespace: str, text: str) -> bytes:
        return bytes(self.codec.encode(text, namespace))

    def _time(self, namespace: str, data: bytes, repeat: int) -> dict[str, Any]:
        if not 1 <= repeat <= MAX_REPEAT:
            raise ValueError(f"repeat must be 1..{MAX_REPEAT}, got {repeat}")
        text = self.codec.decode(data, namespace)
        decode_ns: list[int] = []
        for _ in range(repeat):
            start = time.perf_counter_ns()
            self.codec.decode(data, namespace)
            decode_ns.append(time.perf_counter_ns() - start)
        encode_ns: list[int] = []
        for _ in range(repeat):
            start = time.perf_counter_ns()
            self._encode(namespace, text)
            encode_ns.append(time.perf_counter_ns() - start)
        bridge_ns: list[int] = []
        for _ in range(repeat):
            start = time.perf_counter_ns()
            self.codec.get_version()
            bridge_ns.append(time.perf_counter_ns() - start)
        return {
            "decode_us": _median_us(decode_ns),
            "encode_us": _median_us(encode_ns),
            "bridge_us": _median_us(bridge_ns),
            "repeat": repeat,
        }


def _one_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:2000]


def main() -> int:
    protocol = _protect_stdout()

    def reply(obj: dict[str, Any]) -> None:
        protocol.write(json.dumps(obj, separators=(",", ":")) + "\n")

    try:
        oracle = Oracle()
        reply({"ready": True, "codec": oracle.codec.get_version()})
    except Exception as exc:
        reply({"error": f"oracle start failed: {_one_line(exc)}"})
        return 1
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("request must be a JSON object")
            reply(oracle.handle(request))
        except Exception as exc:
            reply({"error": _one_line(exc)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
