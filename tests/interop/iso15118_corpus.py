"""Reference corpus of ISO 15118-20 DC / DC_BPT messages built by the peer stack.

Runs ONLY inside the peer venv (``iso15118==0.31.2``); it must not import v2gtool.
Every message is built with the peer's own pydantic models
(``iso15118.shared.messages.iso15118_20``) and serialised with the peer's own
``EXI().to_exi`` on top of its EXIficient codec, so the bytes are theirs end to end.
The ``json`` of each entry is the peer codec's decode of those bytes.

Coverage: every message of the -20 DC and DC_BPT message sequence (ISO 15118-20
clause 8.3.4: common messages 8.3.4.3, DC messages 8.3.4.5), request and response,
plus the supportedAppProtocol handshake (ISO 15118-20 clause 8.2 / ISO 15118-2 Annex
A), with variants for each control mode and for optional elements present/absent
and edge values (byte/short limits of RationalNumber, 8.3.5.3.8; unsignedLong
TimeStamp, 8.3.3).  Variation is deterministic: every value derives from the entry
index, never from a random source.

A message the peer models or codec cannot build is recorded in ``skipped`` with the
reason: each such entry is a place where the peer stack deviates from the schema.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from iso15118.shared.exi_codec import EXI, CustomJSONEncoder
from iso15118.shared.exificient_exi_codec import ExificientEXICodec
from iso15118.shared.messages import BaseModel
from iso15118.shared.messages.app_protocol import (
    AppProtocol,
    ResponseCodeSAP,
    SupportedAppProtocolReq,
    SupportedAppProtocolRes,
)
from iso15118.shared.messages.enums import AuthEnum, Namespace
from iso15118.shared.messages.iso15118_20 import common_messages as cm
from iso15118.shared.messages.iso15118_20 import dc
from iso15118.shared.messages.iso15118_20.common_types import (
    DetailedCost,
    DetailedTax,
    DisplayParameters,
    EVSENotification,
    EVSEStatus,
    MessageHeader,
    MeterInfo,
    Processing,
    RationalNumber,
    Receipt,
    ResponseCode,
    RootCertificateIDList,
)
from iso15118.shared.messages.xmldsig import X509IssuerSerial
from iso15118.shared.settings import SettingKey, shared_settings

SAP = Namespace.SAP.value
CM = Namespace.ISO_V20_COMMON_MSG.value
DC = Namespace.ISO_V20_DC.value

SESSION_ID = "5A2CDE53F701D4AC"
#: SessionSetupReq of a new session carries an all-zero SessionID (sessionIDType is
#: hexBinary of length 8, V2G_CI_CommonTypes.xsd).
ZERO_SESSION_ID = "0000000000000000"
BASE_TIME = 1_718_607_534

#: Corpus entries the peer builds and encodes although the XSD forbids them; the
#: bytes are what the peer sends, but a strict schema-informed codec may reject them.
SCHEMA_DEVIATIONS: dict[str, str] = {
    "ScheduleExchangeRes/Ongoing": (
        "ScheduleExchangeResType requires the Dynamic_/Scheduled_SEResControlMode choice; "
        "the peer model omits it while EVSEProcessing=Ongoing"
    ),
}

INT8_MIN, INT8_MAX = -128, 127
INT16_MIN, INT16_MAX = -32768, 32767
UINT64_MAX = 2**64 - 1


def _rn(value: int, exponent: int = 0) -> RationalNumber:
    """RationalNumber (ISO 15118-20 8.3.5.3.8): Value x 10^Exponent."""
    return RationalNumber(exponent=exponent, value=value)


def _fixed_bytes(seed: int, length: int) -> bytes:
    """Deterministic filler bytes (not random) for challenges, keys, certificates."""
    return bytes((seed * 31 + i * 7) & 0xFF for i in range(length))


class _Builder:
    """Collects corpus entries; ``header()`` yields a fresh deterministic header."""

    def __init__(self) -> None:
        self.specs: list[tuple[str, str, Callable[[], BaseModel]]] = []
        self._index = 0

    def header(self, session_id: str = SESSION_ID, timestamp: int | None = None) -> MessageHeader:
        self._index += 1
        stamp = BASE_TIME + self._index if timestamp is None else timestamp
        return MessageHeader(session_id=session_id, timestamp=stamp)

    def add(self, name: str, namespace: str, build: Callable[[], BaseModel]) -> None:
        self.specs.append((name, namespace, build))


def _add_handshake(b: _Builder) -> None:
    """supportedAppProtocolReq/Res (application handshake, ISO 15118-20 8.2)."""
    b.add(
        "supportedAppProtocolReq/-20_DC_and_-2",
        SAP,
        lambda: SupportedAppProtocolReq(
            app_protocol=[
                AppProtocol(
                    protocol_ns="urn:iso:std:iso:15118:-20:DC",
                    major_version=1,
                    minor_version=0,
                    schema_id=1,
                    priority=1,
                ),
                AppProtocol(
                    protocol_ns=Namespace.ISO_V2_MSG_DEF.value,
                    major_version=2,
                    minor_version=0,
                    schema_id=2,
                    priority=2,
                ),
            ]
        ),
    )
    b.add(
        "supportedAppProtocolReq/single",
        SAP,
        lambda: SupportedAppProtocolReq(
            app_protocol=[
                AppProtocol(
                    protocol_ns="urn:iso:std:iso:15118:-20:DC",
                    major_version=1,
                    minor_version=0,
                    schema_id=255,
                    priority=20,
                )
            ]
        ),
    )
    b.add(
        "supportedAppProtocolRes/OK",
        SAP,
        lambda: SupportedAppProtocolRes(response_code=ResponseCodeSAP.NEGOTIATION_OK, schema_id=1),
    )
    b.add(
        "supportedAppProtocolRes/Failed_no_SchemaID",
        SAP,
        lambda: SupportedAppProtocolRes(response_code=ResponseCodeSAP.NEGOTIATION_FAILED),
    )


def _add_session_and_auth(b: _Builder) -> None:
    """SessionSetup (8.3.4.3.1), AuthorizationSetup (8.3.4.3.2), Authorization (8.3.4.3.3)."""
    b.add(
        "SessionSetupReq",
        CM,
        lambda: cm.SessionSetupReq(header=b.header(ZERO_SESSION_ID), evcc_id="WMIV1234567890ABCDEX"),
    )
    b.add(
        "SessionSetupReq/max_TimeStamp",
        CM,
        lambda: cm.SessionSetupReq(header=b.header(ZERO_SESSION_ID, timestamp=UINT64_MAX), evcc_id="E" * 255),
    )
    b.add(
        "SessionSetupRes",
        CM,
        lambda: cm.SessionSetupRes(
            header=b.header(),
            response_code=ResponseCode.OK_NEW_SESSION_ESTABLISHED,
            evse_id="DE*PNX*E12345*1",
        ),
    )
    b.add("AuthorizationSetupReq", CM, lambda: cm.AuthorizationSetupReq(header=b.header()))
    b.add(
        "AuthorizationSetupRes/EIM",
        CM,
        lambda: cm.AuthorizationSetupRes(
            header=b.header(),
            response_code=ResponseCode.OK,
            auth_services=[AuthEnum.EIM],
            cert_install_service=False,
            eim_as_res=cm.EIMAuthSetupResParams(),
        ),
    )
    b.add(
        "AuthorizationSetupRes/PnC",
        CM,
        lambda: cm.AuthorizationSetupRes(
            header=b.header(),
            response_code=ResponseCode.OK,
            auth_services=[AuthEnum.EIM, AuthEnum.PNC],
            cert_install_service=True,
            pnc_as_res=cm.PnCAuthSetupResParams(gen_challenge=_fixed_bytes(1, 16)),
        ),
    )
    b.add(
        "AuthorizationSetupRes/PnC_SupportedProviders",
        CM,
        lambda: cm.AuthorizationSetupRes(
            header=b.header(),
            response_code=ResponseCode.OK,
            auth_services=[AuthEnum.PNC],
            cert_install_service=True,
            pnc_as_res=cm.PnCAuthSetupResParams(
                gen_challenge=_fixed_bytes(2, 16),
                supported_providers=[cm.ProviderID(provider_id="EMP1"), cm.ProviderID(provider_id="EMP2")],
            ),
        ),
    )
    b.add(
        "AuthorizationReq/EIM",
        CM,
        lambda: cm.AuthorizationReq(
            header=b.header(),
            selected_auth_service=AuthEnum.EIM,
            eim_params=cm.EIMAuthReqParams(),
        ),
    )
    b.add(
        "AuthorizationReq/PnC",
        CM,
        lambda: cm.AuthorizationReq(
            header=b.header(),
            selected_auth_service=AuthEnum.PNC,
            pnc_params=cm.PnCAuthReqParams(
                id="id1",
                gen_challenge=_fixed_bytes(1, 16),
                contract_cert_chain=cm.ContractCertificateChain(
                    certificate=_fixed_bytes(3, 300),
                    sub_certificates=cm.SubCertificates(
                        certificates=[_fixed_bytes(4, 200), _fixed_bytes(5, 180)]
                    ),
                ),
            ),
        ),
    )
    for processing in (Processing.FINISHED, Processing.ONGOING, Processing.WAITING_FOR_CUSTOMER):
        b.add(
            f"AuthorizationRes/{processing.value}",
            CM,
            lambda p=processing: cm.AuthorizationRes(
                header=b.header(), response_code=ResponseCode.OK, evse_processing=p
            ),
        )


def _parameter_set(set_id: int) -> cm.ParameterSet:
    """ParameterSet (8.3.5.3.22) using every Parameter value choice (8.3.5.3.23)."""
    return cm.ParameterSet(
        id=set_id,
        parameters=[
            cm.Parameter(name="Connector", int_value=2),
            cm.Parameter(name="ControlMode", int_value=1),
            cm.Parameter(name="MeasureMode", bool_value=False),
            cm.Parameter(name="MinByte", byte_value=INT8_MIN),
            cm.Parameter(name="MaxShort", short_value=INT16_MAX),
            cm.Parameter(name="MinShort", short_value=INT16_MIN),
            cm.Parameter(name="MaximumPower", rational_number=_rn(150, 3)),
            cm.Parameter(name="Tariff", finite_str="Standard"),
        ],
    )


def _add_services(b: _Builder) -> None:
    """ServiceDiscovery (8.3.4.3.4), ServiceDetail (8.3.4.3.5), ServiceSelection (8.3.4.3.6)."""
    b.add("ServiceDiscoveryReq/no_SupportedServiceIDs", CM, lambda: cm.ServiceDiscoveryReq(header=b.header()))
    b.add(
        "ServiceDiscoveryReq/SupportedServiceIDs",
        CM,
        lambda: cm.ServiceDiscoveryReq(
            header=b.header(), supported_service_ids=cm.ServiceIDList(service_ids=[2, 6, 0, 65535])
        ),
    )
    b.add(
        "ServiceDiscoveryRes",
        CM,
        lambda: cm.ServiceDiscoveryRes(
            header=b.header(),
            response_code=ResponseCode.OK,
            service_renegotiation_supported=False,
            energy_service_list=cm.ServiceList(
                services=[
                    cm.Service(service_id=2, free_service=False),
                    cm.Service(service_id=6, free_service=False),
                ]
            ),
        ),
    )
    b.add(
        "ServiceDiscoveryRes/VASList",
        CM,
        lambda: cm.ServiceDiscoveryRes(
            header=b.header(),
            response_code=ResponseCode.OK,
            service_renegotiation_supported=True,
            energy_service_list=cm.ServiceList(services=[cm.Service(service_id=6, free_service=True)]),
            vas_list=cm.ServiceList(
                services=[
                    cm.Service(service_id=3, free_service=True),
                    cm.Service(service_id=4, free_service=False),
                ]
            ),
        ),
    )
    b.add("ServiceDetailReq", CM, lambda: cm.ServiceDetailReq(header=b.header(), service_id=6))
    b.add(
        "ServiceDetailRes",
        CM,
        lambda: cm.ServiceDetailRes(
            header=b.header(),
            response_code=ResponseCode.OK,
            service_id=6,
            service_parameter_list=cm.ServiceParameterList(
                parameter_sets=[_parameter_set(1), _parameter_set(2)]
            ),
        ),
    )
    b.add(
        "ServiceSelectionReq",
        CM,
        lambda: cm.ServiceSelectionReq(
            header=b.header(),
            selected_energy_service=cm.SelectedService(service_id=6, parameter_set_id=1),
        ),
    )
    b.add(
        "ServiceSelectionReq/SelectedVASList",
        CM,
        lambda: cm.ServiceSelectionReq(
            header=b.header(),
            selected_energy_service=cm.SelectedService(service_id=2, parameter_set_id=2),
            selected_vas_list=cm.SelectedServiceList(
                selected_services=[cm.SelectedService(service_id=3, parameter_set_id=1)]
            ),
        ),
    )
    b.add(
        "ServiceSelectionRes",
        CM,
        lambda: cm.ServiceSelectionRes(header=b.header(), response_code=ResponseCode.OK),
    )


def _dc_cpd_req_params(**extra: Any) -> dict[str, Any]:
    return {
        "ev_max_charge_power": _rn(150, 3),
        "ev_min_charge_power": _rn(0),
        "ev_max_charge_current": _rn(3000, -1),
        "ev_min_charge_current": _rn(0),
        "ev_max_voltage": _rn(920),
        "ev_min_voltage": _rn(200),
        **extra,
    }


def _dc_cpd_res_params(**extra: Any) -> dict[str, Any]:
    return {
        "evse_max_charge_power": _rn(350, 3),
        "evse_min_charge_power": _rn(1000),
        "evse_max_charge_current": _rn(500),
        "evse_min_charge_current": _rn(1),
        "evse_max_voltage": _rn(1000),
        "evse_min_voltage": _rn(150),
        **extra,
    }


def _add_charge_parameter_discovery(b: _Builder) -> None:
    """DC_ChargeParameterDiscovery (8.3.4.5.2), DC and BPT (8.3.5.5.1/2, 8.3.5.5.7.1/2)."""
    b.add(
        "DC_ChargeParameterDiscoveryReq/DC",
        DC,
        lambda: dc.DCChargeParameterDiscoveryReq(
            header=b.header(), dc_params=dc.DCChargeParameterDiscoveryReqParams(**_dc_cpd_req_params())
        ),
    )
    b.add(
        "DC_ChargeParameterDiscoveryReq/DC_TargetSOC",
        DC,
        lambda: dc.DCChargeParameterDiscoveryReq(
            header=b.header(),
            dc_params=dc.DCChargeParameterDiscoveryReqParams(**_dc_cpd_req_params(target_soc=100)),
        ),
    )
    b.add(
        "DC_ChargeParameterDiscoveryReq/BPT",
        DC,
        lambda: dc.DCChargeParameterDiscoveryReq(
            header=b.header(),
            bpt_dc_params=dc.BPTDCChargeParameterDiscoveryReqParams(
                **_dc_cpd_req_params(
                    target_soc=80,
                    ev_max_discharge_power=_rn(11, 3),
                    ev_min_discharge_power=_rn(0),
                    ev_max_discharge_current=_rn(250, -1),
                    ev_min_discharge_current=_rn(0),
                )
            ),
        ),
    )
    b.add(
        "DC_ChargeParameterDiscoveryRes/DC",
        DC,
        lambda: dc.DCChargeParameterDiscoveryRes(
            header=b.header(),
            response_code=ResponseCode.OK,
            dc_params=dc.DCChargeParameterDiscoveryResParams(**_dc_cpd_res_params()),
        ),
    )
    b.add(
        "DC_ChargeParameterDiscoveryRes/BPT",
        DC,
        lambda: dc.DCChargeParameterDiscoveryRes(
            header=b.header(),
            response_code=ResponseCode.OK,
            bpt_dc_params=dc.BPTDCChargeParameterDiscoveryResParams(
                **_dc_cpd_res_params(
                    evse_power_ramp_limit=_rn(INT16_MAX, INT8_MIN),
                    evse_max_discharge_power=_rn(50, 3),
                    evse_min_discharge_power=_rn(INT16_MIN, INT8_MAX),
                    evse_max_discharge_current=_rn(125),
                    evse_min_discharge_current=_rn(0),
                )
            ),
        ),
    )


def _power_schedule(entries: int, sign: int) -> cm.PowerSchedule:
    return cm.PowerSchedule(
        time_anchor=BASE_TIME,
        available_energy=_rn(60, 3),
        power_tolerance=_rn(5, 2),
        schedule_entry_list=cm.PowerScheduleEntryList(
            entries=[
                cm.PowerScheduleEntry(duration=900 * (i + 1), power=_rn(sign * (50 - i * 10), 3))
                for i in range(entries)
            ]
        ),
    )


def _price_level_schedule() -> cm.PriceLevelSchedule:
    return cm.PriceLevelSchedule(
        id="PLS1",
        time_anchor=BASE_TIME,
        schedule_id=1,
        schedule_description="Two-level tariff",
        num_price_levels=2,
        schedule_entries=cm.PriceLevelScheduleEntryList(
            entries=[
                cm.PriceLevelScheduleEntry(duration=3600, price_level=0),
                cm.PriceLevelScheduleEntry(duration=7200, price_level=1),
            ]
        ),
    )


def _absolute_price_schedule() -> cm.AbsolutePriceSchedule:
    return cm.AbsolutePriceSchedule(
        id="APS1",
        time_anchor=BASE_TIME,
        schedule_id=2,
        currency="EUR",
        language="ENG",
        price_algorithm="urn:iso:std:iso:15118:-20:PriceAlgorithm:1-Power",
        min_cost=_rn(1),
        max_cost=_rn(100),
        tax_rules=cm.TaxRuleList(
            tax_rule=[
                cm.TaxRule(
                    tax_rule_id=1,
                    tax_rule_name="VAT",
                    tax_rate=_rn(19, -2),
                    tax_included_in_price=True,
                    applies_to_energy_fee=True,
                    applies_to_parking_fee=True,
                    applies_to_overstay_fee=True,
                    applies_to_min_max_cost=False,
                )
            ]
        ),
        price_rule_stacks=cm.PriceRuleStackList(
            price_rule_stacks=[
                cm.PriceRuleStack(
                    duration=0,
                    price_rules=[
                        cm.PriceRule(energy_fee=_rn(39, -2), power_range_start=_rn(0)),
                        cm.PriceRule(
                            energy_fee=_rn(59, -2),
                            parking_fee=_rn(5, -2),
                            parking_fee_period=60,
                            power_range_start=_rn(50, 3),
                        ),
                    ],
                )
            ]
        ),
        overstay_rules=cm.OverstayRuleList(
            time_threshold=3600,
            rules=[cm.OverstayRule(description="after 1h", start_time=0, fee=_rn(10, -2), fee_period=60)],
        ),
        additional_services=cm.AdditionalServiceList(
            additional_services=[cm.AdditionalService(service_name="Parking", service_fee=_rn(2))]
        ),
    )


def _add_schedule_exchange(b: _Builder) -> None:
    """ScheduleExchange (8.3.4.3.7) in Scheduled and Dynamic control mode."""
    b.add(
        "ScheduleExchangeReq/Scheduled",
        CM,
        lambda: cm.ScheduleExchangeReq(
            header=b.header(),
            max_supporting_points=1024,
            scheduled_params=cm.ScheduledScheduleExchangeReqParams(
                departure_time=7200,
                ev_target_energy_request=_rn(40, 3),
                ev_max_energy_request=_rn(60, 3),
                ev_min_energy_request=_rn(-10, 3),
            ),
        ),
    )
    b.add(
        "ScheduleExchangeReq/Scheduled_EVEnergyOffer",
        CM,
        lambda: cm.ScheduleExchangeReq(
            header=b.header(),
            max_supporting_points=12,
            scheduled_params=cm.ScheduledScheduleExchangeReqParams(
                ev_energy_offer=cm.EVEnergyOffer(
                    ev_power_schedule=cm.EVPowerSchedule(
                        time_anchor=BASE_TIME,
                        ev_power_schedule_entries=cm.EVPowerScheduleEntryList(
                            entries=[
                                cm.EVPowerScheduleEntry(duration=1800, power=_rn(-11, 3)),
                                cm.EVPowerScheduleEntry(duration=1800, power=_rn(22, 3)),
                            ]
                        ),
                    ),
                    ev_absolute_price_schedule=cm.EVAbsolutePriceSchedule(
                        time_anchor=BASE_TIME,
                        currency="EUR",
                        price_algorithm="urn:iso:std:iso:15118:-20:PriceAlgorithm:1-Power",
                        ev_price_rule_stacks=cm.EVPriceRuleStackList(
                            ev_price_rule_stacks=[
                                cm.EVPriceRuleStack(
                                    duration=3600,
                                    ev_price_rules=[
                                        cm.EVPriceRule(energy_fee=_rn(25, -2), power_range_start=_rn(0))
                                    ],
                                )
                            ]
                        ),
                    ),
                ),
            ),
        ),
    )
    b.add(
        "ScheduleExchangeReq/Dynamic",
        CM,
        lambda: cm.ScheduleExchangeReq(
            header=b.header(),
            max_supporting_points=1024,
            dynamic_params=cm.DynamicScheduleExchangeReqParams(
                departure_time=10800,
                min_soc=20,
                target_soc=80,
                ev_target_energy_request=_rn(40, 3),
                ev_max_energy_request=_rn(60, 3),
                ev_min_energy_request=_rn(5, 3),
                ev_max_v2x_energy_request=_rn(20, 3),
                ev_min_v2x_energy_request=_rn(-20, 3),
            ),
        ),
    )
    b.add(
        "ScheduleExchangeRes/Scheduled",
        CM,
        lambda: cm.ScheduleExchangeRes(
            header=b.header(),
            response_code=ResponseCode.OK,
            evse_processing=Processing.FINISHED,
            scheduled_params=cm.ScheduledScheduleExchangeResParams(
                schedule_tuples=[
                    cm.ScheduleTuple(
                        schedule_tuple_id=1,
                        charging_schedule=cm.ChargingSchedule(
                            power_schedule=_power_schedule(3, 1),
                            price_level_schedule=_price_level_schedule(),
                        ),
                        discharging_schedule=cm.DischargingSchedule(
                            power_schedule=_power_schedule(2, -1),
                            price_level_schedule=_price_level_schedule(),
                        ),
                    )
                ]
            ),
        ),
    )
    b.add(
        "ScheduleExchangeRes/Scheduled_AbsolutePriceSchedule",
        CM,
        lambda: cm.ScheduleExchangeRes(
            header=b.header(),
            response_code=ResponseCode.OK,
            evse_processing=Processing.FINISHED,
            scheduled_params=cm.ScheduledScheduleExchangeResParams(
                schedule_tuples=[
                    cm.ScheduleTuple(
                        schedule_tuple_id=tuple_id,
                        charging_schedule=cm.ChargingSchedule(
                            power_schedule=_power_schedule(tuple_id, 1),
                            absolute_price_schedule=_absolute_price_schedule(),
                        ),
                    )
                    for tuple_id in (1, 2)
                ]
            ),
        ),
    )
    b.add(
        "ScheduleExchangeRes/Dynamic",
        CM,
        lambda: cm.ScheduleExchangeRes(
            header=b.header(),
            response_code=ResponseCode.OK,
            evse_processing=Processing.FINISHED,
            dynamic_params=cm.DynamicScheduleExchangeResParams(
                departure_time=10800, min_soc=20, target_soc=80
            ),
        ),
    )
    b.add(
        "ScheduleExchangeRes/Dynamic_PriceLevelSchedule_GoToPause",
        CM,
        lambda: cm.ScheduleExchangeRes(
            header=b.header(),
            response_code=ResponseCode.OK,
            evse_processing=Processing.FINISHED,
            dynamic_params=cm.DynamicScheduleExchangeResParams(price_level_schedule=_price_level_schedule()),
            go_to_pause=True,
        ),
    )
    b.add(
        "ScheduleExchangeRes/Ongoing",
        CM,
        lambda: cm.ScheduleExchangeRes(
            header=b.header(), response_code=ResponseCode.OK, evse_processing=Processing.ONGOING
        ),
    )


def _add_dc_pre_charging(b: _Builder) -> None:
    """DC_CableCheck (8.3.4.5.3) and DC_PreCharge (8.3.4.5.4)."""
    b.add("DC_CableCheckReq", DC, lambda: dc.DCCableCheckReq(header=b.header()))
    for processing in (Processing.ONGOING, Processing.FINISHED):
        b.add(
            f"DC_CableCheckRes/{processing.value}",
            DC,
            lambda p=processing: dc.DCCableCheckRes(
                header=b.header(), response_code=ResponseCode.OK, evse_processing=p
            ),
        )
    b.add(
        "DC_PreChargeReq",
        DC,
        lambda: dc.DCPreChargeReq(
            header=b.header(),
            ev_processing=Processing.ONGOING,
            ev_present_voltage=_rn(3985, -1),
            ev_target_voltage=_rn(400),
        ),
    )
    b.add(
        "DC_PreChargeRes",
        DC,
        lambda: dc.DCPreChargeRes(
            header=b.header(), response_code=ResponseCode.OK, evse_present_voltage=_rn(3980, -1)
        ),
    )


def _ev_power_profile(scheduled: bool) -> cm.EVPowerProfile:
    control: dict[str, Any] = (
        {
            "scheduled_profile": cm.ScheduledEVPowerProfile(
                selected_schedule_tuple_id=1,
                power_tolerance_acceptance=cm.PowerToleranceAcceptance.CONFIRMED,
            )
        }
        if scheduled
        else {"dynamic_profile": cm.DynamicEVPowerProfile()}
    )
    return cm.EVPowerProfile(
        time_anchor=BASE_TIME,
        entry_list=cm.EVPowerProfileEntryList(
            entries=[
                cm.PowerScheduleEntry(duration=1800, power=_rn(50, 3)),
                cm.PowerScheduleEntry(duration=1800, power=_rn(-11, 3)),
            ]
        ),
        **control,
    )


def _add_power_delivery(b: _Builder) -> None:
    """PowerDelivery (8.3.4.3.8), incl. EVPowerProfile (8.3.5.3.9) and BPT_ChannelSelection."""
    b.add(
        "PowerDeliveryReq/Start_Scheduled_EVPowerProfile",
        CM,
        lambda: cm.PowerDeliveryReq(
            header=b.header(),
            ev_processing=Processing.FINISHED,
            charge_progress=cm.ChargeProgress.START,
            ev_power_profile=_ev_power_profile(scheduled=True),
        ),
    )
    b.add(
        "PowerDeliveryReq/Start_Dynamic_EVPowerProfile_BPT_Charge",
        CM,
        lambda: cm.PowerDeliveryReq(
            header=b.header(),
            ev_processing=Processing.FINISHED,
            charge_progress=cm.ChargeProgress.START,
            ev_power_profile=_ev_power_profile(scheduled=False),
            bpt_channel_selection=cm.ChannelSelection.CHARGE,
        ),
    )
    b.add(
        "PowerDeliveryReq/Start_BPT_Discharge",
        CM,
        lambda: cm.PowerDeliveryReq(
            header=b.header(),
            ev_processing=Processing.FINISHED,
            charge_progress=cm.ChargeProgress.START,
            ev_power_profile=_ev_power_profile(scheduled=True),
            bpt_channel_selection=cm.ChannelSelection.DISCHARGE,
        ),
    )
    b.add(
        "PowerDeliveryReq/Stop",
        CM,
        lambda: cm.PowerDeliveryReq(
            header=b.header(), ev_processing=Processing.FINISHED, charge_progress=cm.ChargeProgress.STOP
        ),
    )
    b.add(
        "PowerDeliveryReq/Ongoing_Standby",
        CM,
        lambda: cm.PowerDeliveryReq(
            header=b.header(), ev_processing=Processing.ONGOING, charge_progress=cm.ChargeProgress.STANDBY
        ),
    )
    b.add(
        "PowerDeliveryRes",
        CM,
        lambda: cm.PowerDeliveryRes(header=b.header(), response_code=ResponseCode.OK),
    )
    b.add(
        "PowerDeliveryRes/EVSEStatus",
        CM,
        lambda: cm.PowerDeliveryRes(
            header=b.header(),
            response_code=ResponseCode.OK,
            evse_status=EVSEStatus(notification_max_delay=60, evse_notification=EVSENotification.TERMINATE),
        ),
    )


def _meter_info(full: bool) -> MeterInfo:
    optional: dict[str, Any] = (
        {
            "bpt_discharged_energy_reading_wh": 4_000,
            "capacitive_energy_reading_varh": 0,
            "bpt_inductive_energy_reading_varh": 0,
            "meter_signature": _fixed_bytes(7, 64),
            "meter_status": -1,
            "meter_timestamp": BASE_TIME,
        }
        if full
        else {}
    )
    return MeterInfo(meter_id="METER-0001", charged_energy_reading_wh=12_345, **optional)


def _receipt() -> Receipt:
    return Receipt(
        time_anchor=BASE_TIME,
        energy_costs=DetailedCost(amount=_rn(1234, -2), cost_per_unit=_rn(39, -2)),
        tax_costs=[DetailedTax(tax_rule_id=1, amount=_rn(197, -2))],
    )


def _add_charge_loop(b: _Builder) -> None:
    """DC_ChargeLoop (8.3.4.5.5) in all four DC control modes (8.3.5.5.3-6, 8.3.5.5.7.3-5)."""
    scheduled_req = {
        "ev_target_current": _rn(100),
        "ev_target_voltage": _rn(400),
    }
    bpt_discharge_req = {
        "ev_max_discharge_power": _rn(-11, 3),
        "ev_min_discharge_power": _rn(0),
        "ev_max_discharge_current": _rn(-25),
    }
    dynamic_req = {
        "departure_time": 3600,
        "ev_target_energy_request": _rn(40, 3),
        "ev_max_energy_request": _rn(60, 3),
        "ev_min_energy_request": _rn(-5, 3),
        "ev_max_charge_power": _rn(150, 3),
        "ev_min_charge_power": _rn(0),
        "ev_max_charge_current": _rn(300),
        "ev_max_voltage": _rn(920),
        "ev_min_voltage": _rn(200),
    }
    modes_req: dict[str, Callable[[], dict[str, Any]]] = {
        "Scheduled": lambda: {"scheduled_params": dc.ScheduledDCChargeLoopReqParams(**scheduled_req)},
        "Scheduled_all_optional": lambda: {
            "scheduled_params": dc.ScheduledDCChargeLoopReqParams(
                **scheduled_req,
                ev_target_energy_request=_rn(40, 3),
                ev_max_energy_request=_rn(60, 3),
                ev_min_energy_request=_rn(1, 3),
                ev_max_charge_power=_rn(INT16_MAX, INT8_MAX),
                ev_min_charge_power=_rn(INT16_MIN, INT8_MIN),
                ev_max_charge_current=_rn(300),
                ev_max_voltage=_rn(920),
                ev_min_voltage=_rn(200),
            )
        },
        "BPT_Scheduled": lambda: {
            "bpt_scheduled_params": dc.BPTScheduledDCChargeLoopReqParams(**scheduled_req, **bpt_discharge_req)
        },
        "Dynamic": lambda: {"dynamic_params": dc.DynamicDCChargeLoopReqParams(**dynamic_req)},
        "BPT_Dynamic": lambda: {
            "bpt_dynamic_params": dc.BPTDynamicDCChargeLoopReqParams(
                **dynamic_req,
                **bpt_discharge_req,
                ev_max_v2x_energy_request=_rn(20, 3),
                ev_min_v2x_energy_request=_rn(-20, 3),
            )
        },
    }
    for variant, mode in modes_req.items():
        b.add(
            f"DC_ChargeLoopReq/{variant}",
            DC,
            lambda mode=mode: dc.DCChargeLoopReq(
                header=b.header(),
                meter_info_requested=False,
                ev_present_voltage=_rn(400),
                **mode(),
            ),
        )
    b.add(
        "DC_ChargeLoopReq/BPT_Scheduled_DisplayParameters_MeterInfoRequested",
        DC,
        lambda: dc.DCChargeLoopReq(
            header=b.header(),
            display_parameters=DisplayParameters(
                present_soc=55,
                min_soc=0,
                target_soc=100,
                max_soc=100,
                remaining_time_to_target_soc=1800,
                charging_complete=False,
                battery_energy_capacity=_rn(77, 3),
                inlet_hot=False,
            ),
            meter_info_requested=True,
            ev_present_voltage=_rn(-1, INT8_MIN),
            bpt_scheduled_params=dc.BPTScheduledDCChargeLoopReqParams(**scheduled_req, **bpt_discharge_req),
        ),
    )

    scheduled_res = {
        "evse_maximum_charge_power": _rn(150, 3),
        "evse_minimum_charge_power": _rn(0),
        "evse_maximum_charge_current": _rn(300),
        "evse_maximum_voltage": _rn(1000),
    }
    bpt_discharge_res = {
        "evse_max_discharge_power": _rn(-50, 3),
        "evse_min_discharge_power": _rn(0),
        "evse_max_discharge_current": _rn(-125),
        "evse_min_voltage": _rn(150),
    }
    modes_res: dict[str, Callable[[], dict[str, Any]]] = {
        "Scheduled": lambda: {"scheduled_dc_charge_loop_res": dc.ScheduledDCChargeLoopResParams()},
        "Scheduled_limits": lambda: {
            "scheduled_dc_charge_loop_res": dc.ScheduledDCChargeLoopResParams(**scheduled_res)
        },
        "BPT_Scheduled": lambda: {
            "bpt_scheduled_dc_charge_loop_res": dc.BPTScheduledDCChargeLoopResParams(
                **scheduled_res, **bpt_discharge_res
            )
        },
        "Dynamic": lambda: {
            "dynamic_dc_charge_loop_res": dc.DynamicDCChargeLoopRes(
                departure_time=3600, min_soc=20, target_soc=80, ack_max_delay=30, **scheduled_res
            )
        },
        "BPT_Dynamic": lambda: {
            "bpt_dynamic_dc_charge_loop_res": dc.BPTDynamicDCChargeLoopRes(
                **scheduled_res, **bpt_discharge_res
            )
        },
    }
    for variant, mode in modes_res.items():
        b.add(
            f"DC_ChargeLoopRes/{variant}",
            DC,
            lambda mode=mode: dc.DCChargeLoopRes(
                header=b.header(),
                response_code=ResponseCode.OK,
                evse_present_current=_rn(1005, -1),
                evse_present_voltage=_rn(400),
                evse_power_limit_achieved=False,
                evse_current_limit_achieved=False,
                evse_voltage_limit_achieved=True,
                **mode(),
            ),
        )
    b.add(
        "DC_ChargeLoopRes/BPT_Dynamic_MeterInfo_Receipt_EVSEStatus",
        DC,
        lambda: dc.DCChargeLoopRes(
            header=b.header(),
            response_code=ResponseCode.OK_POWER_TOLERANCE_CONFIRMED,
            meter_info=_meter_info(full=True),
            receipt=_receipt(),
            evse_status=EVSEStatus(
                notification_max_delay=0, evse_notification=EVSENotification.METERING_CONFIRMATION
            ),
            evse_present_current=_rn(-250, -1),
            evse_present_voltage=_rn(400),
            evse_power_limit_achieved=True,
            evse_current_limit_achieved=True,
            evse_voltage_limit_achieved=False,
            bpt_dynamic_dc_charge_loop_res=dc.BPTDynamicDCChargeLoopRes(**scheduled_res, **bpt_discharge_res),
        ),
    )
    b.add(
        "DC_ChargeLoopRes/Scheduled_empty_TaxCosts",
        DC,
        lambda: dc.DCChargeLoopRes(
            header=b.header(),
            response_code=ResponseCode.OK,
            receipt=Receipt(time_anchor=BASE_TIME, tax_costs=[]),
            evse_present_current=_rn(0),
            evse_present_voltage=_rn(0),
            evse_power_limit_achieved=False,
            evse_current_limit_achieved=False,
            evse_voltage_limit_achieved=False,
            scheduled_dc_charge_loop_res=dc.ScheduledDCChargeLoopResParams(),
        ),
    )


def _add_session_end(b: _Builder) -> None:
    """DC_WeldingDetection (8.3.4.5.6), SessionStop (8.3.4.3.10), MeteringConfirmation (8.3.4.3.11)."""
    b.add(
        "DC_WeldingDetectionReq",
        DC,
        lambda: dc.DCWeldingDetectionReq(header=b.header(), ev_processing=Processing.ONGOING),
    )
    b.add(
        "DC_WeldingDetectionRes",
        DC,
        lambda: dc.DCWeldingDetectionRes(
            header=b.header(), response_code=ResponseCode.OK, evse_present_voltage=_rn(12, -1)
        ),
    )
    b.add(
        "SessionStopReq/Terminate",
        CM,
        lambda: cm.SessionStopReq(header=b.header(), charging_session=cm.ChargingSession.TERMINATE),
    )
    b.add(
        "SessionStopReq/Pause_TerminationCode",
        CM,
        lambda: cm.SessionStopReq(
            header=b.header(),
            charging_session=cm.ChargingSession.PAUSE,
            ev_termination_code="USER",
            ev_termination_explanation="Stopped by user",
        ),
    )
    b.add(
        "SessionStopRes",
        CM,
        lambda: cm.SessionStopRes(header=b.header(), response_code=ResponseCode.OK),
    )
    b.add(
        "SessionStopRes/FAILED_SequenceError",
        CM,
        lambda: cm.SessionStopRes(header=b.header(), response_code=ResponseCode.FAILED_SEQUENCE_ERROR),
    )
    b.add(
        "MeteringConfirmationReq/Scheduled",
        CM,
        lambda: cm.MeteringConfirmationReq(
            header=b.header(),
            signed_metering_data=cm.SignedMeteringData(
                id="smd1",
                session_id=SESSION_ID,
                meter_info=_meter_info(full=False),
                scheduled_smart_meter_data=cm.ScheduledSignedMeterData(selected_schedule_tuple_id=1),
            ),
        ),
    )
    b.add(
        "MeteringConfirmationReq/Dynamic_Receipt",
        CM,
        lambda: cm.MeteringConfirmationReq(
            header=b.header(),
            signed_metering_data=cm.SignedMeteringData(
                id="smd2",
                session_id=SESSION_ID,
                meter_info=_meter_info(full=True),
                receipt=_receipt(),
                dynamic_smart_meter_data=cm.DynamicSignedMeterData(),
            ),
        ),
    )
    b.add(
        "MeteringConfirmationRes",
        CM,
        lambda: cm.MeteringConfirmationRes(header=b.header(), response_code=ResponseCode.OK),
    )


def _add_certificate_installation(b: _Builder) -> None:
    """CertificateInstallation (8.3.4.3.9)."""
    b.add(
        "CertificateInstallationReq",
        CM,
        lambda: cm.CertificateInstallationReq(
            header=b.header(),
            oem_prov_cert_chain=cm.SignedCertificateChain(
                id="oem1",
                certificate=_fixed_bytes(8, 500),
                sub_certificates=cm.SubCertificates(certificates=[_fixed_bytes(9, 400)]),
            ),
            root_cert_id_list=RootCertificateIDList(
                root_cert_ids=[
                    X509IssuerSerial(x509_issuer_name="CN=V2G Root CA,O=Example", x509_serial_number=12345678)
                ]
            ),
            max_contract_cert_chains=3,
            prioritized_emaids=cm.EMAIDList(emaids=["DE8AA1234567890"]),
        ),
    )
    b.add(
        "CertificateInstallationRes",
        CM,
        lambda: cm.CertificateInstallationRes(
            header=b.header(),
            response_code=ResponseCode.OK,
            evse_processing=Processing.FINISHED,
            cps_certificate_chain=cm.CertificateChain(
                certificate=_fixed_bytes(10, 450),
                sub_certificates=cm.SubCertificates(certificates=[_fixed_bytes(11, 400)]),
            ),
            signed_installation_data=cm.SignedInstallationData(
                id="sid1",
                contract_cert_chain=cm.ContractCertificateChain(
                    certificate=_fixed_bytes(12, 480),
                    sub_certificates=cm.SubCertificates(certificates=[_fixed_bytes(13, 420)]),
                ),
                ecdh_curve=cm.ECDHCurve.secp_521,
                dh_public_key=_fixed_bytes(14, 133),
                secp521_encrypted_private_key=_fixed_bytes(15, 94),
            ),
            remaining_contract_cert_chains=0,
        ),
    )


def message_specs() -> list[tuple[str, str, Callable[[], BaseModel]]]:
    """All corpus entries as (name, namespace, model factory), in a fixed order."""
    b = _Builder()
    for add in (
        _add_handshake,
        _add_session_and_auth,
        _add_services,
        _add_charge_parameter_discovery,
        _add_schedule_exchange,
        _add_dc_pre_charging,
        _add_power_delivery,
        _add_charge_loop,
        _add_session_end,
        _add_certificate_installation,
    ):
        add(b)
    return b.specs


def start_codec() -> ExificientEXICodec:
    """Start the peer's EXIficient codec (one JVM) and install it in their EXI singleton."""
    shared_settings.update({SettingKey.MESSAGE_LOG_JSON: False, SettingKey.MESSAGE_LOG_EXI: False})
    codec = ExificientEXICodec()
    EXI().set_exi_codec(codec)
    return codec


