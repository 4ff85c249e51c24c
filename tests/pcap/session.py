"""Crafted V2G sessions for the pcap tests: -20 DC messages framed, segmented and timed at will."""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

from v2gtool.exi import api
from v2gtool.pcap.analysis import TraceAnalysis
from v2gtool.pcap.dissect import Dissector
from v2gtool.pcap.reader import read_capture
from v2gtool.pcap.records import TraceRecord
from v2gtool.pcap.synth import PcapWriter, TCPSession, sdp_exchange
from v2gtool.pcap.tls import KeyLog

SESSION_ID = "CCEC07A64440C546"
SAP_REQ = {"supportedAppProtocolReq": {"AppProtocol": [
    {"ProtocolNamespace": "urn:iso:15118:2:2013:MsgDef", "VersionNumberMajor": 2, "VersionNumberMinor": 0,
     "SchemaID": 3, "Priority": 2},
    {"ProtocolNamespace": "urn:iso:std:iso:15118:-20:DC", "VersionNumberMajor": 1, "VersionNumberMinor": 0,
     "SchemaID": 1, "Priority": 1}]}}


def sap_res(schema_id: int) -> dict[str, Any]:
    return {"supportedAppProtocolRes": {"ResponseCode": "OK_SuccessfulNegotiation", "SchemaID": schema_id}}


def session_setup_res(code: str = "OK_NewSessionEstablished") -> dict[str, Any]:
    return {"SessionSetupRes": {"Header": {"SessionID": SESSION_ID, "TimeStamp": 1}, "ResponseCode": code,
                                "EVSEID": "ZZ00000"}}


SESSION_SETUP_REQ = {"SessionSetupReq": {"Header": {"SessionID": "0000000000000000", "TimeStamp": 1},
                                         "EVCCID": "WMIV1234567890ABCDEX"}}


def loop_req(target_current: int) -> dict[str, Any]:
    """A DC_ChargeLoopReq in BPT_Scheduled mode (negative current: discharging)."""
    return {"DC_ChargeLoopReq": {
        "Header": {"SessionID": SESSION_ID, "TimeStamp": 2},
        "MeterInfoRequested": False,
        "EVPresentVoltage": {"Exponent": 0, "Value": 400},
        "BPT_Scheduled_DC_CLReqControlMode": {"EVTargetCurrent": {"Exponent": 0, "Value": target_current},
                                              "EVTargetVoltage": {"Exponent": 0, "Value": 400}}}}


def loop_res(voltage: int, current: int, code: str = "OK") -> dict[str, Any]:
    return {"DC_ChargeLoopRes": {
        "Header": {"SessionID": SESSION_ID, "TimeStamp": 2}, "ResponseCode": code,
        "EVSEPresentCurrent": {"Exponent": 0, "Value": current},
        "EVSEPresentVoltage": {"Exponent": 0, "Value": voltage},
        "EVSEPowerLimitAchieved": False, "EVSECurrentLimitAchieved": False, "EVSEVoltageLimitAchieved": False,
        "BPT_Scheduled_DC_CLResControlMode": {}}}


def frame(document: dict[str, Any], namespace: str | None = None) -> bytes:
    return api.encode_json(document, namespace, framed=True)


# (time offset, from EVCC?, V2GTP frame) of a -20 DC session negotiated over SAP.
Exchange = list[tuple[float, bool, bytes]]


def dc_session(loop_delays: list[float], currents: list[int] | None = None) -> Exchange:
    """SAP, SessionSetup and one DC_ChargeLoop pair per delay (the SECC answers after that delay)."""
    exchange: Exchange = [(0.0, True, frame(SAP_REQ, "apphand")), (0.05, False, frame(sap_res(1), "apphand")),
                          (0.1, True, frame(SESSION_SETUP_REQ)), (0.15, False, frame(session_setup_res()))]
    t = 0.2
    for i, delay in enumerate(loop_delays):
        current = (currents or [10] * len(loop_delays))[i]
        exchange.append((t, True, frame(loop_req(current))))
        exchange.append((t + delay, False, frame(loop_res(400, current))))
        t += delay + 0.05
    return exchange


def write_session(exchange: Exchange, start: float = 1_700_000_000.0,
                  emit: Callable[[TCPSession, float, bool, bytes], None] | None = None, close: bool = True) -> bytes:
    """A pcap of SDP, the TCP handshake, *exchange* and (with *close*) the close; *emit* may replace how a
    message is sent."""
    out = io.BytesIO()
    writer = PcapWriter(out)
    tcp = TCPSession(writer)
    sdp_exchange(writer, start, tcp.evcc, tcp.secc, tls=False)
    tcp.open(start + 0.01)
    for offset, from_evcc, data in exchange:
        if emit is None:
            tcp.send(start + 0.02 + offset, from_evcc, data)
        else:
            emit(tcp, start + 0.02 + offset, from_evcc, data)
    if close:
        tcp.close(start + 0.03 + (exchange[-1][0] if exchange else 0))
    return out.getvalue()


def dissect(capture: bytes, keylog: KeyLog | None = None) -> list[TraceRecord]:
    dissector = Dissector(keylog)
    records: list[TraceRecord] = []
    for packet in read_capture(io.BytesIO(capture)):
        records.extend(dissector.packet(packet))
    records.extend(dissector.finish())
    return records


def analyse(records: list[TraceRecord]) -> TraceAnalysis:
    analysis = TraceAnalysis()
    for record in records:
        analysis.add(record)
    return analysis


SHARED_PCAPS = Path(__file__).resolve().parents[2].parent / "shared" / "testdata" / "pcaps" / "dsV2Gshark"
