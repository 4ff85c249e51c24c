"""pcap-decode speed and memory beside ``tshark -r`` on the same generated capture, in one run.

    .venv/bin/python benchmarks/pcap_bench.py [--messages 100000] [--json]

Writes a capture of one ISO 15118-20 DC session (SDP, handshake, SessionSetup, then DC_ChargeLoop
pairs in BPT_Scheduled mode, one message per TCP segment, every one with its own values: time stamp,
SOC, voltages and currents change from message to message) with at least --messages V2G messages,
then runs, each as a child process: ``v2gtool --json pcap-decode --summary`` (full dissection,
EXI decoding into the JSON form and analysis), the same writing every record as a JSON line
(``v2gtool-json``), and ``tshark -r`` (frame parsing, summary lines).
Reports messages per second, wall time and peak RSS of each (os.wait4). A second capture of twice
the size shows whether our memory grows with the file, and gives each tool's marginal rate: the
messages the second capture adds over the CPU time they add, start-up excluded. The EXI payloads
of the capture are also decoded alone, in this process (``exi.api.decode_json``, the decoder
``pcap-decode`` runs). Goal (issue 8): decode the EXI payloads at least as fast as tshark parses the
frames, in memory that does not grow with the file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import v2gtool
from v2gtool import v2gtp
from v2gtool.exi import api
from v2gtool.pcap.synth import PcapWriter, TCPSession, sdp_exchange

SID = "5A2CDE53F701D4AC"


def _rv(value: int, exponent: int = 0) -> dict[str, int]:
    return {"Exponent": exponent, "Value": value}


def _documents() -> list[tuple[bool, dict[str, Any], str | None]]:
    header = {"SessionID": SID, "TimeStamp": 1718607534}
    return [
        (True, {"supportedAppProtocolReq": {"AppProtocol": [{"ProtocolNamespace": "urn:iso:std:iso:15118:-20:DC",
                                                             "VersionNumberMajor": 1, "VersionNumberMinor": 0,
                                                             "SchemaID": 1, "Priority": 1}]}}, "apphand"),
        (False, {"supportedAppProtocolRes": {"ResponseCode": "OK_SuccessfulNegotiation", "SchemaID": 1}}, "apphand"),
        (True, {"SessionSetupReq": {"Header": {"SessionID": "00" * 8, "TimeStamp": 1718607530},
                                    "EVCCID": "WMIV1234567890ABCDEX"}}, None),
        (False, {"SessionSetupRes": {"Header": header, "ResponseCode": "OK_NewSessionEstablished",
                                     "EVSEID": "DE*ABC*E12345"}}, None),
    ]


def _loop_pair(i: int) -> tuple[bytes, bytes]:
    """The i-th loop exchange; time stamp, SOC, voltages and currents change with every message,
    and the current crosses zero (charge and discharge), so no two payloads of a capture repeat."""
    header = {"SessionID": SID, "TimeStamp": 1718607534 + i // 10}
    current = 200 - (i * 7) % 401  # -200 .. 200 A
    voltage = 3600 + (i * 13) % 600  # 360.0 .. 419.9 V
    request = {"DC_ChargeLoopReq": {
        "Header": header, "DisplayParameters": {"PresentSOC": 20 + i % 80}, "MeterInfoRequested": i % 50 == 0,
        "EVPresentVoltage": _rv(voltage, -1),
        "BPT_Scheduled_DC_CLReqControlMode": {"EVTargetCurrent": _rv(current), "EVTargetVoltage": _rv(voltage + 40, -1),
                                              "EVMaximumDischargePower": _rv(11 + i % 5, 3)}}}
    response = {"DC_ChargeLoopRes": {
        "Header": header, "ResponseCode": "OK", "EVSEPresentCurrent": _rv(current - i % 3),
        "EVSEPresentVoltage": _rv(voltage + i % 4, -1), "EVSEPowerLimitAchieved": False,
        "EVSECurrentLimitAchieved": i % 97 == 0, "EVSEVoltageLimitAchieved": False,
        "BPT_Scheduled_DC_CLResControlMode": {}}}
    return (api.encode_json(request, framed=True), api.encode_json(response, framed=True))


def write_capture(path: Path, messages: int, payloads: list[tuple[bytes, str]] | None = None) -> int:
    """Write the session; return how many V2G messages it holds. *payloads* collects each EXI
    payload with its schema set."""
    with path.open("wb") as out:
        writer = PcapWriter(out)
        tcp = TCPSession(writer)
        t = 1_700_000_000.0
        sdp_exchange(writer, t, tcp.evcc, tcp.secc, tls=False)
        tcp.open(t)
        count = 0
        for from_evcc, document, namespace in _documents():
            frame = api.encode_json(document, namespace, framed=True)
            tcp.send(t, from_evcc, frame)
            _collect(payloads, frame)
            t += 0.05
            count += 1
        while count < messages:
            request, response = _loop_pair(count // 2)
            tcp.send(t, True, request)
            tcp.send(t + 0.04, False, response)
            _collect(payloads, request)
            _collect(payloads, response)
            t += 0.1
            count += 2
        tcp.close(t)
    return count


def _collect(payloads: list[tuple[bytes, str]] | None, frame: bytes) -> None:
    if payloads is not None:
        decoded = v2gtp.decode_frame(frame)
        payloads.append((decoded.payload, api.namespace_of_payload_type(decoded.payload_type)))


def decode_alone(payloads: list[tuple[bytes, str]]) -> dict[str, float]:
    """CPU time of decoding every EXI payload into the JSON form, as pcap-decode does (best of 3)."""
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        for payload, namespace in payloads:
            api.decode_json(payload, namespace)
        best = min(best, time.process_time() - start)
    return {"cpu_seconds": round(best, 3), "messages_per_s": round(len(payloads) / best)}


def measure(command: list[str]) -> dict[str, float]:
    """Wall time, CPU time (user + system: what other load on the machine does not inflate) and
    peak RSS (MiB) of one child process, its output discarded."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"{command[0]} failed: {process.stderr.read().decode() if process.stderr else ''}")
    return {"seconds": round(elapsed, 3), "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=100_000, help="V2G messages in the capture (>= 100000)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    ours = [sys.executable, "-m", "v2gtool", "--json", "pcap-decode", "--summary"]
    ours_all = [sys.executable, "-m", "v2gtool", "--json", "pcap-decode"]  # every frame and message as a JSON line
    tshark = shutil.which("tshark")
    # Byte-compile the package first, as an install does: with PYTHONDONTWRITEBYTECODE set, every
    # run would otherwise compile the generated grammar modules again (~0.3 s of start-up).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(v2gtool.__file__).parent)], check=True,
                   stdout=subprocess.DEVNULL)
    tools = {"v2gtool": ours, "v2gtool-json": ours_all}
    if tshark is not None:
        tools["tshark"] = [tshark, "-r"]
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, size in (("1x", args.messages), ("2x", 2 * args.messages)):
            path = Path(tmp) / f"session-{label}.pcap"
            count = write_capture(path, size)
            row: dict[str, Any] = {"messages": count, "file_mib": round(path.stat().st_size / 2**20, 1)}
            for tool, command in tools.items():
                row[tool] = measure([*command, str(path)])
                row[tool]["messages_per_s"] = round(count / row[tool]["seconds"])
            results[label] = row
        # Last: a child's peak RSS counts the pages it shares with this process until it executes
        payloads: list[tuple[bytes, str]] = []
        write_capture(Path(tmp) / "session-exi.pcap", args.messages, payloads)
        results["exi-alone"] = decode_alone(payloads)
    added = results["2x"]["messages"] - results["1x"]["messages"]
    results["marginal_messages_per_cpu_s"] = {
        tool: round(added / max(1e-9, results["2x"][tool]["cpu_seconds"] - results["1x"][tool]["cpu_seconds"]))
        for tool in tools}
    if tshark is not None:  # each rate over tshark's, per CPU second of the 1x capture (the same run)
        row = results["1x"]
        tshark_rate = row["messages"] / row["tshark"]["cpu_seconds"]
        results["over_tshark"] = {tool: round(row["messages"] / row[tool]["cpu_seconds"] / tshark_rate, 2)
                                  for tool in ("v2gtool", "v2gtool-json")}
        results["over_tshark"]["exi-alone"] = round(results["exi-alone"]["messages_per_s"] / tshark_rate, 2)
    if args.json:
        print(json.dumps(results))
        return
    print(f"{'capture':8} {'messages':>9} {'MiB':>6}  {'tool':13} {'seconds':>8} {'CPU s':>8} {'msg/s':>9} "
          f"{'peak RSS MiB':>13}")
    for label in ("1x", "2x"):
        row = results[label]
        for tool in tools:
            r = row[tool]
            print(f"{label:8} {row['messages']:>9} {row['file_mib']:>6}  {tool:13} {r['seconds']:>8} "
                  f"{r['cpu_seconds']:>8} {r['messages_per_s']:>9} {r['peak_rss_mib']:>13}")
    marginal = ", ".join(f"{tool} {rate}" for tool, rate in results["marginal_messages_per_cpu_s"].items())
    print(f"marginal messages per CPU second (2x over 1x, start-up excluded): {marginal}")
    alone = results["exi-alone"]
    print(f"EXI payloads of the 1x capture decoded alone: {alone['cpu_seconds']} CPU s, "
          f"{alone['messages_per_s']} msg/s")
    if tshark is None:
        print("tshark not installed: apt-get install -y tshark to compare")
    else:
        ratios = ", ".join(f"{tool} {ratio}x" for tool, ratio in results["over_tshark"].items())
        print(f"messages per CPU second over tshark's frames per CPU second (1x): {ratios}")


if __name__ == "__main__":
    main()
