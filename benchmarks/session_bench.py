"""ISO 15118-20 SECC response times and session concurrency, beside the `iso15118` SECC, in one run.

    sudo .venv/bin/python benchmarks/session_bench.py [--sessions 20,50,100] [--no-peer]

1. Response time per message type as our EVCC measures it (request sent -> response decoded), p50
   and p99, for our SECC (`v2g-message-handler serve`) and for iso15118's SECC, each in a network
   namespace behind a veth pair, our EVCC (`connect`) in the other (needs root; --no-peer skips it).
2. Concurrency: N simulated sessions at once in one process (each its own plant, SECC and EVCC over
   loopback TCP), counting DC_ChargeLoop responses later than the 0.5 s message timeout and the
   loop's p99. The SECC and the EVCCs share the process, so these figures are pessimistic.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.interop.iso15118_oracle_client import find_peer_python, java_available  # noqa: E402
from tests.netns import veth_pair  # noqa: E402
from v2gtool.session import scenario as scenarios  # noqa: E402
from v2gtool.session.runner import run_sim  # noqa: E402

V2GTOOL = [sys.executable, "-m", "v2gtool"]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def response_times(records: list[dict[str, object]]) -> dict[str, list[float]]:
    """Per request name, the seconds from MessageSent to the matching MessageReceived (EVCC clock)."""
    out: dict[str, list[float]] = defaultdict(list)
    pending: tuple[str, float] | None = None
    for r in records:
        if r["event"] == "MessageSent":
            pending = (str(r["message"]), float(str(r["t"])))
        elif r["event"] == "MessageReceived" and pending is not None:
            out[pending[0][:-3]].append(float(str(r["t"])) - pending[1])
            pending = None
    return out


def against(secc_cmd: list[str], link_ns: tuple[str, str, str, str], env: dict[str, str] | None,
            cwd: Path, extra: list[str]) -> dict[str, list[float]]:
    ev_ns, ev_if, secc_ns, _secc_if = link_ns
    secc = subprocess.Popen(["ip", "netns", "exec", secc_ns, *secc_cmd], cwd=cwd, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3.0)
        ev = subprocess.run(["ip", "netns", "exec", ev_ns, *V2GTOOL, "--json", "v2g-message-handler", "connect",
                             "--iface", ev_if, "--no-tls", "--duration", "10", *extra],
                            capture_output=True, text=True, timeout=300)
    finally:
        secc.terminate()
        secc.wait(timeout=30)
    return response_times([json.loads(line) for line in ev.stdout.splitlines()])


def peer_table(no_peer: bool) -> None:
    import os
    import tempfile

    python = find_peer_python(REPO)
    with veth_pair("v2gb") as link, tempfile.TemporaryDirectory() as tmp:
        names = (link.ev_ns, link.ev_if, link.secc_ns, link.secc_if)
        ours = against([*V2GTOOL, "v2g-message-handler", "serve", "--iface", link.secc_if, "--no-tls",
                        "--sessions", "1"], names, None, Path(tmp), [])
        theirs: dict[str, list[float]] = {}
        if not no_peer and python is not None and java_available():
            env = dict(os.environ, NETWORK_INTERFACE=link.secc_if, PROTOCOLS="ISO_15118_20_DC", AUTH_MODES="EIM",
                       MESSAGE_LOG_JSON="false")
            # their simulated SECC reports 1 V during precharge (see tests/interop/test_session_interop.py)
            theirs = against([str(python), "-m", "iso15118.secc.main"], names, env, Path(tmp),
                             ["--precharge-tolerance", "1000"])
    print(f"{'request':32} {'ours p50 ms':>11} {'ours p99 ms':>11} {'peer p50 ms':>11} {'peer p99 ms':>11}")
    for name, values in ours.items():
        row = f"{name:32} {1000 * statistics.median(values):>11.2f} {1000 * percentile(values, 0.99):>11.2f}"
        if theirs.get(name):
            peer = theirs[name]
            row += f" {1000 * statistics.median(peer):>11.1f} {1000 * percentile(peer, 0.99):>11.1f}"
        print(row)


class LoopTimer:
    """A trace sink that times each DC_ChargeLoopRes from the moment its request left the EVCC."""

    def __init__(self, waits: list[float]) -> None:
        self.waits = waits
        self.sent = 0.0
        self.epoch = time.time()

    def ethernet_frame(self, t: float, frame: bytes) -> None:
        pass

    def sdp(self, t: float, from_evcc: bool, datagram: bytes) -> None:
        pass

    def v2gtp(self, t: float, from_evcc: bool, data: bytes) -> None:
        if from_evcc:
            self.sent = time.perf_counter()
        elif data[2:4] == b"\x80\x04":  # DC payload type: the loop (and the other DC messages)
            self.waits.append(time.perf_counter() - self.sent)

    def close(self, t: float) -> None:
        pass


async def concurrent(n: int) -> tuple[int, int, float]:
    """(DC responses, responses over 0.5 s, p99 s) of *n* simultaneous simulated sessions."""
    waits: list[float] = []
    scenario = scenarios.load(None, duration=20.0)
    await asyncio.gather(*(run_sim(scenario, speed=1.0, trace=LoopTimer(waits)) for _ in range(n)))
    late = sum(1 for w in waits if w > 0.5)
    return len(waits), late, percentile(waits, 0.99) if waits else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", default="20,50,100", help="comma-separated concurrency levels")
    parser.add_argument("--no-peer", action="store_true", help="skip the response-time table (needs root)")
    args = parser.parse_args()
    if not args.no_peer:
        peer_table(no_peer=False)
    print(f"\n{'sessions':>8} {'DC responses':>13} {'over 0.5 s':>10} {'p99 ms':>8}")
    for n in (int(x) for x in args.sessions.split(",")):
        count, late, p99 = asyncio.run(concurrent(n))
        print(f"{n:>8} {count:>13} {late:>10} {1000 * p99:>8.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
