"""Analysis on crafted sessions with chosen timings: response times vs timeouts, codes, BPT, series."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.pcap.session import (
    SAP_REQ,
    SESSION_SETUP_REQ,
    Exchange,
    analyse,
    dc_session,
    dissect,
    frame,
    loop_req,
    loop_res,
    sap_res,
    session_setup_res,
    write_session,
)
from v2gtool.pcap.analysis import MAX_SERIES, Series, TraceAnalysis, timeout_of
from v2gtool.pcap.filters import parse_filter
from v2gtool.pcap.records import V2GMessage, physical_value


@pytest.mark.parametrize(("delay", "near", "over"), [(0.1, 0, 0), (0.45, 1, 0), (0.6, 0, 1)])
def test_charge_loop_response_time_against_its_half_second(delay: float, near: int, over: int) -> None:
    """The capture's own timestamps are the clock: 0.45 s is near 0.5 s, 0.6 s is over it."""
    analysis = analyse(dissect(write_session(dc_session([delay]))))
    stats = analysis.response_times["DC_ChargeLoop"]
    assert stats.timeout == 0.5 and stats.count == 1
    assert stats.maximum == pytest.approx(delay, abs=1e-6)
    assert (stats.near, stats.over) == (near, over)
    assert analysis.failed == bool(over)
    if over:
        assert analysis.errors[0]["error"] == f"DC_ChargeLoopRes after {delay:.3f} s, over its 0.5 s timeout"


def test_timeouts_per_protocol() -> None:
    assert timeout_of("iso20-dc", "DC_ChargeLoop") == 0.5
    assert timeout_of("iso20", "ServiceDetail") == timeout_of("iso20", "CertificateInstallation") == 5.0
    assert timeout_of("iso20", "PowerDelivery") == timeout_of("apphand", "supportedAppProtocol") == 2.0
    assert timeout_of("iso2", "CurrentDemand") == 0.25
    assert timeout_of("iso2", "PowerDelivery") == 5.0
    assert timeout_of("iso2", "CableCheck") == 2.0


def test_din_timeouts_are_table_75() -> None:
    """DIN SPEC 70121 Table 75 (josev din_spec/timeouts.py): CurrentDemand 0.25 s, every other message 2 s;
    PowerDelivery is not 5 s as in ISO 15118-2."""
    assert timeout_of("din", "CurrentDemand") == 0.25
    for base in ("supportedAppProtocol", "SessionSetup", "ServiceDiscovery", "ServicePaymentSelection",
                 "ContractAuthentication", "ChargeParameterDiscovery", "PowerDelivery", "CableCheck", "PreCharge",
                 "WeldingDetection", "SessionStop"):
        assert timeout_of("din", base) == 2.0, base


def test_failed_response_code_is_a_protocol_error_and_warning_is_listed() -> None:
    exchange: Exchange = [(0.0, True, frame(SAP_REQ, "apphand")), (0.05, False, frame(sap_res(1), "apphand")),
                          (0.1, True, frame(SESSION_SETUP_REQ)), (0.15, False, frame(session_setup_res())),
                          (0.2, True, frame(loop_req(10))), (0.25, False, frame(loop_res(400, 10, "WARNING_WPT"))),
                          (0.3, True, frame(loop_req(10))), (0.35, False, frame(loop_res(400, 0, "FAILED")))]
    analysis = analyse(dissect(write_session(exchange)))
    assert analysis.response_code_counts == {"WARNING_WPT": 1, "FAILED": 1}
    assert analysis.failed and analysis.error_count == 1
    assert analysis.errors[0]["error"] == "DC_ChargeLoopRes: ResponseCode FAILED"


def test_loop_series_and_control_mode() -> None:
    analysis = analyse(dissect(write_session(dc_session([0.1] * 3, currents=[50, -20, -30]))))
    assert [v for _, v in analysis.series["EVTargetCurrent"].points] == [50.0, -20.0, -30.0]
    assert [v for _, v in analysis.series["EVSEPresentVoltage"].points] == [400.0] * 3
    assert [p for _, p in analysis.power_series()] == [20000.0, -8000.0, -12000.0]
    assert analysis.control_modes == {"BPT_Scheduled_DC_CLReqControlMode": 3}
    assert analysis.bpt_verdict() == ("loop ran BPT_Scheduled_DC_CLReqControlMode, but no BPT service selection is "
                                      "in the capture")
    phases = [p.name for p in analysis.phases]
    assert phases == ["SDP", "handshake", "session setup", "loop"]


def test_series_memory_is_bounded() -> None:
    series = Series()
    for i in range(MAX_SERIES * 5):
        series.add(float(i), float(i))
    assert len(series.points) < MAX_SERIES and series.seen == MAX_SERIES * 5
    times = [t for t, _ in series.points]
    assert times == sorted(times) and times[0] == 0.0


def test_request_without_response_is_a_protocol_error() -> None:
    exchange = dc_session([0.1])
    exchange.insert(4, (0.16, True, frame(loop_req(10))))  # never answered; the EVCC asks again
    analysis = analyse(dissect(write_session(exchange)))
    assert analysis.failed
    assert analysis.errors[0]["error"].startswith("DC_ChargeLoopReq (frame ")
    assert "got no response before DC_ChargeLoopReq 0.040 s later" in analysis.errors[0]["error"]
    assert analysis.summary()["open_requests"] == []


def test_request_open_at_the_end_of_the_capture_is_listed_not_failed() -> None:
    exchange = dc_session([0.1])
    exchange.append((0.5, True, frame(loop_req(10))))
    analysis = analyse(dissect(write_session(exchange, close=False)))
    assert not analysis.failed
    assert [r["message"] for r in analysis.summary()["open_requests"]] == ["DC_ChargeLoop"]


@settings(max_examples=300, deadline=None)
@given(st.integers(-2**63, 2**63 - 1), st.integers(-128, 127))
def test_physical_value_is_the_float_nearest_the_decimal(value: int, exponent: int) -> None:
    """Value x 10^Exponent rounded once: == against the decimal written in a filter holds."""
    assert physical_value({"Value": value, "Exponent": exponent}) == float(Decimal(value).scaleb(exponent))


def test_physical_value_compares_and_prints_as_written() -> None:
    record = V2GMessage(t=1.0, frame=1, tcp_stream=0, sender="EVCC", namespace="iso2", payload_type=0x8001,
                        message="CurrentDemandReq", namespace_source="negotiated", tls=False, document={"V2G_Message": {
                            "Header": {"SessionID": "00"},
                            "Body": {"CurrentDemandReq": {"EVTargetCurrent": {"Multiplier": -3, "Unit": "A",
                                                                              "Value": 9950}}}}})
    assert parse_filter("CurrentDemandReq.EVTargetCurrent == 9.95").matches(record)
    assert parse_filter("CurrentDemandReq.EVTargetCurrent <= 9.95").matches(record)
    analysis = TraceAnalysis()
    analysis.add(record)
    assert analysis.summary()["series"]["EVTargetCurrent"] == {"samples": 1, "min": 9.95, "max": 9.95}
