"""Mutual TLS 1.3 handshake cost of ``tls-verify`` beside OpenSSL's own, same certificates, same run.

For each -20 key type (secp521r1, Ed448) a fresh test PKI is made and three figures are taken on
loopback, one after another:

1. ``openssl s_time -new`` against ``openssl s_server`` (OpenSSL's own client and server). s_time
   reports no distribution, so its figure is the mean wall time per connection (wall time of the
   run divided by the connections it made).
2. our EVCC (``handshake_as_client``: TCP connect, TLS 1.3 with the vehicle certificate, handshake
   observation, -20 profile check of the SECC chain, close) against the same ``openssl s_server``.
3. our EVCC against our SECC (``v2gtool tls-verify --serve`` in its own process).

Each of ours runs ``--handshakes`` times (default 500) after a warm-up; p50 and p99 are of the
per-handshake wall time (connect to report). The ratio is our p50 over OpenSSL's mean.

Usage: python benchmarks/tls_bench.py [--handshakes 500] [--openssl-seconds 4]
"""

from __future__ import annotations

import argparse
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding

from v2gtool.pki.create import init_pki
from v2gtool.pki.probe import handshake_as_client
from v2gtool.pki.profiles import KeyType, Protocol
from v2gtool.pki.tls import client_context
from v2gtool.pki.trust import TrustStore, load_pem_chain

WARMUP = 20
SUITES = "TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"


@dataclass(frozen=True)
class Row:
    key_type: str
    pair: str
    count: int
    p50_ms: float | None
    p99_ms: float | None
    mean_ms: float


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _split(chain: Path, out: Path) -> tuple[Path, Path]:
    """Leaf and Sub-CAs of a ``pki init`` chain file, as separate files for openssl."""
    certs = [c.public_bytes(Encoding.PEM) for c in load_pem_chain(chain)]
    leaf, rest = out / f"{chain.stem}_leaf.pem", out / f"{chain.stem}_subcas.pem"
    leaf.write_bytes(certs[0])
    rest.write_bytes(b"".join(certs[1:]))
    return leaf, rest


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("server did not start listening")


def _our_client(base: Path, port: int, count: int) -> list[float]:
    trust = base / "trust" / "certs"
    context = client_context(base / "certs", trust, Protocol.ISO20)
    roots = TrustStore.load(trust).roots
    own = load_pem_chain(base / "certs" / "vehicle.pem")[0]
    times: list[float] = []
    for i in range(WARMUP + count):
        start = time.perf_counter()
        report = handshake_as_client(
            ("127.0.0.1", port), context, Protocol.ISO20, roots, own, late_alert_wait=0
        )
        elapsed = time.perf_counter() - start
        if not report.ok:
            raise RuntimeError(f"handshake {i} failed: {report.error} {report.diagnosis}")
        if i >= WARMUP:
            times.append(elapsed)
    return times


def _row(key_type: str, pair: str, times: list[float]) -> Row:
    ms = sorted(t * 1000 for t in times)
    p99 = ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))]
    return Row(key_type, pair, len(ms), statistics.median(ms), p99, statistics.fmean(ms))


def bench(key_type: KeyType, handshakes: int, openssl_seconds: int) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="v2g-tls-bench-") as tmp:
        base = Path(tmp)
        init_pki(base / "certs", base / "trust" / "certs", key_type)
        trust = base / "trust" / "certs"
        secc_leaf, secc_subcas = _split(base / "certs" / "secc_iso20.pem", base)
        vehicle_leaf, vehicle_subcas = _split(base / "certs" / "vehicle.pem", base)
        # s_time has no -cert_chain: it sends the Sub-CAs it finds in its CA file (auto chain).
        client_cas = base / "s_time_cas.pem"
        v2g_root = next(trust.glob("V2G_Root_CA_*.pem"))
        client_cas.write_bytes(vehicle_subcas.read_bytes() + v2g_root.read_bytes())

        port = _free_port()
        s_server = subprocess.Popen(
            ["openssl", "s_server", "-accept", f"127.0.0.1:{port}", "-cert", str(secc_leaf),
             "-cert_chain", str(secc_subcas), "-key", str(base / "certs" / "secc_iso20.key"),
             "-CApath", str(trust), "-Verify", "3", "-verify_return_error", "-tls1_3",
             "-ciphersuites", SUITES, "-quiet"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait_listening(port, s_server)
            start = time.perf_counter()
            s_time = subprocess.run(
                ["openssl", "s_time", "-connect", f"127.0.0.1:{port}", "-new", "-time", str(openssl_seconds),
                 "-cert", str(vehicle_leaf), "-key", str(base / "certs" / "vehicle.key"),
                 "-CAfile", str(client_cas), "-verify", "3", "-tls1_3", "-ciphersuites", SUITES],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            wall = time.perf_counter() - start
            match = re.search(r"(\d+) connections in [\d.]+s", s_time.stdout)
            if match is None:
                raise RuntimeError(f"unexpected s_time output: {s_time.stdout[-300:]}")
            count = int(match.group(1))
            rows.append(Row(key_type.value, "openssl s_time -> openssl s_server", count, None, None,
                            wall * 1000 / count))  # fmt: skip
            rows.append(
                _row(key_type.value, "v2gtool EVCC -> openssl s_server", _our_client(base, port, handshakes))
            )
        finally:
            s_server.kill()
            s_server.wait()

        port = _free_port()
        secc = subprocess.Popen(
            [sys.executable, "-m", "v2gtool", "tls-verify", "--serve", "--listen", "127.0.0.1",
             "--port", str(port), "--count", str(WARMUP + handshakes + 1), "--json",
             "--certs-dir", str(base / "certs"), "--trust-dir", str(trust)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            _wait_listening(port, secc)  # this probe is the one extra accepted connection
            rows.append(
                _row(key_type.value, "v2gtool EVCC -> v2gtool SECC", _our_client(base, port, handshakes))
            )
        finally:
            secc.kill()
            secc.wait()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--handshakes", type=int, default=500)
    parser.add_argument("--openssl-seconds", type=int, default=4)
    args = parser.parse_args()
    rows: list[Row] = []
    for key_type in (KeyType.SECP521R1, KeyType.ED448):
        rows += bench(key_type, args.handshakes, args.openssl_seconds)
    header = (
        f"{'key':<10} {'client -> server':<36} {'n':>6} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} "
        f"{'p50/openssl':>11}"
    )
    print(header)
    print("-" * len(header))
    baseline = {r.key_type: r.mean_ms for r in rows if r.p50_ms is None}
    for r in rows:
        p50 = f"{r.p50_ms:8.2f}" if r.p50_ms is not None else f"{'-':>8}"
        p99 = f"{r.p99_ms:8.2f}" if r.p99_ms is not None else f"{'-':>8}"
        ratio = (
            f"{r.p50_ms / baseline[r.key_type]:10.2f}x" if r.p50_ms is not None else f"{'1.00x (mean)':>11}"
        )
        print(f"{r.key_type:<10} {r.pair:<36} {r.count:>6} {p50} {p99} {r.mean_ms:8.2f} {ratio}")


if __name__ == "__main__":
    main()
