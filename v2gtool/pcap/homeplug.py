"""HomePlug Green PHY management messages (MMEs) of SLAC, for dissecting captures.

This is a seam: the SLAC protocol core's own MME parser (``v2gtool.slac.mme``) will replace the
field parsing below once it lands, behind the same :func:`dissect_homeplug`. Until then this parses
the MME header (HomePlug AV 2.1 clause 11.1: MMV, little-endian MMTYPE, FMI) and the fields the
analysis needs, with the layouts of ISO 15118-3 Annex A (Table A.2 ff.): RunID, the attenuation
profile of CM_ATTEN_CHAR.IND / CM_ATTEN_PROFILE.IND, and the peers of CM_SLAC_PARM.CNF / MATCH.
"""

from __future__ import annotations

import struct
from typing import Any

from v2gtool.pcap.link import PacketError, mac

# MMTYPE base + .REQ 0, .CNF 1, .IND 2, .RSP 3 (HomePlug AV 2.1 Table 11-1; ISO 15118-3 Table A.1).
MMTYPE_NAMES: dict[int, str] = {
    0x6008: "CM_SET_KEY.REQ", 0x6009: "CM_SET_KEY.CNF",
    0x601C: "CM_AMP_MAP.REQ", 0x601D: "CM_AMP_MAP.CNF",
    0x6064: "CM_SLAC_PARM.REQ", 0x6065: "CM_SLAC_PARM.CNF",
    0x606A: "CM_START_ATTEN_CHAR.IND",
    0x606E: "CM_ATTEN_CHAR.IND", 0x606F: "CM_ATTEN_CHAR.RSP",
    0x6076: "CM_MNBC_SOUND.IND",
    0x6078: "CM_VALIDATE.REQ", 0x6079: "CM_VALIDATE.CNF",
    0x607C: "CM_SLAC_MATCH.REQ", 0x607D: "CM_SLAC_MATCH.CNF",
    0x6086: "CM_ATTEN_PROFILE.IND",
}
# The messages that are SLAC (ISO 15118-3 clause 9) rather than modem management around it.
SLAC_MMTYPE_NAMES = frozenset(name for mmtype, name in MMTYPE_NAMES.items() if 0x6064 <= mmtype <= 0x6086)
_HEADER_LENGTH = 5  # MMV 1 + MMTYPE 2 + FMI 2 (MMV 0x01, HomePlug AV 1.1 and later)
_ETHERNET_HEADER = 14


def _need(body: bytes, length: int, name: str) -> None:
    if len(body) < length:
        raise PacketError(f"HomePlug {name} truncated: {len(body)} of {length} bytes after the MME header")


def _profile(groups: int, data: bytes) -> dict[str, Any]:
    aag = list(data[:groups])
    return {"groups": groups, "attenuation_db": aag, "average_db": round(sum(aag) / len(aag), 2) if aag else None}


def _fields(mmtype: int, body: bytes) -> dict[str, Any]:
    """The SLAC fields of one MME body (the bytes after the MME header)."""
    name = MMTYPE_NAMES.get(mmtype, "")
    if mmtype == 0x6064:
        _need(body, 10, name)
        return {"run_id": body[2:10].hex()}
    if mmtype == 0x6065:
        _need(body, 25, name)
        return {"num_sounds": body[6], "time_out_ms": body[7] * 100, "forwarding_sta": mac(body[9:15]),
                "run_id": body[17:25].hex()}
    if mmtype == 0x606A:
        _need(body, 19, name)
        return {"num_sounds": body[2], "time_out_ms": body[3] * 100, "forwarding_sta": mac(body[5:11]),
                "run_id": body[11:19].hex()}
    if mmtype == 0x6076:
        _need(body, 28, name)
        return {"count": body[19], "run_id": body[20:28].hex()}
    if mmtype == 0x606E:
        _need(body, 52, name)
        groups = body[51]
        _need(body, 52 + groups, name)
        return {"source_address": mac(body[2:8]), "run_id": body[8:16].hex(), "num_sounds": body[50],
                "profile": _profile(groups, body[52:52 + groups])}
    if mmtype == 0x606F:
        _need(body, 51, name)
        return {"source_address": mac(body[2:8]), "run_id": body[8:16].hex(), "result": body[50]}
    if mmtype == 0x6086:
        _need(body, 8, name)
        groups = body[6]
        _need(body, 8 + groups, name)
        return {"pev_mac": mac(body[0:6]), "profile": _profile(groups, body[8:8 + groups])}
    if mmtype in (0x607C, 0x607D):
        _need(body, 66, name)
        fields: dict[str, Any] = {"pev_mac": mac(body[21:27]), "evse_mac": mac(body[44:50]),
                                  "run_id": body[50:58].hex()}
        if mmtype == 0x607D:
            _need(body, 90, name)
            fields["nid"] = body[66:73].hex()
        return fields
    if mmtype == 0x6009:
        _need(body, 1, name)
        return {"result": body[0]}
    return {}


def dissect_homeplug(frame_bytes: bytes) -> dict[str, Any]:
    """Dissect an Ethernet frame of EtherType 0x88E1: MMV, MMTYPE, name and the SLAC fields.

    Raises :class:`PacketError` when the header or a known MME's fields are truncated.
    """
    if len(frame_bytes) < _ETHERNET_HEADER:
        raise PacketError(f"Ethernet header truncated: {len(frame_bytes)} of 14 bytes")
    pos = _ETHERNET_HEADER
    while struct.unpack_from(">H", frame_bytes, pos - 2)[0] in (0x8100, 0x88A8):
        pos += 4
    return dissect_mme(frame_bytes[pos:])


def dissect_mme(mme: bytes) -> dict[str, Any]:
    """Dissect the MME that follows the link-layer header."""
    if len(mme) < 3:
        raise PacketError(f"HomePlug MME header truncated: {len(mme)} of 3 bytes")
    mmv = mme[0]
    mmtype = struct.unpack_from("<H", mme, 1)[0]
    start = _HEADER_LENGTH if mmv else 3  # MMV 0 (HomePlug AV 1.0) has no FMI field
    if len(mme) < start:
        raise PacketError(f"HomePlug MME header truncated: {len(mme)} of {start} bytes")
    name = MMTYPE_NAMES.get(mmtype, f"MME 0x{mmtype:04X}" + (" (vendor)" if mmtype >= 0xA000 else ""))
    return {"mmv": mmv, "mmtype": mmtype, "name": name, **_fields(mmtype, mme[start:])}
