"""Dissection of crafted captures: namespaces from the handshake, segmentation, link layers, broken input."""

from __future__ import annotations

import io
import random
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.pcap.session import (
    SAP_REQ,
    Exchange,
    analyse,
    dc_session,
    dissect,
    frame,
    sap_res,
    write_session,
)
from v2gtool import v2gtp
from v2gtool.exi import api
from v2gtool.pcap.dissect import Dissector
from v2gtool.pcap.link import LINKTYPE_LINUX_SLL, LINKTYPE_LINUX_SLL2
from v2gtool.pcap.reader import CapturedPacket, read_capture
from v2gtool.pcap.records import EVCC, SECC, Frame, ProtocolError, SdpMessage, V2GMessage
from v2gtool.pcap.synth import PcapWriter, TCPSession


def _messages(records: list) -> list[tuple[str, str, str, str]]:  # type: ignore[type-arg]
    return [(r.sender, r.namespace, r.message, r.namespace_source) for r in records if isinstance(r, V2GMessage)]


def _errors(records: list) -> list[str]:  # type: ignore[type-arg]
    return [f"{r.layer}: {r.message}" for r in records if isinstance(r, ProtocolError)]


def test_iso20_namespaces_from_handshake_and_payload_type() -> None:
    records = dissect(write_session(dc_session([0.1, 0.1])))
    assert _errors(records) == []
    assert _messages(records) == [
        (EVCC, "apphand", "supportedAppProtocolReq", "negotiated"),
        (SECC, "apphand", "supportedAppProtocolRes", "negotiated"),
        (EVCC, "iso20", "SessionSetupReq", "payload_type"),
        (SECC, "iso20", "SessionSetupRes", "payload_type"),
        *[(EVCC, "iso20-dc", "DC_ChargeLoopReq", "payload_type"),
          (SECC, "iso20-dc", "DC_ChargeLoopRes", "payload_type")] * 2,
    ]
    sdp = [r for r in records if isinstance(r, SdpMessage)]
    assert [(s.message, s.fields.get("secc_port")) for s in sdp] == [("SDPReq", None), ("SDPRes", 61851)]


def _iso2_frame(body: dict, namespace: str) -> bytes:  # type: ignore[type-arg]
    document = {"V2G_Message": {"Header": {"SessionID": "00"}, "Body": body}}
    return v2gtp.encode_frame(v2gtp.PayloadType.EXI, api.encode_json(document, namespace))


def test_schema_id_of_the_response_selects_iso2() -> None:
    request = {"SessionSetupReq": {"EVCCID": "0A0B0C0D0E0F"}}
    exchange: Exchange = [(0.0, True, frame(SAP_REQ, "apphand")), (0.1, False, frame(sap_res(3), "apphand")),
                          (0.2, True, _iso2_frame(request, "iso2"))]
    records = dissect(write_session(exchange))
    assert _messages(records)[-1] == (EVCC, "iso2", "SessionSetupReq", "negotiated")
    message = [r for r in records if isinstance(r, V2GMessage)][-1]
    assert message.document["V2G_Message"]["Body"] == request


