"""Why a matching failed, in a field engineer's terms, and the exit code that says so.

Each :class:`Diagnosis` names the step of ISO 15118-3 that did not complete, what to check on
site, and a distinct process exit code so scripts can tell the failures apart.
"""

from __future__ import annotations

from enum import Enum

from v2gtool.errors import V2GToolError


class Diagnosis(Enum):
    """A failed matching: ``(exit code, what happened, what to check)``."""

    NO_SLAC_PARM_REQ = (
        10,
        "no CM_SLAC_PARM.REQ seen within TT_EVSE_SLAC_init",
        "check the CP state (EV connected, state B) and that the EVSE shows the 5 % duty cycle",
    )
    NO_SLAC_PARM_CNF = (
        11,
        "no EVSE answered CM_SLAC_PARM.REQ",
        "check the 5 % duty cycle on the CP, the PLC coupling, and that the EVSE runs SLAC",
    )
    ATTENUATION_TOO_HIGH = (
        12,
        "attenuation above the threshold",
        "check the PE connection and the cable shield bonding (PLC couples between CP and PE)",
    )
    SET_KEY_NOT_CONFIRMED = (
        13,
        "CM_SET_KEY.REQ not confirmed by the local modem",
        "modem/driver: check `qca7000` in the kernel log (dmesg) and the SPI/UART link to the modem",
    )
    PEER_CHOSE_OTHER = (
        14,
        "the EV sounded but never sent CM_SLAC_MATCH.REQ: it chose another charger",
        "cross-talk from an adjacent charger: check cable routing and the attenuation of both",
    )
    NO_ATTEN_PROFILE = (
        15,
        "the EV sounded but the modem reported no CM_ATTEN_PROFILE.IND",
        "the modem must run EVSE firmware that reports attenuation (QCA7000/7005, not AR7420)",
    )
    NO_ATTEN_CHAR_IND = (
        16,
        "no CM_ATTEN_CHAR.IND within TT_EV_atten_results",
        "the EVSE did not receive the M-Sounds: check the PLC coupling and the EVSE modem",
    )
    NO_ATTEN_CHAR_RSP = (
        17,
        "no CM_ATTEN_CHAR.RSP to CM_ATTEN_CHAR.IND",
        "the EV stopped matching after sounding: check the EV's SLAC log",
    )
    NO_SLAC_MATCH_CNF = (
        18,
        "no CM_SLAC_MATCH.CNF to CM_SLAC_MATCH.REQ",
        "the chosen EVSE stopped answering: check its SLAC log and modem",
    )
    LINK_NOT_READY = (
        19,
        "keys set but the link did not come up within TT_match_join",
        "the modems did not join one network: check both NMKs/NIDs and the PLC signal",
    )
    VALIDATE_FAILED = (
        20,
        "CM_VALIDATE failed",
        "the EVSE counted a different number of BC toggles: check the CP wiring",
    )
    NO_START_ATTEN_CHAR = (
        21,
        "CM_SLAC_PARM.CNF sent but no sounding followed within TT_match_sequence",
        "the EV did not accept our parameters or chose another charger: check the EV's SLAC log",
    )

    def __init__(self, exit_code: int, summary: str, advice: str) -> None:
        self.exit_code = exit_code
        self.summary = summary
        self.advice = advice

    @property
    def is_timeout(self) -> bool:
        """The peer stayed silent past the ISO 15118-3 Table A.1 timer of the step (TT_*, with the
        retries the table allows): a chain of steps (``session run``) exits with
        :attr:`~v2gtool.exit_codes.ExitCode.TIMEOUT` for it, where ``evse-slac`` keeps the diagnosis'
        own code. A peer that answered elsewhere, a refused link or a local modem is no timeout."""
        return self in _PEER_SILENT


#: The diagnoses of a peer that did not answer in time (:attr:`Diagnosis.is_timeout`).
_PEER_SILENT = frozenset({
    Diagnosis.NO_SLAC_PARM_REQ,  # TT_EVSE_SLAC_init
    Diagnosis.NO_SLAC_PARM_CNF,  # TT_match_response, C_EV_match_retry
    Diagnosis.NO_START_ATTEN_CHAR,  # TT_match_sequence
    Diagnosis.NO_ATTEN_CHAR_IND,  # TT_EV_atten_results
    Diagnosis.NO_ATTEN_CHAR_RSP,  # TT_match_response, C_EV_match_retry
    Diagnosis.NO_SLAC_MATCH_CNF,  # TT_match_response, C_EV_match_retry
})


def attenuation_too_high(average_db: float, threshold_db: float, evse_mac: str) -> str | None:
    """The detail of :attr:`Diagnosis.ATTENUATION_TOO_HIGH` when *average_db*, the average over the
    groups of *evse_mac*'s attenuation profile, is above *threshold_db*; else None. ISO 15118-3 leaves
    the choice to the EV (the lowest attenuation); the threshold is Qualcomm's (open-plc-utils) setting."""
    if average_db > threshold_db:
        return f"{average_db:.1f} dB > {threshold_db:g} dB at {evse_mac}"
    return None


class SlacFailed(V2GToolError):
    """A matching that ended without a link; ``exit_code`` is the diagnosis' code."""

    def __init__(self, diagnosis: Diagnosis, detail: str = "") -> None:
        self.diagnosis = diagnosis
        self.exit_code = diagnosis.exit_code
        extra = f" ({detail})" if detail else ""
        super().__init__(f"SLAC failed: {diagnosis.summary}{extra}; {diagnosis.advice}")
