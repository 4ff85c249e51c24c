"""HomePlug Green PHY management messages (MMEs) in a capture, parsed by the SLAC core.

The parsing is :mod:`v2gtool.slac.mme`'s, the code the SLAC state machines run; this module only
turns a decoded MME into the record fields the analysis and the ``--json`` lines use (ISO 15118-3
Annex A): RunID, the sounding parameters, the attenuation profile of CM_ATTEN_CHAR.IND and
CM_ATTEN_PROFILE.IND, and the peers of CM_SLAC_MATCH. The SLAC core (and scapy under it) is
imported on the first HomePlug frame, so a capture without one does not pay for it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from v2gtool.slac.mme import MmeFrame

# The MMTYPEs of SLAC proper (ISO 15118-3 clause 9, Annex A: CM_SLAC_PARM.REQ .. CM_ATTEN_PROFILE.IND),
# as opposed to modem management around it (CM_SET_KEY, CM_AMP_MAP, vendor MMEs).
SLAC_MMTYPES = range(0x6064, 0x6087)


def dissect_mme(data: bytes, destination: str | None = None, source: str | None = None) -> dict[str, Any]:
    """The record fields of the MME in *data* (the bytes after the link-layer header).

    Raises :class:`v2gtool.slac.mme.MmeDecodeError` (a ``V2GToolError``) for a malformed MME.
    """
    from v2gtool.slac import mme  # here, not above: scapy loads only for captures with HomePlug frames

    frame = mme.decode_mme(data, destination or "", source or "")
    return {"mmv": frame.mmv, "mmtype": frame.mmtype, "name": frame.name, **_fields(frame)}


def _profile(aag: list[int]) -> dict[str, Any]:
    return {"groups": len(aag), "attenuation_db": aag, "average_db": round(sum(aag) / len(aag), 2) if aag else None}


# Body field of the SLAC core -> (record field, its JSON value), in the body's own order. Not listed,
# so never printed: identities the analysis does not use, and the NMK of CM_SLAC_MATCH.CNF and
# CM_SET_KEY.REQ (a network key has no place in a shared trace report).
_RECORD_FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "source_address": ("source_address", str),
    "pev_mac": ("pev_mac", str),
    "evse_mac": ("evse_mac", str),
    "num_sounds": ("num_sounds", int),
    "time_out": ("time_out_ms", lambda units: int(units) * 100),  # TIME_OUT counts 100 ms
    "forwarding_sta": ("forwarding_sta", str),
    "cnt": ("count", int),
    "run_id": ("run_id", bytes.hex),
    "result": ("result", int),
    "nid": ("nid", bytes.hex),
    "aag": ("profile", lambda aag: _profile(list(aag))),
}


def _fields(frame: MmeFrame) -> dict[str, Any]:
    """What the analysis and people need of a SLAC body, under the names of ISO 15118-3 Annex A."""
    if frame.body is None:
        return {}
    out: dict[str, Any] = {}
    for name, value in frame.body.fields.items():
        mapped = _RECORD_FIELDS.get(name)
        if mapped is not None:
            out[mapped[0]] = mapped[1](value)
    return out
