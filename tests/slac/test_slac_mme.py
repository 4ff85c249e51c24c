"""HomePlug GP MME layers: round trips, untrusted input, the peers' quirks, scapy as an oracle."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.fields import (
    ByteEnumField,
    ByteField,
    FieldLenField,
    LEShortField,
    MACField,
    PacketListField,
    StrFixedLenField,
    StrLenField,
    X3BytesField,
    XLEIntField,
)
from scapy.packet import Packet

from v2gtool.slac import mme

EV = "02:00:00:00:0e:02"
EVSE = "02:00:00:00:0e:01"

macs = st.binary(min_size=6, max_size=6).map(lambda b: b.hex(":"))


def _field_values(cls: type[Packet]) -> st.SearchStrategy[dict[str, Any]]:
    """A strategy of ``{field: value}`` for every settable field of a layer."""
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for fld in cls.fields_desc:
        match fld:
            case FieldLenField():
                continue  # computed from the field it counts
            case XLEIntField():
                parts[fld.name] = st.integers(0, 2**32 - 1)
            case LEShortField():
                parts[fld.name] = st.integers(0, 2**16 - 1)
            case ByteField() | ByteEnumField():
                parts[fld.name] = st.integers(0, 255)
            case X3BytesField():
                parts[fld.name] = st.integers(0, 2**24 - 1)
            case MACField():
                parts[fld.name] = macs
            case StrFixedLenField():
                parts[fld.name] = st.binary(min_size=fld.length_from(None), max_size=fld.length_from(None))
            case mme.AagField():
                parts[fld.name] = st.lists(st.integers(0, 255), max_size=255)
            case PacketListField():
                parts[fld.name] = st.lists(
                    _field_values(fld.cls).map(lambda kw, c=fld.cls: c(**kw)), max_size=5
                )
            case StrLenField():
                parts[fld.name] = st.binary(max_size=100)
            case _:
                raise AssertionError(f"no strategy for {type(fld).__name__} {cls.__name__}.{fld.name}")
    return st.fixed_dictionaries(parts)


def _bodies() -> st.SearchStrategy[mme.MmeBody]:
    return st.sampled_from(sorted(mme.BODIES.values(), key=lambda c: c.MMTYPE)).flatmap(
        lambda cls: _field_values(cls).map(lambda kw: cls(**kw))
    )


@settings(max_examples=400)
@given(_bodies(), macs, macs)
def test_every_body_round_trips(body: mme.MmeBody, dst: str, src: str) -> None:
    if isinstance(body, mme.VS_SW_VER_CNF):
        body.version_len = min(body.version_len, 64)
    frame = mme.encode_frame(dst, src, body)
    assert len(frame) >= mme.ETHERNET_MIN_FRAME
    decoded = mme.decode_frame(frame)
    assert (decoded.dst, decoded.src, decoded.mmtype) == (dst, src, body.MMTYPE)
    assert type(decoded.body) is type(body)
    for name, value in body.fields.items():
        got = decoded.body.getfieldval(name)
        if isinstance(value, list) and value and isinstance(value[0], Packet):
            assert [bytes(p) for p in got] == [bytes(p) for p in value]
        else:
            assert got == value, name


@settings(max_examples=1000)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_raise_only_decode_error(data: bytes) -> None:
    try:
        mme.decode_frame(data)
    except mme.MmeDecodeError as exc:
        assert "\n" not in str(exc)


@settings(max_examples=1000)
@given(st.sampled_from(sorted(mme.BODIES)), st.sampled_from([0, 1, 2, 7]), st.binary(max_size=200))
def test_known_mmtypes_with_random_bodies_raise_only_decode_error(mmtype: int, mmv: int, body: bytes) -> None:
    header = (
        bytes.fromhex("ffffffffffff020000000001") + b"\x88\xe1" + bytes([mmv]) + mmtype.to_bytes(2, "little")
    )
    try:
        frame = mme.decode_frame(header + body)
    except mme.MmeDecodeError:
        return
    assert frame.mmtype == mmtype
    assert mmv in mme.KNOWN_MMV


@given(_bodies(), st.data())
def test_truncated_frames_are_decode_errors(body: mme.MmeBody, data: st.DataObject) -> None:
    frame = mme.encode_frame(EVSE, EV, body)
    unpadded = 14 + 3 + (0 if mme.is_vendor_specific(body.MMTYPE) else 2)
    unpadded += 3 if mme.is_vendor_specific(body.MMTYPE) else 0
    required = unpadded + type(body).required_len()
    cut = data.draw(st.integers(0, required - 1))
    with pytest.raises(mme.MmeDecodeError):
        mme.decode_frame(frame[:cut])


def test_count_larger_than_the_list_is_a_decode_error() -> None:
    frame = mme.encode_frame(EVSE, EV, mme.CM_ATTEN_PROFILE_IND(pev_mac=EV, aag=[20] * 58))
    lying = bytearray(frame[:-10])
    with pytest.raises(mme.MmeDecodeError, match="num_groups=58"):
        mme.decode_frame(bytes(lying))


def test_wrong_ethertype_and_unknown_mmv_are_named() -> None:
    frame = bytearray(mme.encode_frame(EVSE, EV, mme.CM_SLAC_PARM_REQ()))
    frame[12:14] = b"\x86\xdd"
    with pytest.raises(mme.MmeDecodeError, match="0x86DD"):
        mme.decode_frame(bytes(frame))
    frame[12:14] = b"\x88\xe1"
    frame[14] = 5
    with pytest.raises(mme.MmeDecodeError, match=r"in CM_SLAC_PARM\.REQ: unknown MMV 5"):
        mme.decode_frame(bytes(frame))


def test_vlan_tagged_frame_decodes() -> None:
    plain = mme.encode_frame(EVSE, EV, mme.CM_SLAC_PARM_REQ(run_id=b"R" * 8))
    tagged = plain[:12] + b"\x81\x00\x00\xf4" + plain[12:]
    assert mme.decode_frame(tagged).body.run_id == b"R" * 8


def test_unknown_mmtype_keeps_the_payload() -> None:
    frame = bytes.fromhex("ffffffffffff020000000001") + b"\x88\xe1\x01\x02\x80\x00\x00" + b"diag"
    decoded = mme.decode_frame(frame)
    assert decoded.body is None and decoded.payload == b"diag"
    assert decoded.name == "MMTYPE 0x8002"


def test_open_plc_utils_short_mnbc_sound_is_accepted() -> None:
    """`pev` sends a 64-octet CM_MNBC_SOUND.IND with RSVD/Rnd cut ([peers README])."""
    full = mme.encode_frame(mme.BROADCAST_MAC, EV, mme.CM_MNBC_SOUND_IND(cnt=9, run_id=b"12345678"))
    decoded = mme.decode_frame(full[:64])
    assert (decoded.body.cnt, decoded.body.run_id) == (9, b"12345678")


def test_open_plc_utils_padded_atten_char_ind_is_accepted() -> None:
    """`evse` pads CM_ATTEN_CHAR.IND to 326 octets."""
    frame = mme.encode_frame(EV, EVSE, mme.CM_ATTEN_CHAR_IND(source_address=EV, num_sounds=10, aag=[30] * 58))
    decoded = mme.decode_frame(frame.ljust(326, b"\0"))
    assert list(decoded.body.aag) == [30] * 58


@pytest.mark.parametrize(("result", "ok"), [(0, True), (1, True), (2, False), (0xFF, False)])
def test_set_key_cnf_both_result_conventions(result: int, ok: bool) -> None:
    assert mme.set_key_succeeded(mme.CM_SET_KEY_CNF(result=result)) is ok


def test_mmtype_names_follow_the_standard() -> None:
    assert mme.mmtype_name(0x6064) == "CM_SLAC_PARM.REQ"
    assert mme.mmtype_name(0xA0B9) == "VS_PL_LNK_STATUS.CNF"


# -- scapy's contrib layers as an independent encoder ----------------------------------------------


def _scapy_frame(mmtype: int, body: Packet) -> bytes:
    from scapy.contrib.homeplugav import HomePlugAV
    from scapy.layers.l2 import Ether

    return bytes(Ether(src=EVSE, dst=EV, type=0x88E1) / HomePlugAV(version=1, HPtype=mmtype) / body)


def test_scapy_contrib_slac_frames_decode_to_the_same_values() -> None:
    gp = pytest.importorskip("scapy.contrib.homepluggp")
    cnf = mme.decode_frame(
        _scapy_frame(
            0x6065,
            gp.CM_SLAC_PARM_CNF(
                MSoundTargetMAC=mme.BROADCAST_MAC,
                NumberMSounds=10,
                TimeOut=6,
                ResponseType=1,
                ForwardingSTA=EV,
                RunID=b"abcdefgh",
            ),
        )
    ).body
    assert (cnf.num_sounds, cnf.time_out, cnf.resp_type, cnf.forwarding_sta, cnf.run_id) == (
        10,
        6,
        1,
        EV,
        b"abcdefgh",
    )
    ind = mme.decode_frame(
        _scapy_frame(
            0x606E,
            gp.CM_ATTEN_CHAR_IND(
                SourceAdress=EV,
                RunID=b"abcdefgh",
                NumberOfSounds=10,
                Groups=[gp.HPGP_GROUP(group=g) for g in range(58)],
            ),
        )
    ).body
    assert (ind.source_address, ind.num_sounds, list(ind.aag)) == (EV, 10, list(range(58)))
    match_cnf = mme.decode_frame(
        _scapy_frame(
            0x607D,
            gp.CM_SLAC_MATCH_CNF(
                VariableField=gp.SLAC_varfield_cnf(
                    EVMAC=EV, EVSEMAC=EVSE, RunID=b"abcdefgh", NetworkID=b"N" * 7, NMK=b"K" * 16
                )
            ),
        )
    ).body
    assert (match_cnf.mvf_length, match_cnf.pev_mac, match_cnf.evse_mac) == (0x56, EV, EVSE)
    assert (match_cnf.nid, match_cnf.nmk) == (b"N" * 7, b"K" * 16)


def test_set_key_nonces_are_little_endian_unlike_scapy_contrib() -> None:
    """HomePlug AV sends multi-octet fields little-endian; scapy's contrib packs them big-endian."""
    ours = bytes(mme.CM_SET_KEY_REQ(my_nonce=0x11223344))
    assert ours[1:5] == bytes.fromhex("44332211")