def _sent_json(message: BaseModel) -> Any:
    """The JSON document ``EXI().to_exi`` hands to the codec for a whole message."""
    body = message.dict(by_alias=True, exclude_none=True)
    return json.loads(json.dumps({str(message): body}, cls=CustomJSONEncoder))


def _differences(sent: Any, decoded: Any, path: str = "") -> list[str]:
    """Paths where the codec's decode differs from the JSON the peer model produced.

    An empty list the model sent for an optional repeated element counts as equal
    to its absence (both mean zero occurrences).
    """
    if isinstance(sent, dict) and isinstance(decoded, dict):
        found: list[str] = []
        for key in sorted(set(sent) | set(decoded)):
            where = f"{path}/{key}"
            if key not in decoded:
                if sent[key] != []:
                    found.append(f"{where}: sent, lost in decode")
            elif key not in sent:
                found.append(f"{where}: not sent, appears in decode")
            else:
                found.extend(_differences(sent[key], decoded[key], where))
        return found
    if isinstance(sent, list) and isinstance(decoded, list) and len(sent) == len(decoded):
        return [
            d
            for i, (s, r) in enumerate(zip(sent, decoded, strict=True))
            for d in _differences(s, r, f"{path}[{i}]")
        ]
    if sent == decoded:
        return []
    return [f"{path}: sent {json.dumps(sent)[:80]} decoded {json.dumps(decoded)[:80]}"]


