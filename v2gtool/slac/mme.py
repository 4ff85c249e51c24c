"""HomePlug AV / Green PHY management messages (MMEs, EtherType 0x88E1) used by ISO 15118-3.

Every MME of ISO 15118-3 Annex A (CM_SLAC_PARM, CM_START_ATTEN_CHAR, CM_MNBC_SOUND,
CM_ATTEN_PROFILE, CM_ATTEN_CHAR, CM_VALIDATE, CM_SLAC_MATCH, CM_SET_KEY, CM_AMP_MAP) and the
Qualcomm vendor-specific MMEs an engineer needs with a QCA7000/7005 modem (VS_SW_VER, VS_RS_DEV,
VS_NW_INFO, VS_PL_LNK_STATUS) are scapy ``Packet`` layers here.

scapy's own ``contrib.homepluggp`` lacks CM_VALIDATE and CM_AMP_MAP, packs CM_SET_KEY's nonces
and protocol run number big-endian (HomePlug AV sends multi-octet MME fields little-endian, as
open-plc-utils and the captures do) and binds itself globally to ``Ether``. So the whole set is
defined in this one module, with the standard's field names, and dispatched by
:func:`decode_frame` without touching scapy's global layer bindings.

:func:`decode_frame` takes untrusted bytes and either returns an :class:`MmeFrame` or raises
:class:`MmeDecodeError` -- never anything else; callers count those errors.
"""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, ClassVar

from scapy.fields import (
    ByteEnumField,
    ByteField,
    ConditionalField,
    Field,
    FieldLenField,
    LEShortEnumField,
    LEShortField,
    MACField,
    PacketListField,
    StrFixedLenField,
    StrLenField,
    X3BytesField,
    XLEIntField,
)
from scapy.packet import Packet

from v2gtool.errors import V2GToolError

ETHERTYPE_HOMEPLUG_AV = 0x88E1
ETHERTYPE_VLAN = 0x8100
BROADCAST_MAC = "ff:ff:ff:ff:ff:ff"
#: The address every Qualcomm Atheros modem answers as "the local device" on its host interface.
QCA_LOCAL_MAC = "00:b0:52:00:00:01"
QUALCOMM_OUI = 0x00B052
#: Minimum Ethernet frame without FCS (IEEE 802.3: 64 octets with FCS): shorter frames are zero-padded.
ETHERNET_MIN_FRAME = 60
ETHERNET_HEADER_LEN = 14


class MMType(IntEnum):
    """MMTYPE codes (HomePlug AV 1.1 / Green PHY, ISO 15118-3 Annex A). The two least
    significant bits give the variant: 0 = .REQ, 1 = .CNF, 2 = .IND, 3 = .RSP."""

    CM_SET_KEY_REQ = 0x6008
    CM_SET_KEY_CNF = 0x6009
    CM_AMP_MAP_REQ = 0x601C
    CM_AMP_MAP_CNF = 0x601D
    CM_SLAC_PARM_REQ = 0x6064
    CM_SLAC_PARM_CNF = 0x6065
    CM_START_ATTEN_CHAR_IND = 0x606A
    CM_ATTEN_CHAR_IND = 0x606E
    CM_ATTEN_CHAR_RSP = 0x606F
    CM_MNBC_SOUND_IND = 0x6076
    CM_VALIDATE_REQ = 0x6078
    CM_VALIDATE_CNF = 0x6079
    CM_SLAC_MATCH_REQ = 0x607C
    CM_SLAC_MATCH_CNF = 0x607D
    CM_ATTEN_PROFILE_IND = 0x6086
    VS_SW_VER_REQ = 0xA000
    VS_SW_VER_CNF = 0xA001
    VS_RS_DEV_REQ = 0xA01C
    VS_RS_DEV_CNF = 0xA01D
    VS_NW_INFO_REQ = 0xA038
    VS_NW_INFO_CNF = 0xA039
    VS_PL_LNK_STATUS_REQ = 0xA0B8
    VS_PL_LNK_STATUS_CNF = 0xA0B9