def test_segmented_shuffled_and_retransmitted_session_decodes_the_same() -> None:
    exchange = dc_session([0.1, 0.2, 0.1])
    plain = _messages(dissect(write_session(exchange)))
    rng = random.Random(7)

    def chop(tcp: TCPSession, t: float, from_evcc: bool, data: bytes) -> None:
        cuts = sorted(rng.sample(range(1, len(data)), min(5, len(data) - 1)))
        pieces = [(a, data[a:b]) for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        pieces += [pieces[0], (max(0, cuts[0] - 3), data[max(0, cuts[0] - 3):cuts[0] + 4])]  # retransmit, overlap
        rng.shuffle(pieces)
        for offset, piece in pieces:
            tcp.segment(t, from_evcc, piece, offset)
        tcp.advance(from_evcc, len(data))

    records = dissect(write_session(exchange, emit=chop))
    assert _errors(records) == []
    assert _messages(records) == plain


def test_missing_segment_is_named_and_decoding_resumes() -> None:
    exchange = dc_session([0.1, 0.1, 0.1])
    lost = exchange[4][2]  # the first DC_ChargeLoopReq

    def drop(tcp: TCPSession, t: float, from_evcc: bool, data: bytes) -> None:
        if data is lost:
            tcp.segment(t, from_evcc, data[:10], 0)  # the rest of this message never reaches the capture
            tcp.advance(from_evcc, len(data))
        else:
            tcp.send(t, from_evcc, data)

    records = dissect(write_session(exchange, emit=drop))
    errors = _errors(records)
    assert len(errors) == 1 and errors[0].startswith("tcp: TCP stream 0 EVCC→SECC: ")
    assert f"{len(lost) - 10} bytes missing" in errors[0]
    names = [m[2] for m in _messages(records)]
    assert names.count("DC_ChargeLoopReq") == 2 and names.count("DC_ChargeLoopRes") == 3


def test_garbage_exi_is_named_with_stream_and_payload_type() -> None:
    exchange = dc_session([0.1])
    exchange.insert(4, (0.17, True, v2gtp.encode_frame(v2gtp.PayloadType.ISO20_DC_MAINSTREAM, b"\xff" * 12)))
    records = dissect(write_session(exchange))
    errors = _errors(records)
    assert len(errors) == 1
    assert errors[0].startswith("exi: TCP stream 0 EVCC, V2GTP 0x8004, iso20-dc: ")
    assert [m[2] for m in _messages(records)][-2:] == ["DC_ChargeLoopReq", "DC_ChargeLoopRes"]


def test_bad_v2gtp_header_resynchronises() -> None:
    exchange = dc_session([0.1])
    exchange.insert(4, (0.17, True, b"\x02\xfd\x80\x04\x00\x00\x00\x01X"))
    records = dissect(write_session(exchange))
    assert _errors(records) == ["v2gtp: TCP stream 0 EVCC: V2GTP byte 0: protocol version 0x02, expected 0x01"]
    assert len(_messages(records)) == 6


def test_truncated_frame_is_an_error_of_that_frame() -> None:
    capture = write_session(dc_session([0.1]))
    packets = list(read_capture(io.BytesIO(capture)))
    dissector = Dissector()
    victim = next(p for p in packets if len(p.data) > 100)
    # whole as captured (original length 80), yet shorter than its IPv6 header says: malformed
    cut = CapturedPacket(victim.number, victim.timestamp, victim.linktype, victim.data[:80], 80)
    records = dissector.packet(cut)
    assert isinstance(records[0], Frame)
    assert _errors(records) == ["frame: IPv6 payload truncated: 26 of " + str(len(victim.data) - 54) + " bytes"]


def _relink(capture: bytes, linktype: int, vlan: bool = False) -> bytes:
    """The same capture with each Ethernet header replaced by a VLAN tag or a Linux cooked header."""
    out = io.BytesIO()
    writer = PcapWriter(out, linktype)
    for packet in read_capture(io.BytesIO(capture)):
        eth, payload = packet.data[:14], packet.data[14:]
        ethertype = eth[12:14]
        if vlan:
            data = eth[:12] + b"\x81\x00\x00\x05" + ethertype + payload
        elif linktype == LINKTYPE_LINUX_SLL:
            data = struct.pack(">HHH", 0, 1, 6) + eth[6:12] + b"\x00\x00" + ethertype + payload
        else:
            data = ethertype + b"\x00\x00" + struct.pack(">IHBB", 2, 1, 0, 6) + eth[6:12] + b"\x00\x00" + payload
        writer.write(packet.timestamp, data)
    return out.getvalue()


def test_vlan_and_linux_cooked_captures_decode_the_same() -> None:
    capture = write_session(dc_session([0.1]))
    expected = _messages(dissect(capture))
    for relinked in (_relink(capture, 1, vlan=True), _relink(capture, LINKTYPE_LINUX_SLL),
                     _relink(capture, LINKTYPE_LINUX_SLL2)):
        records = dissect(relinked)
        assert _errors(records) == [] and _messages(records) == expected


def test_interleaved_sessions_keep_their_own_negotiation() -> None:
    out = io.BytesIO()
    writer = PcapWriter(out)
    first, second = TCPSession(writer), TCPSession(writer)
    second.evcc.port = 50001
    first.open(1.0)
    second.open(1.0)
    first.send(1.1, True, frame(SAP_REQ, "apphand"))
    second.send(1.1, True, frame(SAP_REQ, "apphand"))
    first.send(1.2, False, frame(sap_res(3), "apphand"))  # iso2 on stream 0
    second.send(1.2, False, frame(sap_res(1), "apphand"))  # -20 DC on stream 1
    second.send(1.3, True, frame({"SessionStopReq": {"Header": {"SessionID": "00" * 8, "TimeStamp": 1},
                                                     "ChargingSession": "Terminate"}}))
    first.send(1.3, True, _iso2_frame({"SessionStopReq": {"ChargingSession": "Terminate"}}, "iso2"))
    records = dissect(out.getvalue())
    got = [(r.tcp_stream, r.namespace, r.message) for r in records if isinstance(r, V2GMessage)][4:]
    assert got == [(1, "iso20", "SessionStopReq"), (0, "iso2", "SessionStopReq")]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=120), st.sampled_from([1, 113, 276, 101, 228, 229, 147]))
