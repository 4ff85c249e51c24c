"""SECC Discovery Protocol messages (ISO 15118-2 clause 7.10.1, ISO 15118-20 clause 7.10.1).

A seam like :mod:`v2gtool.pcap.homeplug`: the SDP protocol core (``v2gtool.sdp``) replaces this
field parsing when it lands. Request: Security + Transport (2 bytes); response: SECC IPv6 address
(16), TCP port (2), Security, Transport (ISO 15118-2 Tables 14-16).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from v2gtool import v2gtp
from v2gtool.pcap.link import PacketError

SDP_PORT = 15118
SECURITY = {0x00: "TLS", 0x10: "none"}
TRANSPORT = {0x00: "TCP", 0x10: "UDP"}


def sdp_fields(frame: v2gtp.V2GTPFrame) -> tuple[str, dict[str, Any]]:
    """Name and fields of an SDP request or response frame."""
    payload, kind = frame.payload, frame.payload_type
    if kind in (v2gtp.PayloadType.SDP_REQUEST, v2gtp.PayloadType.SDP_REQUEST_WIRELESS):
        if len(payload) < 2:
            raise PacketError(f"SDP request payload truncated: {len(payload)} of 2 bytes")
        return "SDPReq", {"security": SECURITY.get(payload[0], f"0x{payload[0]:02X}"),
                          "transport": TRANSPORT.get(payload[1], f"0x{payload[1]:02X}")}
    if kind in (v2gtp.PayloadType.SDP_RESPONSE, v2gtp.PayloadType.SDP_RESPONSE_WIRELESS):
        if len(payload) < 20:
            raise PacketError(f"SDP response payload truncated: {len(payload)} of 20 bytes")
        return "SDPRes", {"secc_address": str(ipaddress.IPv6Address(payload[:16])),
                          "secc_port": int.from_bytes(payload[16:18], "big"),
                          "security": SECURITY.get(payload[18], f"0x{payload[18]:02X}"),
                          "transport": TRANSPORT.get(payload[19], f"0x{payload[19]:02X}")}
    raise PacketError(f"UDP port {SDP_PORT}: V2GTP payload type 0x{kind:04X} is not an SDP message")