def mmtype_name(mmtype: int) -> str:
    """The standard's name of *mmtype* (``CM_SLAC_PARM.REQ``), or its hex code when unknown."""
    try:
        name = MMType(mmtype).name
    except ValueError:
        return f"MMTYPE 0x{mmtype:04X}"
    base, _, variant = name.rpartition("_")
    return f"{base}.{variant}"


def is_vendor_specific(mmtype: int) -> bool:
    """Vendor-specific MMTYPEs (0xA000-0xBFFF in HomePlug AV 1.1) carry an OUI."""
    return 0xA000 <= mmtype <= 0xBFFF


class ApplicationType(IntEnum):
    """APPLICATION_TYPE (ISO 15118-3 Annex A)."""

    PEV_EVSE_MATCHING = 0x00


class SecurityType(IntEnum):
    """SECURITY_TYPE (ISO 15118-3 Annex A): 0x00 no security, 0x01 public key signature."""

    NO_SECURITY = 0x00
    PUBLIC_KEY_SIGNATURE = 0x01


class ValidateResult(IntEnum):
    """CM_VALIDATE Result (ISO 15118-3 Annex A)."""

    NOT_READY = 0
    READY = 1
    SUCCESS = 2
    FAILURE = 3
    NOT_REQUIRED = 4


class AagField(Field[list[int], bytes]):
    """AAG octets (average attenuation per group, dB) as a list of ints, ``length_from`` octets.
    One slice instead of one scapy field per group keeps the parser fast on captures full of
    CM_ATTEN_PROFILE.IND."""

    __slots__ = ["length_from"]
    islist = 1  # a list value is this field's value, not a set of packets to iterate over

    def __init__(self, name: str, length_from: Callable[[Packet], int]) -> None:
        super().__init__(name, [], "B")
        self.length_from = length_from

    def getfield(self, pkt: Packet, s: bytes) -> tuple[bytes, list[int]]:
        length = self.length_from(pkt)
        return s[length:], list(s[:length])

    def addfield(self, pkt: Packet, s: bytes, val: list[int] | None) -> bytes:
        return s + bytes(val or [])

    def any2i(self, pkt: Packet | None, x: Any) -> list[int]:
        return list(x) if x is not None else []

    def i2len(self, pkt: Packet, x: list[int] | None) -> int:
        return len(x or [])


_ID_LEN = 17  # PEV ID / EVSE ID / SenderID / SOURCE_ID / RESP_ID (ISO 15118-3 Annex A)
_RUN_ID_LEN = 8


class MmeBody(Packet):
    """Base of every MME body: knows its MMTYPE and how many octets a valid body needs at least."""

    MMTYPE: ClassVar[int]
    #: Set only where trailing fields may be cut (a peer's quirk): octets up to the last field
    #: the matching needs. ``None`` means every field is mandatory.
    REQUIRED_LEN: ClassVar[int | None] = None

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        # An MME body is the innermost layer: whatever follows is Ethernet padding.
        return b"", s

    @classmethod
    def required_len(cls) -> int:
        """Octets a body of this type needs at least (its fixed part, lists empty)."""
        if cls.REQUIRED_LEN is not None:
            return cls.REQUIRED_LEN
        return _fixed_len(cls)


@functools.cache
def _fixed_len(cls: type[MmeBody]) -> int:
    return len(bytes(cls()))


def _sec_app() -> list[Any]:
    return [
        ByteEnumField("application_type", ApplicationType.PEV_EVSE_MATCHING, {0: "PEV-EVSE matching"}),
        ByteEnumField("security_type", SecurityType.NO_SECURITY, {0: "no security", 1: "public key"}),
    ]


class CM_SLAC_PARM_REQ(MmeBody):
    """CM_SLAC_PARM.REQ (ISO 15118-3 Annex A): the EV starts matching with a fresh RunID."""

    MMTYPE = MMType.CM_SLAC_PARM_REQ
    name = "CM_SLAC_PARM.REQ"
    fields_desc: ClassVar[list[Any]] = [
        *_sec_app(),
        StrFixedLenField("run_id", b"\0" * _RUN_ID_LEN, _RUN_ID_LEN),
    ]


