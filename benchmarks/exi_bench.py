"""EXI codec speed: v2gtool beside the PyPI `iso15118` codec (EXIficient in a JVM), in one run.

    .venv/bin/python benchmarks/exi_bench.py [--peer-python .venv-peers/bin/python] [--json]

Prints the median microseconds per decode and per encode of each message for both codecs and
the ratio. v2gtool is pinned to one core; each figure is the median over batches of calls.
Goal (issue 3): DC_ChargeLoopReq decode and encode at most 20 µs, and every message at least
300x faster than iso15118's codec.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from v2gtool.exi import api, codec, namespaces

REPO = Path(__file__).resolve().parent.parent
SID = "5A2CDE53F701D4AC"
HEADER = {"SessionID": SID, "TimeStamp": 1718607534}


def rv(value: int, exponent: int = 0) -> dict[str, int]:
    return {"Exponent": exponent, "Value": value}


MESSAGES: dict[str, tuple[str, dict[str, Any]]] = {
    "SessionSetupReq": ("iso20", {"SessionSetupReq": {
        "Header": {"SessionID": "0000000000000000", "TimeStamp": 1718607530}, "EVCCID": "WMIV1234567890ABCDEX"}}),
    "ServiceDiscoveryRes": ("iso20", {"ServiceDiscoveryRes": {
        "Header": HEADER, "ResponseCode": "OK", "ServiceRenegotiationSupported": False,
        "EnergyTransferServiceList": {"Service": [{"ServiceID": 2, "FreeService": False},
                                                  {"ServiceID": 6, "FreeService": False}]},
        "VASList": {"Service": [{"ServiceID": 65, "FreeService": True}]}}}),
    "DC_ChargeParameterDiscoveryReq (BPT)": ("iso20-dc", {"DC_ChargeParameterDiscoveryReq": {
        "Header": HEADER, "BPT_DC_CPDReqEnergyTransferMode": {
            "EVMaximumChargePower": rv(15000, 1), "EVMinimumChargePower": rv(100),
            "EVMaximumChargeCurrent": rv(300), "EVMinimumChargeCurrent": rv(10),
            "EVMaximumVoltage": rv(900), "EVMinimumVoltage": rv(150),
            "EVMaximumDischargePower": rv(11000), "EVMinimumDischargePower": rv(100),
            "EVMaximumDischargeCurrent": rv(30), "EVMinimumDischargeCurrent": rv(1)}}}),
    "DC_ChargeLoopReq": ("iso20-dc", {"DC_ChargeLoopReq": {
        "Header": HEADER, "DisplayParameters": {"PresentSOC": 57, "ChargingComplete": False},
        "MeterInfoRequested": False, "EVPresentVoltage": rv(400),
        "BPT_Scheduled_DC_CLReqControlMode": {"EVTargetCurrent": rv(-27), "EVTargetVoltage": rv(400)}}}),
    "DC_ChargeLoopRes": ("iso20-dc", {"DC_ChargeLoopRes": {
        "Header": HEADER, "ResponseCode": "OK", "EVSEPresentCurrent": rv(-27), "EVSEPresentVoltage": rv(401),
        "EVSEPowerLimitAchieved": False, "EVSECurrentLimitAchieved": False, "EVSEVoltageLimitAchieved": False,
        "BPT_Scheduled_DC_CLResControlMode": {}}}),
}

PEER_SCRIPT = r"""
import json, statistics, sys, time
from iso15118.shared.exificient_exi_codec import ExificientEXICodec
codec = ExificientEXICodec()
jobs = json.loads(sys.stdin.read())
out = {}
for name, (urn, hexdata, body) in jobs.items():
    data = bytes.fromhex(hexdata)
    text = json.dumps(body)
    # warm up the JVM paths first
    for _ in range(5):
        codec.decode(data, urn); codec.encode(text, urn)
    dec, enc = [], []
    for _ in range(REPEAT):
        t = time.perf_counter(); codec.decode(data, urn); dec.append(time.perf_counter() - t)
        t = time.perf_counter(); bytes(codec.encode(text, urn)); enc.append(time.perf_counter() - t)
    out[name] = {"decode_us": statistics.median(dec) * 1e6, "encode_us": statistics.median(enc) * 1e6}
print(json.dumps(out))
"""


def measure(fn: Any, batch: int = 2000, batches: int = 15) -> float:
    """Median over *batches* of the mean µs per call within a batch."""
    results = []
    for _ in range(batches):
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        results.append((time.perf_counter() - start) / batch * 1e6)
    return statistics.median(results)


def ours() -> dict[str, dict[str, float]]:
    out = {}
    for label, (ns, document) in MESSAGES.items():
        schema = namespaces.grammar(ns)
        data = api.encode_json(document, ns)
        name, message = codec.decode(schema, data)
        out[label] = {
            "bytes": len(data),
            "decode_us": measure(lambda s=schema, d=data: codec.decode(s, d)),
            "encode_us": measure(lambda s=schema, n=name, m=message: codec.encode(s, n, m)),
        }
    return out


def peer(python: str, repeat: int) -> dict[str, dict[str, float]] | None:
    jobs = {}
    for label, (ns, document) in MESSAGES.items():
        # These messages carry only hexBinary, whose JSON form is the same in both codecs.
        jobs[label] = (namespaces.lookup(ns).urn, api.encode_json(document, ns).hex(), document)
    try:
        result = subprocess.run([python, "-c", PEER_SCRIPT.replace("REPEAT", str(repeat))], input=json.dumps(jobs),
                                capture_output=True, text=True, timeout=600, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        print(f"peer codec not measured: {exc}", file=sys.stderr)
        return None
    peer_times: dict[str, dict[str, float]] = json.loads(result.stdout.strip().splitlines()[-1])
    return peer_times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    default_peer = next((p for p in (REPO / ".venv-peers/bin/python", Path("/tmp/peers/iso15118-venv/bin/python"))
                         if p.exists()), REPO / ".venv-peers/bin/python")
    parser.add_argument("--peer-python", default=str(default_peer), help="python of a venv with iso15118 installed")
    parser.add_argument("--peer-repeat", type=int, default=30, help="calls per message for the peer codec")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})  # one core, as the goal says
    mine = ours()
    theirs = peer(args.peer_python, args.peer_repeat)
    if args.json:
        print(json.dumps({"v2gtool": mine, "iso15118": theirs}))
        return 0
    header = f"{'message':38} {'bytes':>5} {'dec µs':>8} {'enc µs':>8} {'peer dec µs':>12} {'peer enc µs':>12}"
    print(header + f" {'dec x':>7} {'enc x':>7}")
    for label, m in mine.items():
        row = f"{label:38} {m['bytes']:>5} {m['decode_us']:>8.2f} {m['encode_us']:>8.2f}"
        if theirs and label in theirs:
            p = theirs[label]
            row += f" {p['decode_us']:>12.0f} {p['encode_us']:>12.0f}"
            row += f" {p['decode_us'] / m['decode_us']:>7.0f} {p['encode_us'] / m['encode_us']:>7.0f}"
        print(row)
    return 0


if __name__ == "__main__":
    sys.exit(main())
