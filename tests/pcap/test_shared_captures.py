"""Every public capture of ../shared/testdata/pcaps: every message found, nothing invented, TLS decrypted."""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pcap.session import SHARED_PCAPS, analyse, dissect
from v2gtool.pcap.analysis import base_name
from v2gtool.pcap.link import ETHERTYPE_IPV6, IPPROTO_UDP, ip_packet, link_frame, udp_datagram
from v2gtool.pcap.reader import read_capture
from v2gtool.pcap.records import EVCC, SECC, Frame, KeyDisclosed, ProtocolError, SlacMessage, TLSSession, V2GMessage
from v2gtool.pcap.synth import PcapWriter
from v2gtool.pcap.tls import KeyLog

CAPTURES = sorted(SHARED_PCAPS.glob("*.pcapng")) if SHARED_PCAPS.is_dir() else []
TLS_CAPTURES = [p for p in CAPTURES if "TLS" in p.name]
pytestmark = pytest.mark.skipif(not CAPTURES, reason=f"{SHARED_PCAPS} is absent (shared test data)")


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: p.stem)
def test_capture_decodes_completely(path: Path) -> None:
    records = dissect(path.read_bytes())
    assert [r for r in records if isinstance(r, ProtocolError)] == []
    messages = [r for r in records if isinstance(r, V2GMessage)]
    if "PWM" in path.name:  # basic charging: no high-level communication at all
        assert messages == [] and any(isinstance(r, SlacMessage) for r in records)
        return
    # Requests come from the EVCC, responses from the SECC, each response answers the request before it.
    pending: dict[int, str] = {}
    for message in messages:
        base, kind = base_name(message.message)
        assert message.sender == (EVCC if kind == "Req" else SECC), message
        if kind == "Req":
            pending[message.tcp_stream] = base
        else:
            assert pending.pop(message.tcp_stream) == base, message
    assert messages[0].message == "supportedAppProtocolReq"
    assert messages[-1].message == "SessionStopRes"
    assert all(m.tls for m in messages) == ("TLS" in path.name)


@pytest.mark.parametrize("path", TLS_CAPTURES, ids=lambda p: p.stem)
def test_tls_secrets_disclosed_in_the_capture(path: Path) -> None:
    records = dissect(path.read_bytes())
    session = next(r for r in records if isinstance(r, TLSSession))
    disclosed = {r.client_random for r in records if isinstance(r, KeyDisclosed)}
    assert disclosed == {session.client_random}
    assert ("TLS 1.3" if "ISO-20" in path.name else "TLS 1.2") == session.version
    assert session.decrypted


def _without_disclosure(path: Path, tmp_path: Path) -> bytes:
    """The capture less its UDP key-disclosure datagrams (everything but SDP on UDP)."""
    out = tmp_path / "stripped.pcap"
    with path.open("rb") as source, out.open("wb") as sink:
        writer = PcapWriter(sink)
        for packet in read_capture(source):
            link = link_frame(packet.linktype, packet.data)
            if link.ethertype == ETHERTYPE_IPV6:
                ip = ip_packet(link.ethertype, link.payload)
                if ip.protocol == IPPROTO_UDP:
                    udp = udp_datagram(ip.payload)
                    if 15118 not in (udp.source_port, udp.destination_port):
                        continue
            writer.write(packet.timestamp, packet.data)
    return out.read_bytes()


@pytest.mark.parametrize("path", [p for p in TLS_CAPTURES if p.with_suffix(".keys").is_file()], ids=lambda p: p.stem)
def test_keylog_file_alone_decrypts(path: Path, tmp_path: Path) -> None:
    stripped = _without_disclosure(path, tmp_path)
    expected = [(m.sender, m.message, m.document) for m in dissect(path.read_bytes()) if isinstance(m, V2GMessage)]
    keylog = KeyLog()
    keylog.add_text(path.with_suffix(".keys").read_text())
    records = dissect(stripped, keylog)
    assert not any(isinstance(r, KeyDisclosed | ProtocolError) for r in records)
    assert [(m.sender, m.message, m.document) for m in records if isinstance(m, V2GMessage)] == expected
    assert [r.decrypted for r in records if isinstance(r, TLSSession)] == [True]
    without = dissect(stripped)
    errors = [r.message for r in without if isinstance(r, ProtocolError)]
    random = next(r for r in without if isinstance(r, TLSSession)).client_random
    assert [r.decrypted for r in without if isinstance(r, TLSSession)] == [False]
    assert errors == [f"TCP stream 0: no {'CLIENT_TRAFFIC' if 'ISO-20' in path.name else 'CLIENT_RANDOM'}"
                      f"{'_SECRET_0/SERVER_TRAFFIC_SECRET_0' if 'ISO-20' in path.name else ''} secret for client "
                      f"random {random} (give --keylog)"]


