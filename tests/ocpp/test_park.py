"""100 simulated stations on one virtual power plant, as processes talking OCPP over loopback.

``vpp serve`` runs as its own process; the stations are three ``ocpp-bridge --sim`` processes
(each station a whole ``session run --sim`` engine: EVCC and SECC over TCP, the ``sim`` plant
behind the interlock, its own bridge and durable outbox). The test then does what a grid operator
and a bad day do: a 200 kW discharge request, a group of 35 stations killed outright, the
aggregator killed and restarted, and checks the issue's figures:

- the request is met within 5 % within two control periods of the (re-)dispatch;
- no vehicle goes under its SoC floor (five of them start 1 % above it);
- the stations that dropped out are re-dispatched to the others once the profiles they were given
  have ended (until then they are counted at them: from the aggregator a killed station looks like
  one whose link dropped and that runs on);
- every TransactionEvent is in the aggregator's log exactly once, in order, across the restart.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

PERIOD = 1.0  # the aggregator's control period, = the stations' meter-value interval
REQUEST_KW = 200.0
MIN_SOC = 20.0
SCENARIO = """
[session]
service = "DC_BPT"
control_mode = "dynamic"
direction = "discharge"
duration = {duration}
power = 0
min_soc = {min_soc}
[plant]
soc = {soc}
"""


def v2gtool(*args: str) -> list[str]:
    return [sys.executable, "-m", "v2gtool", "--json", *args]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Park:
    """The processes of the test and the aggregator's HTTP view."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.http = ""
        self.vpp: subprocess.Popen[bytes] | None = None
        self.groups: dict[str, subprocess.Popen[bytes]] = {}

    def start_vpp(self) -> None:
        self.vpp = subprocess.Popen(
            v2gtool("vpp", "serve", "--port", str(self.port), "--http-port", "0",
                    "--state-dir", str(self.tmp / "state"), "--period", str(PERIOD)),
            stdout=subprocess.PIPE,
        )
        assert self.vpp.stdout is not None
        ready = json.loads(self.vpp.stdout.readline())
        self.http = ready["http"]

    def start_group(self, name: str, stations: int, soc: float, duration: float) -> None:
        scenario = self.tmp / f"{name}.toml"
        scenario.write_text(SCENARIO.format(duration=duration, min_soc=MIN_SOC, soc=soc))
        self.groups[name] = subprocess.Popen(
            v2gtool("ocpp-bridge", "--sim", "--csms", f"ws://127.0.0.1:{self.port}/ocpp", "--station-id", name,
                    "--stations", str(stations), "--scenario", str(scenario), "--meter-interval", str(PERIOD),
                    "--outbox-dir", str(self.tmp / "outbox"), "--stagger", "0.5", "--tick-ms", "5"),
            stdout=(self.tmp / f"{name}.jsonl").open("wb"),
        )

    def fleet(self) -> dict[str, Any]:
        with urllib.request.urlopen(f"{self.http}/fleet", timeout=5) as response:
            return dict(json.loads(response.read()))

    def dispatch(self, kw: float, duration: float) -> None:
        body = json.dumps({"power_kw": kw, "duration_s": duration}).encode()
        request = urllib.request.Request(f"{self.http}/dispatch", data=body, method="POST")
        with urllib.request.urlopen(request, timeout=5):
            pass

    def wait(self, what: str, ready: Callable[[dict[str, Any]], bool], timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            fleet = self.fleet()
            if ready(fleet):
                return fleet
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout} s; fleet: {json.dumps(fleet)[:600]}")
            time.sleep(0.1)

    def stop(self) -> None:
        for process in [*self.groups.values(), self.vpp]:
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


def met_within_two_periods(fleet: dict[str, Any]) -> float:
    assert fleet["met_at"] is not None
    delay = float(fleet["met_at"] - fleet["dispatched_at"])
    assert delay <= 2 * PERIOD, f"met {delay:.2f} s after the dispatch"
    assert abs(-fleet["power_w"] - REQUEST_KW * 1000) <= 0.05 * REQUEST_KW * 1000
    for vehicle in fleet["vehicles"]:  # nobody asked above what it can give (a refused one is not asked)
        assert vehicle["refused"] or -vehicle["allocation_w"] <= vehicle["capacity_w"] + 1.0
    return delay