class CM_SLAC_PARM_CNF(MmeBody):
    """CM_SLAC_PARM.CNF (ISO 15118-3 Annex A): the EVSE's sounding parameters."""

    MMTYPE = MMType.CM_SLAC_PARM_CNF
    name = "CM_SLAC_PARM.CNF"
    fields_desc: ClassVar[list[Any]] = [
        MACField("msound_target", BROADCAST_MAC),
        ByteField("num_sounds", 10),
        ByteField("time_out", 6),  # units of 100 ms
        ByteField("resp_type", 1),
        MACField("forwarding_sta", "00:00:00:00:00:00"),
        *_sec_app(),
        StrFixedLenField("run_id", b"\0" * _RUN_ID_LEN, _RUN_ID_LEN),
    ]


class CM_START_ATTEN_CHAR_IND(MmeBody):
    """CM_START_ATTEN_CHAR.IND (ISO 15118-3 Annex A): the EV announces the sounds to come."""

    MMTYPE = MMType.CM_START_ATTEN_CHAR_IND
    name = "CM_START_ATTEN_CHAR.IND"
    fields_desc: ClassVar[list[Any]] = [
        *_sec_app(),
        ByteField("num_sounds", 10),
        ByteField("time_out", 6),
        ByteField("resp_type", 1),
        MACField("forwarding_sta", "00:00:00:00:00:00"),
        StrFixedLenField("run_id", b"\0" * _RUN_ID_LEN, _RUN_ID_LEN),
    ]


class CM_MNBC_SOUND_IND(MmeBody):
    """CM_MNBC_SOUND.IND (ISO 15118-3 Annex A), one M-Sound.

    open-plc-utils' ``pev`` cuts the RSVD and Rnd fields (a 64-octet frame); the fields up to the
    RunID are the ones the matching needs, so only they are required.
    """

    MMTYPE = MMType.CM_MNBC_SOUND_IND
    name = "CM_MNBC_SOUND.IND"
    REQUIRED_LEN = 2 + _ID_LEN + 1 + _RUN_ID_LEN
    fields_desc: ClassVar[list[Any]] = [
        *_sec_app(),
        StrFixedLenField("sender_id", b"\0" * _ID_LEN, _ID_LEN),
        ByteField("cnt", 0),
        StrFixedLenField("run_id", b"\0" * _RUN_ID_LEN, _RUN_ID_LEN),
        StrFixedLenField("rsvd", b"\0" * 8, 8),
        StrFixedLenField("rnd", b"\0" * 16, 16),
    ]


class CM_ATTEN_PROFILE_IND(MmeBody):
    """CM_ATTEN_PROFILE.IND (ISO 15118-3 Annex A): the EVSE's modem reports one sound's
    average attenuation per group (AAG, dB) to its host."""

    MMTYPE = MMType.CM_ATTEN_PROFILE_IND
    name = "CM_ATTEN_PROFILE.IND"
    fields_desc: ClassVar[list[Any]] = [
        MACField("pev_mac", "00:00:00:00:00:00"),
        FieldLenField("num_groups", None, length_of="aag", fmt="B"),
        ByteField("rsvd", 0),
        AagField("aag", length_from=lambda p: p.num_groups),
    ]


class CM_ATTEN_CHAR_IND(MmeBody):
    """CM_ATTEN_CHAR.IND (ISO 15118-3 Annex A): the EVSE's averaged attenuation profile."""

    MMTYPE = MMType.CM_ATTEN_CHAR_IND
    name = "CM_ATTEN_CHAR.IND"
    fields_desc: ClassVar[list[Any]] = [
        *_sec_app(),
        MACField("source_address", "00:00:00:00:00:00"),
        StrFixedLenField("run_id", b"\0" * _RUN_ID_LEN, _RUN_ID_LEN),
        StrFixedLenField("source_id", b"\0" * _ID_LEN, _ID_LEN),
        StrFixedLenField("resp_id", b"\0" * _ID_LEN, _ID_LEN),
        ByteField("num_sounds", 0),
        FieldLenField("num_groups", None, length_of="aag", fmt="B"),
        AagField("aag", length_from=lambda p: p.num_groups),
    ]