def test_two_evses_answer_slac_and_the_ev_chooses_one() -> None:
    path = SHARED_PCAPS / "ISO-2_DC_multi_EVSE_SLAC_DS5366_Josev.pcapng"
    summary = analyse(dissect(path.read_bytes())).summary()
    candidates = summary["slac"]["candidates"]
    assert len(candidates) == 2
    chosen = summary["slac"]["chosen_evse"]
    assert chosen in candidates
    # ISO 15118-3 leaves the choice to the EV; this one took the EVSE with the lower attenuation.
    assert candidates[chosen]["average_attenuation_db"] == min(c["average_attenuation_db"] for c in candidates.values())


def test_bpt_negotiation_of_the_ac_bpt_capture() -> None:
    summary = analyse(dissect((SHARED_PCAPS / "ISO-20_BPT_AC_DS5366_Josev.pcapng").read_bytes())).summary()
    energy = summary["energy_transfer"]
    assert "AC_BPT" in energy["offered"] and energy["selected"] == ["AC_BPT"]
    assert "BPT_Scheduled_AC_CLReqControlMode" in energy["control_modes"]
    assert energy["verdict"] == "AC_BPT offered, selected and run"


def test_late_handshake_response_in_the_mutual_tls_capture() -> None:
    """The SECC answers supportedAppProtocolReq 3.5 s later, over its 2 s timeout. The request's record
    is decrypted only after its secret is disclosed (frame 75), yet is timed at its own frame 72."""
    records = dissect((SHARED_PCAPS / "ISO-20_mTLS_DC_DS5366_Josev.pcapng").read_bytes())
    analysis = analyse(records)
    times = {r.frame: r.t for r in records if isinstance(r, Frame)}
    assert analysis.slow_responses == [{"message": "supportedAppProtocol", "request_frame": 72, "response_frame": 80,
                                        "seconds": round(times[80] - times[72], 6), "timeout": 2.0,
                                        "verdict": "over"}]
    assert analysis.error_count == 1


def _with_secrets_block(capture: bytes, keys: str) -> bytes:
    """*capture* (pcap) as pcapng with *keys* in a Decryption Secrets Block first (as ``editcap --inject-secrets``)."""
    def block(block_type: int, body: bytes) -> bytes:
        body += bytes(-len(body) % 4)
        return struct.pack("<II", block_type, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))

    out = [block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)), block(1, struct.pack("<HHI", 1, 0, 0)),
           block(0x0A, struct.pack("<II", 0x544C534B, len(keys)) + keys.encode())]
    for packet in read_capture(io.BytesIO(capture)):
        ticks = round(packet.timestamp * 1e6)
        out.append(block(6, struct.pack("<IIIII", 0, ticks >> 32, ticks & 0xFFFFFFFF, len(packet.data),
                                        packet.original_length) + packet.data))
    return b"".join(out)


@pytest.mark.parametrize("path", [p for p in TLS_CAPTURES if p.with_suffix(".keys").is_file()], ids=lambda p: p.stem)
def test_secrets_embedded_in_the_pcapng_decrypt(path: Path, tmp_path: Path) -> None:
    expected = [m.message for m in dissect(path.read_bytes()) if isinstance(m, V2GMessage)]
    embedded = tmp_path / "dsb.pcapng"
    keys = path.with_suffix(".keys").read_text()
    embedded.write_bytes(_with_secrets_block(_without_disclosure(path, tmp_path), keys))
    result = subprocess.run([sys.executable, "-m", "v2gtool", "--json", "pcap-decode", str(embedded)],
                            capture_output=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout[-2000:]
    lines = [json.loads(line) for line in result.stdout.decode().splitlines()]
    messages = [line for line in lines if line["event"] == "V2GMessage"]
    assert [m["message"] for m in messages] == expected and all(m["tls"] for m in messages)