@pytest.mark.skipif(os.cpu_count() == 1, reason="100 real-time stations need at least two cores")
def test_hundred_stations_on_one_virtual_power_plant(tmp_path: Path) -> None:
    park = Park(tmp_path)
    try:
        park.start_vpp()
        started = time.monotonic()
        park.start_group("A", 25, soc=0.6, duration=60)
        park.start_group("D", 25, soc=0.55, duration=60)
        park.start_group("B", 25, soc=0.6, duration=600)
        park.start_group("E", 20, soc=0.5, duration=60)
        park.start_group("C", 5, soc=(MIN_SOC + 1) / 100, duration=60)
        park.wait(
            "100 vehicles in the DC_ChargeLoop, their needs known",
            lambda f: len(f["vehicles"]) == 100 and all(v["soc"] is not None for v in f["vehicles"]),
            timeout=60,
        )
        print(f"100 stations in the loop after {time.monotonic() - started:.1f} s")

        # 1. Deliver 200 kW for 15 minutes.
        park.dispatch(REQUEST_KW, 900)
        first = met_within_two_periods(park.wait("the request met", lambda f: f["met_at"] is not None, 10))

        # 2. 25 stations vanish (killed, no goodbye): once their profiles end (one lease, 13 s), the
        # others take over their share.
        killed_at = time.time()
        park.groups["B"].send_signal(signal.SIGKILL)
        after_drop = park.wait(
            "re-dispatch after the drop-out",
            lambda f: (
                f["stations"] == 75
                and not any(v["station"].startswith("B") for v in f["vehicles"])
                and (f["dispatched_at"] or 0) > killed_at
                and f["met_at"] is not None
            ),
            30,
        )
        second = met_within_two_periods(after_drop)
        assert {v["station"].split("-")[0] for v in after_drop["vehicles"]} == {"A", "C", "D", "E"}

        # 3. The aggregator dies mid-transaction and comes back on the same state directory.
        assert park.vpp is not None
        park.vpp.send_signal(signal.SIGKILL)
        park.vpp.wait()
        time.sleep(2.5)  # the stations carry on, queueing their transaction events on disk
        park.start_vpp()
        park.wait(
            "the stations back, the request resumed and met",
            lambda f: f["stations"] == 75 and len(f["vehicles"]) == 75 and f["met_at"] is not None,
            20,
        )

        # 4. The A, C and D sessions end by themselves (45 s of loop); their processes drain and exit.
        for name in ("A", "C", "D", "E"):
            assert park.groups[name].wait(timeout=120) == 0, f"group {name} failed"
    finally:
        park.stop()

    sessions = [
        json.loads(line)
        for name in ("A", "C", "D", "E")
        for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()
        if '"StationSession"' in line
    ]
    assert len(sessions) == 75 and all(s["ok"] for s in sessions), [s for s in sessions if not s["ok"]][:3]
    assert min(s["soc_min"] for s in sessions) >= MIN_SOC  # nobody under its floor
    assert all(s["energy_wh"] < 0 for s in sessions if s["station"][0] in "ADE")  # they did discharge

    log = [json.loads(line) for line in (tmp_path / "state" / "transactions.jsonl").read_text().splitlines()]
    keys = [(e["station"], e["transaction_id"], e["seq_no"]) for e in log]
    assert len(keys) == len(set(keys)), "a TransactionEvent was counted twice"
    by_transaction: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for event in log:
        by_transaction[(event["station"], event["transaction_id"])].append(event)
    assert len(by_transaction) == 100
    for (station, _), events in by_transaction.items():
        seqs = [e["seq_no"] for e in events]
        assert seqs == list(range(len(seqs))), f"{station}: {seqs}"  # none lost, in order
        if not station.startswith("B"):  # the killed ones never said goodbye
            assert events[-1]["event_type"] == "Ended"
    assert any(e["offline"] for e in log)  # the events queued during the outage came, flagged
    for name in ("A", "C", "D", "E"):  # and nothing is left in any station's outbox
        for outbox in (tmp_path / "outbox").glob(f"{name}-*"):
            assert not (outbox / "outbox.jsonl").exists() or (outbox / "outbox.jsonl").stat().st_size == 0
    print(f"met {first:.2f} s after the dispatch, {second:.2f} s after the drop-out re-dispatch")