class CM_ATTEN_CHAR_RSP(MmeBody):
    """CM_ATTEN_CHAR.RSP (ISO 15118-3 Annex A): the EV acknowledges a profile (Result 0 = OK)."""

    MMTYPE = MMType.CM_ATTEN_CHAR_RSP
    name = "CM_ATTEN_CHAR.RSP"
    fields_desc: ClassVar[list[Any]] = [
        *_sec_app(),
        MACField("source_address", "00:00:00:00:00:00"),
        StrFixedLenField("run_id", b"\0" * _RUN_ID_LEN, _RUN_ID_LEN),
        StrFixedLenField("source_id", b"\0" * _ID_LEN, _ID_LEN),
        StrFixedLenField("resp_id", b"\0" * _ID_LEN, _ID_LEN),
        ByteField("result", 0),
    ]


class CM_VALIDATE_REQ(MmeBody):
    """CM_VALIDATE.REQ (ISO 15118-3 Annex A): SignalType 0 = BC toggle on the control pilot;
    Timer in 100 ms units (0 in the first round); Result as :class:`ValidateResult`."""

    MMTYPE = MMType.CM_VALIDATE_REQ
    name = "CM_VALIDATE.REQ"
    fields_desc: ClassVar[list[Any]] = [
        ByteField("signal_type", 0),
        ByteField("timer", 0),
        ByteField("result", 0),
    ]


class CM_VALIDATE_CNF(MmeBody):
    """CM_VALIDATE.CNF (ISO 15118-3 Annex A): ToggleNum the EVSE counted, and its Result."""

    MMTYPE = MMType.CM_VALIDATE_CNF
    name = "CM_VALIDATE.CNF"
    fields_desc: ClassVar[list[Any]] = [
        ByteField("signal_type", 0),
        ByteField("toggle_num", 0),
        ByteField("result", 0),
    ]


class CM_SLAC_MATCH_REQ(MmeBody):
    """CM_SLAC_MATCH.REQ (ISO 15118-3 Annex A): MVFLength 0x3E."""

    MMTYPE = MMType.CM_SLAC_MATCH_REQ
    name = "CM_SLAC_MATCH.REQ"
    fields_desc: ClassVar[list[Any]] = [
        *_sec_app(),
        LEShortField("mvf_length", 0x3E),
        StrFixedLenField("pev_id", b"\0" * _ID_LEN, _ID_LEN),
        MACField("pev_mac", "00:00:00:00:00:00"),
        StrFixedLenField("evse_id", b"\0" * _ID_LEN, _ID_LEN),
        MACField("evse_mac", "00:00:00:00:00:00"),
        StrFixedLenField("run_id", b"\0" * _RUN_ID_LEN, _RUN_ID_LEN),
        StrFixedLenField("rsvd", b"\0" * 8, 8),
    ]


class CM_SLAC_MATCH_CNF(MmeBody):
    """CM_SLAC_MATCH.CNF (ISO 15118-3 Annex A): MVFLength 0x56; carries NID and NMK."""

    MMTYPE = MMType.CM_SLAC_MATCH_CNF
    name = "CM_SLAC_MATCH.CNF"
    fields_desc: ClassVar[list[Any]] = [
        *_sec_app(),
        LEShortField("mvf_length", 0x56),
        StrFixedLenField("pev_id", b"\0" * _ID_LEN, _ID_LEN),
        MACField("pev_mac", "00:00:00:00:00:00"),
        StrFixedLenField("evse_id", b"\0" * _ID_LEN, _ID_LEN),
        MACField("evse_mac", "00:00:00:00:00:00"),
        StrFixedLenField("run_id", b"\0" * _RUN_ID_LEN, _RUN_ID_LEN),
        StrFixedLenField("rsvd", b"\0" * 8, 8),
        StrFixedLenField("nid", b"\0" * 7, 7),
        ByteField("rsvd2", 0),
        StrFixedLenField("nmk", b"\0" * 16, 16),
    ]


