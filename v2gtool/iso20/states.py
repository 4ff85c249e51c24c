"""The ISO 15118-20 DC message sequence as one state table, shared by the SECC and the EVCC.

Like h11's ``_state.py``: the role never changes the rules. A state names what the SECC waits for;
:data:`TRANSITIONS` maps each state and request key (the request name, and for PowerDelivery its
ChargeProgress) to the next state. The SECC answers a request that is not in the table for its state
with FAILED_SequenceError (ISO 15118-20 [V2G20-...] "sequence error"); the EVCC may only send what the
table allows, so both sides stay in step. SessionStop may end the session from any state after
SessionSetup (ISO 15118-20 8.4.2, "SessionStopReq at any time").

A schedule renegotiation (ChargeProgress ScheduleRenegotiation, 8.3.4.3.8.2) leaves the loop for a
new ScheduleExchange and comes back with PowerDelivery Start; the contactors stay closed. A service
renegotiation (SessionStop with ChargingSession ServiceRenegotiation, after the SECC's EVSENotification
ServiceRenegotiation) keeps the session and goes back to ServiceDiscovery: the EV selects a service
again and the energy transfer starts anew, cable check and precharge included.
"""

from __future__ import annotations

import enum


class State(enum.Enum):
    """What the SECC waits for next."""

    SUPPORTED_APP_PROTOCOL = "supportedAppProtocol"
    SESSION_SETUP = "SessionSetup"
    AUTHORIZATION_SETUP = "AuthorizationSetup"
    AUTHORIZATION = "Authorization"
    SERVICE_DISCOVERY = "ServiceDiscovery"
    SERVICE_DETAIL_OR_SELECTION = "ServiceDetail/ServiceSelection"
    CHARGE_PARAMETER_DISCOVERY = "DC_ChargeParameterDiscovery"
    SCHEDULE_EXCHANGE = "ScheduleExchange"
    RENEGOTIATION = "ScheduleExchange (renegotiation)"
    RENEGOTIATED = "PowerDelivery (renegotiated)"
    CABLE_CHECK = "DC_CableCheck"
    PRECHARGE = "DC_PreCharge"
    POWER_DELIVERY = "PowerDelivery"  # in Standby: the EV paused energy transfer
    CHARGE_LOOP = "DC_ChargeLoop"
    WELDING_DETECTION = "DC_WeldingDetection"
    ENDED = "ended"


S = State
TRANSITIONS: dict[State, dict[str, State]] = {
    S.SUPPORTED_APP_PROTOCOL: {"supportedAppProtocolReq": S.SESSION_SETUP},
    S.SESSION_SETUP: {"SessionSetupReq": S.AUTHORIZATION_SETUP},
    S.AUTHORIZATION_SETUP: {"AuthorizationSetupReq": S.AUTHORIZATION},
    # Authorization and ScheduleExchange, cable check and precharge repeat while EVSEProcessing is
    # Ongoing: the engines stay in the same state until the response says Finished.
    S.AUTHORIZATION: {"AuthorizationReq": S.SERVICE_DISCOVERY},
    S.SERVICE_DISCOVERY: {"ServiceDiscoveryReq": S.SERVICE_DETAIL_OR_SELECTION},
    S.SERVICE_DETAIL_OR_SELECTION: {
        "ServiceDetailReq": S.SERVICE_DETAIL_OR_SELECTION,
        "ServiceSelectionReq": S.CHARGE_PARAMETER_DISCOVERY,
    },
    S.CHARGE_PARAMETER_DISCOVERY: {"DC_ChargeParameterDiscoveryReq": S.SCHEDULE_EXCHANGE},
    S.SCHEDULE_EXCHANGE: {"ScheduleExchangeReq": S.CABLE_CHECK},
    S.CABLE_CHECK: {"DC_CableCheckReq": S.PRECHARGE},
    S.PRECHARGE: {"DC_PreChargeReq": S.PRECHARGE, "PowerDeliveryReq:Start": S.CHARGE_LOOP},
    S.CHARGE_LOOP: {
        "DC_ChargeLoopReq": S.CHARGE_LOOP,
        "MeteringConfirmationReq": S.CHARGE_LOOP,
        "PowerDeliveryReq:Stop": S.WELDING_DETECTION,
        "PowerDeliveryReq:Standby": S.POWER_DELIVERY,
        "PowerDeliveryReq:ScheduleRenegotiation": S.RENEGOTIATION,
    },
    S.RENEGOTIATION: {"ScheduleExchangeReq": S.RENEGOTIATED},
    S.RENEGOTIATED: {"PowerDeliveryReq:Start": S.CHARGE_LOOP, "PowerDeliveryReq:Stop": S.WELDING_DETECTION},
    S.POWER_DELIVERY: {"PowerDeliveryReq:Start": S.CHARGE_LOOP, "PowerDeliveryReq:Stop": S.WELDING_DETECTION},
    S.WELDING_DETECTION: {"DC_WeldingDetectionReq": S.WELDING_DETECTION},
    S.ENDED: {},
}
# Requests that keep the state while the responder reports EVSEProcessing=Ongoing (or, for
# PowerDelivery Start, while the EV reports EVProcessing=Ongoing).
ONGOING_REQUESTS = frozenset({"AuthorizationReq", "ScheduleExchangeReq", "DC_CableCheckReq", "PowerDeliveryReq:Start"})
SESSION_STOP = "SessionStopReq"
SERVICE_RENEGOTIATION = "SessionStopReq:ServiceRenegotiation"
_BEFORE_SESSION = (S.SUPPORTED_APP_PROTOCOL, S.SESSION_SETUP, S.ENDED)
# A service can be renegotiated once one was offered: from ServiceDiscovery on.
_BEFORE_SERVICES = (*_BEFORE_SESSION, S.AUTHORIZATION_SETUP, S.AUTHORIZATION)


def request_key(name: str, qualifier: str | None = None) -> str:
    """The table key of a request: its name, plus ``:ChargeProgress`` for PowerDeliveryReq, and
    :data:`SERVICE_RENEGOTIATION` for a SessionStopReq whose ChargingSession is ServiceRenegotiation."""
    if name == "PowerDeliveryReq" and qualifier:
        return f"{name}:{qualifier}"
    return SERVICE_RENEGOTIATION if name == SESSION_STOP and qualifier == "ServiceRenegotiation" else name


def next_state(state: State, key: str, ongoing: bool = False) -> State | None:
    """The state after a successful request, or None when the table does not allow it here."""
    if key == SESSION_STOP:
        return None if state in _BEFORE_SESSION else S.ENDED
    if key == SERVICE_RENEGOTIATION:
        return None if state in _BEFORE_SERVICES else S.SERVICE_DISCOVERY
    target = TRANSITIONS[state].get(key)
    if target is not None and ongoing and key in ONGOING_REQUESTS:
        return state
    return target


def allowed(state: State) -> list[str]:
    """The request keys the table allows in *state* (for error messages and the EVCC)."""
    keys = list(TRANSITIONS[state])
    if state not in _BEFORE_SESSION:
        keys.append(SESSION_STOP)
    if state not in _BEFORE_SERVICES:
        keys.append(SERVICE_RENEGOTIATION)
    return keys