def test_fuzz_packets_never_escape(data: bytes, linktype: int) -> None:
    dissector = Dissector()
    records = dissector.packet(CapturedPacket(1, 0.0, linktype, data, len(data)))
    records += dissector.finish()
    assert isinstance(records[0], Frame)


def test_plaintext_tls_alert_is_named() -> None:
    """A cipher-suite mismatch shows without any key: the SECC's fatal handshake_failure alert."""
    out = io.BytesIO()
    tcp = TCPSession(PcapWriter(out))
    tcp.open(1.0)
    hello = bytes([1]) + (38).to_bytes(3, "big") + b"\x03\x03" + bytes(32) + b"\x00\x00\x02\x13\x02"
    tcp.send(1.1, True, struct.pack(">BHH", 22, 0x0301, len(hello)) + hello)
    tcp.send(1.2, False, b"\x15\x03\x03\x00\x02\x02\x28")
    records = dissect(out.getvalue())
    assert _errors(records) == ["tls: TCP stream 0: SECC sent fatal TLS alert handshake_failure"]


def test_app_handshake_payload_type_after_negotiating_iso20_is_an_error() -> None:
    exchange = dc_session([])
    exchange.append((0.3, True, frame(SAP_REQ, "apphand")))
    assert _errors(dissect(write_session(exchange))) == [
        "exi: TCP stream 0 EVCC, V2GTP 0x8001: no schema set for this payload type after the handshake"]


def test_fast_json_lines_equal_the_generic_event_form() -> None:
    """Frame and V2GMessage build their JSON lines directly; they must equal Event.to_json's walk."""
    from v2gtool.session.events import Event

    records = [r for r in dissect(write_session(dc_session([0.1]))) if isinstance(r, Frame | V2GMessage)]
    assert any(isinstance(r, V2GMessage) for r in records)
    for record in records:
        assert record.to_json() == Event.to_json(record)



def _drop_second_loop_request(cut: int | None = None) -> tuple[list, bytes]:  # type: ignore[type-arg]
    """Records of a -20 session of four loop pairs whose second DC_ChargeLoopReq the capture lacks: its
    segment is missing, or (with *cut*) captured *cut* bytes short of its original length."""
    exchange = dc_session([0.1] * 4)
    lost = exchange[6][2]

    def drop(tcp: TCPSession, t: float, from_evcc: bool, data: bytes) -> None:
        if data is not lost:
            tcp.send(t, from_evcc, data)
        elif cut is None:
            tcp.advance(from_evcc, len(data))  # the SECC got it: its later segments acknowledge it
        else:
            capture = io.BytesIO()
            TCPSession(PcapWriter(capture), tcp.evcc, tcp.secc).send(t, from_evcc, data)
            whole = next(iter(read_capture(io.BytesIO(capture.getvalue())))).data
            tcp.writer.write(t, whole[:-cut], original_length=len(whole))

    return dissect(write_session(exchange, emit=drop)), lost


