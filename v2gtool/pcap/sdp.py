"""SECC Discovery Protocol messages in a capture (ISO 15118-2 clause 7.10.1, ISO 15118-20 clause 7.10.1),
parsed by the SDP core :mod:`v2gtool.sdp`, the code our EVCC and SECC run.

This module only names the message and turns the core's request or response into record fields.
The wireless variants of -20 (payload types 0x9002/0x9003, Table 12) have no parser in the project:
they are named, and their payload is given as it is.
"""

from __future__ import annotations

from typing import Any

from v2gtool import sdp, v2gtp

SDP_PORT = sdp.SDP_SERVER_PORT
# Record values of the Security and Transport Protocol bytes (ISO 15118-2 Table 15).
SECURITY = {sdp.Security.TLS: "TLS", sdp.Security.NO_TLS: "none"}
TRANSPORT = {sdp.TransportProtocol.TCP: "TCP", sdp.TransportProtocol.UDP: "UDP"}
# The record names of the SDP messages, by V2GTP payload type (ISO 15118-20 Table 12).
SDP_MESSAGES: dict[int, str] = {v2gtp.PayloadType.SDP_REQUEST: "SDPReq", v2gtp.PayloadType.SDP_RESPONSE: "SDPRes",
                v2gtp.PayloadType.SDP_REQUEST_WIRELESS: "SDPReqWireless",
                v2gtp.PayloadType.SDP_RESPONSE_WIRELESS: "SDPResWireless"}


def sdp_fields(frame: v2gtp.V2GTPFrame) -> tuple[str, dict[str, Any]]:
    """Name and fields of an SDP frame; raises :class:`v2gtool.sdp.SdpError` when it is malformed."""
    kind = frame.payload_type
    if kind == v2gtp.PayloadType.SDP_REQUEST:
        request = sdp.SdpRequest.from_payload(frame.payload)
        return SDP_MESSAGES[kind], {"security": SECURITY[request.security], "transport": TRANSPORT[request.transport]}
    if kind == v2gtp.PayloadType.SDP_RESPONSE:
        response = sdp.SdpResponse.from_payload(frame.payload)
        return SDP_MESSAGES[kind], {"secc_address": str(response.address), "secc_port": response.port,
                          "security": SECURITY[response.security], "transport": TRANSPORT[response.transport]}
    if kind == v2gtp.PayloadType.SDP_REQUEST_WIRELESS:
        return SDP_MESSAGES[kind], {"payload": frame.payload.hex()}
    if kind == v2gtp.PayloadType.SDP_RESPONSE_WIRELESS:
        return SDP_MESSAGES[kind], {"payload": frame.payload.hex()}
    raise sdp.SdpError(f"UDP port {SDP_PORT}: V2GTP payload type 0x{kind:04X} is not an SDP message")