class CM_SET_KEY_REQ(MmeBody):
    """CM_SET_KEY.REQ (HomePlug AV 1.1, ISO 15118-3 Annex A): the host hands
    its own modem the NMK (KeyType 1, PID 4 = HLE protocol, EKS 1) and the NID."""

    MMTYPE = MMType.CM_SET_KEY_REQ
    name = "CM_SET_KEY.REQ"
    fields_desc: ClassVar[list[Any]] = [
        ByteField("key_type", 1),
        XLEIntField("my_nonce", 0),
        XLEIntField("your_nonce", 0),
        ByteField("pid", 4),
        LEShortField("prn", 0),
        ByteField("pmn", 0),
        ByteField("cco_capability", 0),
        StrFixedLenField("nid", b"\0" * 7, 7),
        ByteField("new_eks", 1),
        StrFixedLenField("new_key", b"\0" * 16, 16),
    ]


class CM_SET_KEY_CNF(MmeBody):
    """CM_SET_KEY.CNF (HomePlug AV 1.1). HomePlug says Result 0 = success, but
    Qualcomm firmware and open-plc-utils use a non-zero value for success: see
    :func:`set_key_succeeded`."""

    MMTYPE = MMType.CM_SET_KEY_CNF
    name = "CM_SET_KEY.CNF"
    fields_desc: ClassVar[list[Any]] = [
        ByteField("result", 0),
        XLEIntField("my_nonce", 0),
        XLEIntField("your_nonce", 0),
        ByteField("pid", 4),
        LEShortField("prn", 0),
        ByteField("pmn", 0),
        ByteField("cco_capability", 0),
    ]


def set_key_succeeded(cnf: CM_SET_KEY_CNF) -> bool:
    """Whether a CM_SET_KEY.CNF confirms the key.

    Both conventions are in the field: HomePlug AV 1.1 (0 = success) and QCA firmware as read by
    open-plc-utils (1 = success, 0 = "device refused"). A modem that refuses under one convention
    does not answer at all under the other, so the CNF itself is the confirmation and Result
    values 0 and 1 both mean the key was taken; anything else is a refusal.
    """
    return int(cnf.result) in (0, 1)