def _assert_resumes_at_own_frames(records: list, missing: int) -> None:  # type: ignore[type-arg]
    messages = [r for r in records if isinstance(r, V2GMessage)]
    frame_time = {r.frame: r.t for r in records if isinstance(r, Frame)}
    errors = [r for r in records if isinstance(r, ProtocolError)]
    assert [e.layer for e in errors] == ["tcp"] and f": {missing} bytes missing" in errors[0].message
    names = [m.message for m in messages]
    assert names.count("DC_ChargeLoopReq") == 3 and names.count("DC_ChargeLoopRes") == 4
    assert all(frame_time[m.frame] == m.t for m in messages)  # each message at the frame that carried it
    assert [m.frame for m in messages] == sorted(m.frame for m in messages)
    stats = analyse(records).response_times["DC_ChargeLoop"]
    assert stats.count == 3 and stats.maximum < 0.2  # the requests after the hole are paired with their responses


def test_acknowledged_hole_is_declared_and_later_messages_keep_their_frames() -> None:
    """A lost segment the peer acknowledged will never be captured (tshark: "ACKed unseen segment"):
    the bytes after it are not held until the end of the capture."""
    records, lost = _drop_second_loop_request()
    _assert_resumes_at_own_frames(records, len(lost))
    error = next(r for r in records if isinstance(r, ProtocolError))
    next_request = [r for r in records if isinstance(r, V2GMessage) and r.message == "DC_ChargeLoopReq"][1]
    assert error.frame == next_request.frame  # reported where tshark says "previous segment not captured"


def test_frame_cut_by_the_snapshot_length_is_a_gap_at_that_frame() -> None:
    records, _ = _drop_second_loop_request(cut=5)
    _assert_resumes_at_own_frames(records, 5)


def test_frame_cut_short_by_the_close_is_an_error() -> None:
    """A V2GTP frame whose announced payload never arrives before the stream ends is a protocol error."""
    exchange = dc_session([0.1])
    last = exchange[-1][2]
    exchange[-1] = (exchange[-1][0], False, last[:4] + (len(last) - 8 + 100).to_bytes(4, "big") + last[8:])
    errors = _errors(dissect(write_session(exchange)))
    assert errors == [f"v2gtp: TCP stream 0 SECC: incomplete V2GTP frame: {len(last)} of {len(last) + 100} bytes "
                      "at the end of the stream (closed)"]


@pytest.mark.parametrize("namespace", ["iso2", "din"])
def test_capture_started_after_the_handshake_guesses_the_schema_set(namespace: str) -> None:
    """Without the supportedAppProtocol exchange, a 0x8001 payload that is no handshake message is tried
    as ISO 15118-2 and DIN SPEC 70121; the one that decodes is used and said to be guessed."""
    evse_id = {"iso2": "DE*ABC*E12345", "din": "0A0B"}[namespace]
    bodies = [{"SessionSetupReq": {"EVCCID": "0A0B0C0D0E0F"}},
              {"SessionSetupRes": {"ResponseCode": "OK_NewSessionEstablished", "EVSEID": evse_id}},
              {"ServiceDiscoveryReq": {}}]
    exchange: Exchange = [(0.1 * i, i % 2 == 0, _iso2_frame(body, namespace)) for i, body in enumerate(bodies)]
    records = dissect(write_session(exchange))
    assert _errors(records) == []
    assert [m[1:] for m in _messages(records)] == [(namespace, next(iter(body)), "guessed") for body in bodies]
