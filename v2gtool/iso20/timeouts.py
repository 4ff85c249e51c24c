"""ISO 15118-20 timers (clause 8.8.3 and 8.8.4; values as josev and libiso15118 implement them).

The message timeout is how long the EVCC waits for the response to one request; the SECC waits at
most V2G_SECC_Sequence_Timeout for the next request. EVSEProcessing=Ongoing loops are bounded by the
ongoing timeout; cable check and precharge have phase timeouts of their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# V2G_EVCC_Msg_Timeout per request, seconds.
DEFAULT_MESSAGE_TIMEOUT = 2.0
MESSAGE_TIMEOUTS: dict[str, float] = {
    "supportedAppProtocolReq": 2.0,
    "ServiceDetailReq": 5.0,
    "CertificateInstallationReq": 5.0,
    "DC_ChargeLoopReq": 0.5,
    "AC_ChargeLoopReq": 0.5,
}


@dataclass(frozen=True)
class Timeouts:
    """Every -20 timeout; configurable because real peers (and tests) need other values."""

    communication_setup: float = 20.0  # V2G_EVCC_CommunicationSetup_Timeout: SDP .. SessionSetupRes
    sequence: float = 60.0  # V2G_SECC_Sequence_Timeout
    ongoing: float = 60.0  # V2G_EVCC_Ongoing_Timeout (EVSEProcessing=Ongoing loops)
    cable_check: float = 40.0  # V2G_EVCC_CableCheck_Timeout
    precharge: float = 10.0  # V2G_EVCC_PreCharge_Timeout
    message: dict[str, float] = field(default_factory=lambda: dict(MESSAGE_TIMEOUTS))
    message_scale: float = 1.0  # >1 to tolerate slow peers without changing the table

    def for_request(self, name: str) -> float:
        return self.message.get(name, DEFAULT_MESSAGE_TIMEOUT) * self.message_scale