def build_corpus(codec: ExificientEXICodec) -> dict[str, list[dict[str, Any]]]:
    """Encode every spec with the peer's ``EXI().to_exi``; decode with their codec.

    Returns ``{"corpus": [...], "skipped": [...], "lossy": [...]}``. A skipped entry
    carries the stage ("model", "encode" or "decode") and the peer's error text. A
    lossy entry names a corpus entry whose decode differs from what the peer's model
    sent (the codec silently dropped or altered content); such entries stay in the
    corpus, because their bytes are still what the peer puts on the wire.
    """
    corpus: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    lossy: list[dict[str, Any]] = []
    exi = EXI()
    for name, namespace, build in message_specs():
        stage = "model"
        try:
            message = build()
            stage = "encode"
            data = exi.to_exi(message, namespace)
            stage = "decode"
            decoded = json.loads(codec.decode(data, namespace))
        except Exception as exc:  # peer errors of any type are findings, not crashes
            reason = " ".join(str(exc).split())
            skipped.append({"name": name, "namespace": namespace, "stage": stage, "reason": reason[:600]})
            continue
        entry: dict[str, Any] = {"name": name, "namespace": namespace, "hex": data.hex(), "json": decoded}
        if name in SCHEMA_DEVIATIONS:
            entry["schema_deviation"] = SCHEMA_DEVIATIONS[name]
        corpus.append(entry)
        differences = _differences(_sent_json(message), decoded)
        if differences:
            lossy.append({"name": name, "differences": differences})
    return {"corpus": corpus, "skipped": skipped, "lossy": lossy}