class CM_AMP_MAP_REQ(MmeBody):
    """CM_AMP_MAP.REQ (HomePlug Green PHY 1.1, ISO 15118-3 Annex A): the amplitude map
    AMDATA, one 4-bit attenuation code per carrier, AMLEN carriers."""

    MMTYPE = MMType.CM_AMP_MAP_REQ
    name = "CM_AMP_MAP.REQ"
    fields_desc: ClassVar[list[Any]] = [
        FieldLenField("amlen", None, length_of="amdata", fmt="<H", adjust=lambda p, n: n * 2),
        StrLenField("amdata", b"", length_from=lambda p: (p.amlen + 1) // 2),
    ]


class CM_AMP_MAP_CNF(MmeBody):
    """CM_AMP_MAP.CNF: ResType 0 = success, 1 = failure."""

    MMTYPE = MMType.CM_AMP_MAP_CNF
    name = "CM_AMP_MAP.CNF"
    fields_desc: ClassVar[list[Any]] = [ByteField("res_type", 0)]


class VS_SW_VER_REQ(MmeBody):
    """Qualcomm VS_SW_VER.REQ: ask the modem for its firmware version."""

    MMTYPE = MMType.VS_SW_VER_REQ
    name = "VS_SW_VER.REQ"
    fields_desc: ClassVar[list[Any]] = []


class VS_SW_VER_CNF(MmeBody):
    """Qualcomm VS_SW_VER.CNF: MSTATUS, device id, the version string (``version_len`` octets of
    a 64-octet NUL-padded field) and whether the firmware is upgradeable."""

    MMTYPE = MMType.VS_SW_VER_CNF
    name = "VS_SW_VER.CNF"
    fields_desc: ClassVar[list[Any]] = [
        ByteField("mstatus", 0),
        ByteField("device_id", 0),
        ByteField("version_len", 0),
        StrFixedLenField("version", b"", 64),
        ByteField("upgradeable", 0),
    ]

    @property
    def version_text(self) -> str:
        return bytes(self.version[: self.version_len]).decode("ascii", "replace")


class VS_RS_DEV_REQ(MmeBody):
    """Qualcomm VS_RS_DEV.REQ: reset the modem."""

    MMTYPE = MMType.VS_RS_DEV_REQ
    name = "VS_RS_DEV.REQ"
    fields_desc: ClassVar[list[Any]] = []


class VS_RS_DEV_CNF(MmeBody):
    """Qualcomm VS_RS_DEV.CNF: MSTATUS 0 = reset accepted."""

    MMTYPE = MMType.VS_RS_DEV_CNF
    name = "VS_RS_DEV.CNF"
    fields_desc: ClassVar[list[Any]] = [ByteField("mstatus", 0)]


class _ListItem(Packet):
    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        return b"", s


class NetworkInfo(_ListItem):
    """One AVLN of a VS_NW_INFO.CNF (MMV 0 layout, as Wireshark's HomePlug AV dissector reads it)."""

    name = "network"
    fields_desc: ClassVar[list[Any]] = [
        StrFixedLenField("nid", b"\0" * 7, 7),
        ByteField("snid", 0),
        ByteField("tei", 0),
        ByteField("sta_role", 0),
        MACField("cco_mac", "00:00:00:00:00:00"),
        ByteField("cco_tei", 0),
    ]


class NetworkStation(_ListItem):
    """One station of a VS_NW_INFO.CNF: its MAC, TEI, bridged address and PHY rates (Mbit/s)."""

    name = "station"
    fields_desc: ClassVar[list[Any]] = [
        MACField("da", "00:00:00:00:00:00"),
        ByteField("tei", 0),
        MACField("bda", "00:00:00:00:00:00"),
        ByteField("avg_phy_dr_tx", 0),
        ByteField("avg_phy_dr_rx", 0),
    ]


class VS_NW_INFO_REQ(MmeBody):
    """Qualcomm VS_NW_INFO.REQ: ask for the AVLN(s) the modem belongs to."""

    MMTYPE = MMType.VS_NW_INFO_REQ
    name = "VS_NW_INFO.REQ"
    fields_desc: ClassVar[list[Any]] = []


class VS_NW_INFO_CNF(MmeBody):
    """Qualcomm VS_NW_INFO.CNF: the AVLNs the modem is in and the stations it sees.
    No network means the modem has not joined, i.e. the link is down."""

    MMTYPE = MMType.VS_NW_INFO_CNF
    name = "VS_NW_INFO.CNF"
    fields_desc: ClassVar[list[Any]] = [
        FieldLenField("num_avlns", None, count_of="networks", fmt="B"),
        PacketListField("networks", [], NetworkInfo, count_from=lambda p: p.num_avlns),
        FieldLenField("num_stas", None, count_of="stations", fmt="B"),
        PacketListField("stations", [], NetworkStation, count_from=lambda p: p.num_stas),
    ]


class VS_PL_LNK_STATUS_REQ(MmeBody):
    """Qualcomm VS_PL_LNK_STATUS.REQ: is the powerline link up?"""

    MMTYPE = MMType.VS_PL_LNK_STATUS_REQ
    name = "VS_PL_LNK_STATUS.REQ"
    fields_desc: ClassVar[list[Any]] = []


class VS_PL_LNK_STATUS_CNF(MmeBody):
    """Qualcomm VS_PL_LNK_STATUS.CNF: MSTATUS, then link status 1 = link up (D-LINK_READY)."""

    MMTYPE = MMType.VS_PL_LNK_STATUS_CNF
    name = "VS_PL_LNK_STATUS.CNF"
    fields_desc: ClassVar[list[Any]] = [ByteField("mstatus", 0), ByteField("link_status", 0)]


BODIES: dict[int, type[MmeBody]] = {
    cls.MMTYPE: cls
    for cls in (
        CM_SLAC_PARM_REQ,
        CM_SLAC_PARM_CNF,
        CM_START_ATTEN_CHAR_IND,
        CM_MNBC_SOUND_IND,
        CM_ATTEN_PROFILE_IND,
        CM_ATTEN_CHAR_IND,
        CM_ATTEN_CHAR_RSP,
        CM_VALIDATE_REQ,
        CM_VALIDATE_CNF,
        CM_SLAC_MATCH_REQ,
        CM_SLAC_MATCH_CNF,
        CM_SET_KEY_REQ,
        CM_SET_KEY_CNF,
        CM_AMP_MAP_REQ,
        CM_AMP_MAP_CNF,
        VS_SW_VER_REQ,
        VS_SW_VER_CNF,
        VS_RS_DEV_REQ,
        VS_RS_DEV_CNF,
        VS_NW_INFO_REQ,
        VS_NW_INFO_CNF,
        VS_PL_LNK_STATUS_REQ,
        VS_PL_LNK_STATUS_CNF,
    )
}


class MmeHeader(Packet):
    """The MME header after the Ethernet header (HomePlug AV 1.1): MMV, MMTYPE
    (little-endian), FMI for MMV >= 1 (fragmentation, ISO 15118-3 sends unfragmented MMEs), and
    the vendor OUI for vendor-specific MMTYPEs."""

    name = "HomePlug AV MME"
    fields_desc: ClassVar[list[Any]] = [
        ByteField("mmv", 1),
        LEShortEnumField("mmtype", 0, {int(t): mmtype_name(t) for t in MMType}),
        ConditionalField(LEShortField("fmi", 0), lambda p: p.mmv >= 1),
        ConditionalField(X3BytesField("oui", QUALCOMM_OUI), lambda p: is_vendor_specific(p.mmtype)),
    ]

    def extract_padding(self, s: bytes) -> tuple[bytes, bytes]:
        return b"", s


#: MMV values this parser knows: 0 = HomePlug AV 1.0, 1 = HomePlug AV 1.1 / Green PHY.
KNOWN_MMV = (0, 1)


class MmeDecodeError(V2GToolError):
    """An Ethernet frame that is not a well-formed MME (truncated, wrong EtherType, bad counts)."""

    exit_code = 3

    def __init__(self, reason: str, mmtype: int | None = None) -> None:
        where = f" in {mmtype_name(mmtype)}" if mmtype is not None else ""
        super().__init__(f"malformed HomePlug AV frame{where}: {reason}")
        self.reason = reason
        self.mmtype = mmtype


@dataclass(frozen=True)
class MmeFrame:
    """One decoded MME with its Ethernet addresses. ``body`` is ``None`` for MMTYPEs this module
    does not model (other HomePlug traffic, other vendors' diagnostics); ``payload`` is the raw
    body either way."""

    dst: str
    src: str
    mmv: int
    mmtype: int
    body: Any  # an MmeBody instance or None; scapy packets are dynamically typed
    payload: bytes

    @property
    def name(self) -> str:
        return mmtype_name(self.mmtype)


def _mac(octets: bytes) -> str:
    return octets.hex(":")


def decode_frame(frame: bytes) -> MmeFrame:
    """Decode one Ethernet frame carrying an MME; raise :class:`MmeDecodeError` for anything else.

    Ethernet padding after the body is ignored; an 802.1Q tag is skipped.
    """
    if len(frame) < ETHERNET_HEADER_LEN:
        raise MmeDecodeError(f"frame of {len(frame)} octets is shorter than an Ethernet header")
    offset = 12
    (ethertype,) = struct.unpack_from("!H", frame, offset)
    if ethertype == ETHERTYPE_VLAN:
        offset += 4
        if len(frame) < offset + 2:
            raise MmeDecodeError("802.1Q tag cut short")
        (ethertype,) = struct.unpack_from("!H", frame, offset)
    if ethertype != ETHERTYPE_HOMEPLUG_AV:
        raise MmeDecodeError(f"EtherType 0x{ethertype:04X} is not HomePlug AV (0x88E1)")
    return decode_mme(frame[offset + 2 :], _mac(frame[0:6]), _mac(frame[6:12]))


def decode_mme(data: bytes, dst: str, src: str) -> MmeFrame:
    """Decode the MME that follows a link-layer header (HomePlug AV 1.1 clause 11.1: MMV, MMTYPE,
    FMI, vendor OUI, body), for links other than plain Ethernet too (a capture's VLAN stacks,
    Linux cooked headers); *dst*/*src* are the link addresses to report. Raises only
    :class:`MmeDecodeError`."""
    if len(data) < 3:
        raise MmeDecodeError(f"MME header needs 3 octets, got {len(data)}")
    mmv, mmtype = data[0], int.from_bytes(data[1:3], "little")
    if mmv not in KNOWN_MMV:
        raise MmeDecodeError(f"unknown MMV {mmv}", mmtype)
    header_len = 3 + (2 if mmv >= 1 else 0) + (3 if is_vendor_specific(mmtype) else 0)
    if len(data) < header_len:
        raise MmeDecodeError(f"MME header needs {header_len} octets, got {len(data)}", mmtype)
    payload = data[header_len:]
    cls = BODIES.get(mmtype)
    body = None if cls is None else _decode_body(cls, payload)
    return MmeFrame(dst, src, mmv, mmtype, body, payload)


#: (count field, counted field) pairs: a count larger than the octets present is a truncation.
_COUNTED_FIELDS = (
    ("num_groups", "aag"),
    ("num_avlns", "networks"),
    ("num_stas", "stations"),
    ("amlen", "amdata"),
)


def _decode_body(cls: type[MmeBody], payload: bytes) -> MmeBody:
    need = cls.required_len()
    if len(payload) < need:
        raise MmeDecodeError(f"body of {len(payload)} octets, at least {need} required", cls.MMTYPE)
    try:
        body = cls(payload)
    except (struct.error, ValueError, IndexError, TypeError) as exc:
        raise MmeDecodeError(f"undecodable body ({exc})", cls.MMTYPE) from exc
    if cls.REQUIRED_LEN is None and len(bytes(body)) > len(payload):
        # scapy pads a field cut short when it re-encodes it: the input ended inside a field.
        raise MmeDecodeError(f"body of {len(payload)} octets ends inside a field", cls.MMTYPE)
    for count_field, list_field in _COUNTED_FIELDS:
        if count_field in body.fields and list_field in body.fields:
            have = len(body.getfieldval(list_field))
            want = int(body.getfieldval(count_field))
            if count_field == "amlen":
                want = (want + 1) // 2
            if have != want:
                raise MmeDecodeError(f"{count_field}={want} but only {have} present", cls.MMTYPE)
    return body


def encode_frame(dst: str, src: str, body: MmeBody, mmv: int = 1) -> bytes:
    """Build an Ethernet frame carrying *body*, zero-padded to the 60-octet minimum.

    Vendor-specific MMEs default to MMV 0 (what QCA firmware speaks); ISO 15118-3 MMEs use MMV 1.
    """
    mmtype = body.MMTYPE
    if is_vendor_specific(mmtype):
        mmv = 0
    eth = bytes.fromhex(dst.replace(":", "")) + bytes.fromhex(src.replace(":", ""))
    frame = eth + ETHERTYPE_HOMEPLUG_AV.to_bytes(2, "big") + bytes(MmeHeader(mmv=mmv, mmtype=mmtype))
    frame += bytes(body)
    return frame.ljust(ETHERNET_MIN_FRAME, b"\0")
