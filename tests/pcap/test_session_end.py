"""How a capture's sessions end: requests left unanswered when the connection closes or the capture
ends, TLS handshakes closed before their ServerHello, and the BPT verdict of a loop that never ran."""

from __future__ import annotations

import contextlib
import io
import ssl
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from tests.pcap.session import analyse, dc_session, dissect, frame, loop_req, write_session
from v2gtool.cli.main import cli
from v2gtool.net.pcapwriter import PcapWriter
from v2gtool.pcap.analysis import TraceAnalysis
from v2gtool.pcap.records import ConnectionEnd, ProtocolError, V2GMessage
from v2gtool.pcap.synth import TCPSession, sdp_exchange

START = 1_700_000_000.0


def test_request_unanswered_when_the_evcc_closes_is_a_protocol_error() -> None:
    """The u2 interop capture: the SECC never answers, the EVCC gives up and sends its FIN."""
    exchange = dc_session([0.1])
    exchange.append((0.5, True, frame(loop_req(10))))  # write_session closes, EVCC first, 0.01 s later
    records = dissect(write_session(exchange))
    analysis = analyse(records)
    assert analysis.failed and analysis.error_count == 1
    error = analysis.errors[0]["error"]
    assert error.startswith("DC_ChargeLoopReq (frame ")
    assert error.endswith("got no response before the EVCC closed the connection (FIN) 0.010 s later")
    assert analysis.summary()["open_requests"] == []
    ends = [r for r in records if isinstance(r, ConnectionEnd)]
    assert [(r.tcp_stream, r.sender, r.how) for r in ends] == [(0, "EVCC", "FIN")]


def test_answered_session_that_closes_is_clean() -> None:
    analysis = analyse(dissect(write_session(dc_session([0.1, 0.1]))))
    assert not analysis.failed and analysis.summary()["open_requests"] == []


def _cut_capture(ack_after: float) -> bytes:
    """A -20 DC session whose last DC_ChargeLoopReq (0.5 s timeout) is unanswered; the capture ends with a
    bare ACK of the SECC *ack_after* seconds later, the connection still open."""
    exchange = dc_session([0.1])
    exchange.append((0.5, True, frame(loop_req(10))))
    last = START + 0.02 + 0.5

    def emit(tcp: TCPSession, t: float, from_evcc: bool, data: bytes) -> None:
        tcp.send(t, from_evcc, data)
        if t == last:
            tcp.ack(t + ack_after, False)

    return write_session(exchange, START, emit, close=False)


def test_capture_ending_within_the_timeout_only_lists_the_request() -> None:
    analysis = analyse(dissect(_cut_capture(0.3)))
    assert not analysis.failed
    assert [r["message"] for r in analysis.summary()["open_requests"]] == ["DC_ChargeLoop"]


def test_capture_ending_over_the_timeout_is_a_protocol_error() -> None:
    analysis = analyse(dissect(_cut_capture(0.7)))
    assert analysis.failed and analysis.summary()["open_requests"] == []
    assert analysis.errors[0]["error"].endswith("got no response within its 0.5 s timeout: the capture ended "
                                                "0.700 s later")


def _client_hello() -> bytes:
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ssl.create_default_context().wrap_bio(incoming, outgoing, server_hostname="secc")
    with contextlib.suppress(ssl.SSLWantReadError):  # it waits for the ServerHello
        tls.do_handshake()
    return outgoing.read()


def _refused_handshake(secc_sends: bytes = b"") -> bytes:
    """The t8 interop capture: SDP, the EVCC's ClientHello, then (after *secc_sends*) the SECC's FIN."""
    out = io.BytesIO()
    writer = PcapWriter(out)
    tcp = TCPSession(writer)
    sdp_exchange(writer, START, tcp.evcc, tcp.secc, tls=True)
    tcp.open(START + 0.01)
    tcp.send(START + 0.02, True, _client_hello())
    if secc_sends:
        tcp.send(START + 0.03, False, secc_sends)
    tcp.close(START + 0.04, evcc_first=False)
    return out.getvalue()


def test_tls_handshake_closed_before_the_server_hello_is_a_protocol_error() -> None:
    records = dissect(_refused_handshake())
    errors = [r for r in records if isinstance(r, ProtocolError)]
    assert [(e.layer, e.tcp_stream, e.message) for e in errors] == [
        ("tls", 0, "TCP stream 0: TLS handshake never completed: the SECC closed the connection (FIN) after the "
                   "EVCC's ClientHello, with no ServerHello")]
    assert analyse(records).failed


def test_tls_alert_before_the_close_is_the_only_error() -> None:
    """The SECC said why (a fatal protocol_version alert, RFC 8446 clause 6.2): no second error for the close."""
    alert = bytes([21, 3, 3, 0, 2, 2, 70])
    errors = [r.message for r in dissect(_refused_handshake(alert)) if isinstance(r, ProtocolError)]
    assert errors == ["TCP stream 0: SECC sent fatal TLS alert protocol_version"]


def test_pcap_decode_exits_1_on_a_refused_handshake(tmp_path: Path) -> None:
    capture = tmp_path / "refused.pcap"
    capture.write_bytes(_refused_handshake())
    result = CliRunner().invoke(cli, ["pcap-decode", "--summary", str(capture)])
    assert result.exit_code == 1, result.output
    assert "TLS handshake never completed" in result.output


def _message(t: float, name: str, element: dict[str, Any], sender: str = "EVCC") -> V2GMessage:
    return V2GMessage(t=t, frame=int(t), tcp_stream=0, sender=sender, namespace="iso20", payload_type=0x8002,
                      message=name, document={name: element}, namespace_source="payload_type", tls=True)


def test_bpt_verdict_of_a_session_whose_loop_never_ran() -> None:
    """ScheduleExchange's Dynamic_SEReqControlMode is no loop control mode: the loop never ran (u2)."""
    analysis = TraceAnalysis()
    for record in (
        _message(1, "ServiceDiscoveryRes", {"ResponseCode": "OK", "EnergyTransferServiceList": {
            "Service": [{"ServiceID": 2, "FreeService": False}, {"ServiceID": 6, "FreeService": False}]}}, "SECC"),
        _message(2, "ServiceSelectionReq", {"SelectedEnergyTransferService": {"ServiceID": 6, "ParameterSetID": 1}}),
        _message(3, "ScheduleExchangeReq", {"MaximumSupportingPoints": 1024, "Dynamic_SEReqControlMode": {}}),
    ):
        analysis.add(record)
    assert analysis.control_modes == {}
    assert analysis.bpt_verdict() == "DC_BPT offered and selected, but the charge loop never ran"
