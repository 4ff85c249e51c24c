"""Cross-check with tshark through pyshark: frame numbers, TCP streams, HomePlug fields, decrypted bytes.

Debian's tshark has no V2GTP or EXI dissector, so the comparison stops at what it does dissect; our
decoded messages are compared by re-encoding them to the bytes tshark decrypted.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.pcap.session import SHARED_PCAPS, dissect
from v2gtool import v2gtp
from v2gtool.exi import api
from v2gtool.pcap.link import ETHERTYPE_IPV6, IPPROTO_UDP, ip_packet, link_frame, udp_datagram
from v2gtool.pcap.reader import read_capture
from v2gtool.pcap.records import Frame, SlacMessage, V2GMessage

pyshark = pytest.importorskip("pyshark", reason="pyshark is not installed")
pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed (apt-get install tshark)"),
    pytest.mark.skipif(not SHARED_PCAPS.is_dir(), reason="shared captures absent"),
]

CAPTURES = sorted(p.stem for p in SHARED_PCAPS.glob("*.pcapng")) if SHARED_PCAPS.is_dir() else []


def _disclosed_keylog(path: Path, directory: Path) -> Path:
    """The key-log lines the capture discloses in UDP datagrams, as a file for tshark."""
    lines = []
    for packet in read_capture(path.open("rb")):
        link = link_frame(packet.linktype, packet.data)
        if link.ethertype == ETHERTYPE_IPV6 and (ip := ip_packet(link.ethertype, link.payload)).protocol == IPPROTO_UDP:
            payload = udp_datagram(ip.payload).payload
            if payload[:1].isalpha() and payload.isascii():
                lines.append(payload.decode().strip())
    keys = directory / f"{path.stem}.keys"
    keys.write_text("\n".join(lines) + "\n")
    return keys


def _tshark(path: Path, keys: Path) -> list[dict[str, Any]]:
    """tshark's view of the capture. pyshark's tshark child occasionally dies at start-up on a loaded
    machine (TSharkCrashException): one more try tells that apart from a capture it cannot read."""
    try:
        return _tshark_once(path, keys)
    except pyshark.capture.capture.TSharkCrashException:
        return _tshark_once(path, keys)


def _current_loop_for_pyshark() -> None:
    """pyshark takes the current event loop; an asyncio.run() earlier in the same process leaves
    none, so set one as a fresh process would have."""
    try:
        asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:
        asyncio.set_event_loop(asyncio.new_event_loop())


def _tshark_once(path: Path, keys: Path) -> list[dict[str, Any]]:
    prefs = {"tls.keylog_file": str(keys)}
    _current_loop_for_pyshark()
    capture = pyshark.FileCapture(str(path), override_prefs=prefs, keep_packets=False)
    rows: list[dict[str, Any]] = []
    try:
        for packet in capture:
            row: dict[str, Any] = {"frame": int(packet.number)}
            if hasattr(packet, "vlan"):
                row["vlan"] = int(packet.vlan.id)
            if hasattr(packet, "tcp"):
                row["stream"] = int(packet.tcp.stream)
                row["src_port"] = int(packet.tcp.srcport)
                fields = (layer.get_field("data") for layer in packet.get_multiple_layers("data"))
                row["data"] = b"".join(bytes.fromhex(str(f).replace(":", "")) for f in fields if f is not None)
            layer = packet.layers[-1]
            if layer.layer_name == "homeplug-av" and layer.get_field("homeplug_av_mmhdr_mmtype") is not None:
                row["mmtype"] = int(layer.get_field("homeplug_av_mmhdr_mmtype"), 0)
                aag = layer.get_field("homeplug_av_gp_cm_atten_char_aag")
                if aag is not None:
                    row["aag"] = [int(v.show) for v in aag.all_fields]
                evse = layer.get_field("homeplug_av_gp_cm_slac_match_evse_mac")
                if evse is not None:
                    row["evse_mac"] = str(evse)
            rows.append(row)
    finally:
        capture.close()
    return rows


@pytest.mark.parametrize("name", CAPTURES)
def test_agrees_with_tshark(name: str, tmp_path: Path) -> None:
    path = SHARED_PCAPS / f"{name}.pcapng"
    theirs = _tshark(path, _disclosed_keylog(path, tmp_path))
    records = dissect(path.read_bytes())
    ours = {r.frame: r for r in records if isinstance(r, Frame)}
    assert sorted(ours) == [row["frame"] for row in theirs]
    slac = {r.frame: r.mme for r in records if isinstance(r, SlacMessage)}
    for row in theirs:
        if "stream" in row:
            assert ours[row["frame"]].tcp_stream == row["stream"], row["frame"]
        if "vlan" in row and "mmtype" in row:
            assert ours[row["frame"]].vlan == row["vlan"], row["frame"]
        if "mmtype" in row:
            mme = slac[row["frame"]]
            assert mme["mmtype"] == row["mmtype"]
            if "aag" in row:
                assert mme["profile"]["attenuation_db"] == row["aag"]
            if "evse_mac" in row:
                assert mme["evse_mac"] == row["evse_mac"]
    # tshark's application bytes (decrypted where TLS), framed by V2GTP, against our messages re-encoded.
    # The EVCC speaks first on each stream; streams that do not start with a V2GTP header are not V2G.
    clients: dict[int, int] = {}
    streams: dict[tuple[int, bool], bytearray] = {}
    expected: list[tuple[int, bytes]] = []
    for row in theirs:
        if not row.get("data"):
            continue
        client = clients.setdefault(row["stream"], row["src_port"] if row["data"][:2] == b"\x01\xfe" else -1)
        if client < 0:
            continue
        buffer = streams.setdefault((row["stream"], row["src_port"] == client), bytearray())
        buffer += row["data"]
        while len(buffer) >= 8 and len(buffer) >= 8 + int.from_bytes(buffer[4:8], "big"):
            end = 8 + int.from_bytes(buffer[4:8], "big")
            expected.append((row["frame"], bytes(buffer[:end])))
            del buffer[:end]
    messages = [r for r in records if isinstance(r, V2GMessage)]
    got = [(m.frame, v2gtp.encode_frame(m.payload_type, api.encode_json(m.document, m.namespace)))
           for m in messages]
    assert got == expected
