"""--filter values are checked against the type of the field they compare with (a usage error, exit 2,
instead of a filter that silently matches nothing)."""

from __future__ import annotations

import pytest

from v2gtool.pcap.filters import FilterError, parse_filter


@pytest.mark.parametrize(("text", "message"), [
    ("DC_ChargeLoopReq.EVTargetCurrent < abc", "DC_ChargeLoopReq.EVTargetCurrent is a number (RationalNumber); abc "
                                               "is not one"),
    ("DC_ChargeLoopReq.EVTargetCurrent == '5'", "is a number (RationalNumber); '5' is not one"),
    ("CurrentDemandReq.EVTargetCurrent.Value > x", "CurrentDemandReq.EVTargetCurrent.Value is a number (integer)"),
    ("DC_ChargeLoopReq.MeterInfoRequested == 1", "DC_ChargeLoopReq.MeterInfoRequested is a boolean; 1 is not one"),
    ("SessionSetupRes.ResponseCode == OK_NewSessionEstablishe",
     "SessionSetupRes.ResponseCode is an enumeration; OK_NewSessionEstablishe is not one (did you mean "
     "OK_NewSessionEstablished?)"),
    ("DC_ChargeLoopReq.Header == 1", "DC_ChargeLoopReq.Header is an element with fields of its own (MessageHeader)"),
    ("DC_ChargeLoopReq.EVTargetCurrent > nan", "nan is not a finite number; compare with a number such as 0.5"),
])
def test_a_value_of_the_wrong_type_is_a_filter_error(text: str, message: str) -> None:
    with pytest.raises(FilterError) as info:
        parse_filter(text)
    assert info.value.exit_code == 2
    assert str(info.value).startswith(f"--filter {text!r}: ") and message in str(info.value)


@pytest.mark.parametrize(("text", "operand"), [
    ("DC_ChargeLoopReq.EVTargetCurrent < -5", -5.0),
    ("CurrentDemandReq.DC_EVStatus.EVRESSSOC > 50", 50.0),
    ("SessionSetupRes.ResponseCode == OK_NewSessionEstablished", "OK_NewSessionEstablished"),
    ("SessionSetupRes.ResponseCode != 'FAILED'", "FAILED"),
    ("DC_ChargeLoopReq.MeterInfoRequested == true", "True"),
    ("SessionSetupReq.EVCCID == 0102030405", "0102030405"),  # text that looks like a number stays text
    ("SessionSetupRes.EVSEID == 'DE*ABC*E12345'", "DE*ABC*E12345"),
])
def test_a_value_of_the_fields_type_is_taken_as_that_type(text: str, operand: object) -> None:
    assert parse_filter(text).operand == operand
