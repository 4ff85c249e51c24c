"""The one SLAC state table, shared by both roles (ISO 15118-3 Annex A).

Like h11's ``_state.py``: the machines in :mod:`v2gtool.slac.evse` and :mod:`v2gtool.slac.ev`
decide *what to send*; only this table decides *which state follows*, and which timer of Table
A.1 guards each state. A transition that is not in the table is a programming error.
"""

from __future__ import annotations

from enum import Enum


class Role(Enum):
    EVSE = "evse"
    EV = "ev"


class SlacState(Enum):
    IDLE = "IDLE"
    #: Host asked its own modem to take the NMK/NID (CM_SET_KEY.REQ), waiting for .CNF.
    SETTING_KEY = "SETTING_KEY"
    #: EVSE: 5 % duty cycle on, waiting for the EV's CM_SLAC_PARM.REQ.
    WAIT_SLAC_PARM_REQ = "WAIT_SLAC_PARM_REQ"
    #: EV: CM_SLAC_PARM.REQ sent, collecting CM_SLAC_PARM.CNF from every EVSE that hears it.
    WAIT_SLAC_PARM_CNF = "WAIT_SLAC_PARM_CNF"
    #: EVSE: CM_SLAC_PARM.CNF sent, waiting for CM_START_ATTEN_CHAR.IND.
    WAIT_START_ATTEN_CHAR = "WAIT_START_ATTEN_CHAR"
    #: EV: sending CM_START_ATTEN_CHAR.IND and M-Sounds. EVSE: collecting CM_ATTEN_PROFILE.IND.
    SOUNDING = "SOUNDING"
    #: EV: sounding done, collecting CM_ATTEN_CHAR.IND.
    WAIT_ATTEN_CHAR_IND = "WAIT_ATTEN_CHAR_IND"
    #: EVSE: CM_ATTEN_CHAR.IND sent, waiting for CM_ATTEN_CHAR.RSP.
    WAIT_ATTEN_CHAR_RSP = "WAIT_ATTEN_CHAR_RSP"
    #: EV: CM_VALIDATE.REQ sent to the chosen EVSE.
    WAIT_VALIDATE_CNF = "WAIT_VALIDATE_CNF"
    #: EVSE: waiting for CM_VALIDATE.REQ or CM_SLAC_MATCH.REQ.
    WAIT_SLAC_MATCH_REQ = "WAIT_SLAC_MATCH_REQ"
    #: EVSE: CM_VALIDATE step 2, counting the EV's B-C-B toggles on the control pilot.
    COUNTING_TOGGLES = "COUNTING_TOGGLES"
    #: EV: CM_SLAC_MATCH.REQ sent to the chosen EVSE.
    WAIT_SLAC_MATCH_CNF = "WAIT_SLAC_MATCH_CNF"
    #: Both: keys set, polling the own modem until the AVLN is joined.
    WAIT_LINK_READY = "WAIT_LINK_READY"
    #: EVSE: control pilot in state E/F for T_step_EF before a new 5 % attempt ([V2G3-M06-07]).
    EF_PAUSE = "EF_PAUSE"
    MATCHED = "MATCHED"
    FAILED = "FAILED"


class Trigger(Enum):
    """What moves a machine: a received MME, a timer, or a decision of the role."""

    START = "start"
    KEY_CONFIRMED = "CM_SET_KEY.CNF"
    SLAC_PARM_REQ = "CM_SLAC_PARM.REQ"
    SLAC_PARM_CNF_COLLECTED = "CM_SLAC_PARM.CNF collected"
    START_ATTEN_CHAR = "CM_START_ATTEN_CHAR.IND"
    SOUNDS_SENT = "sounds sent"
    SOUNDS_COLLECTED = "sounds collected"
    ATTEN_CHAR_IND_COLLECTED = "CM_ATTEN_CHAR.IND collected"
    ATTEN_CHAR_RSP = "CM_ATTEN_CHAR.RSP"
    VALIDATE_START = "validate"
    VALIDATE_DONE = "CM_VALIDATE.CNF"
    SLAC_MATCH_REQ = "CM_SLAC_MATCH.REQ"
    SLAC_MATCH_CNF = "CM_SLAC_MATCH.CNF"
    LINK_UP = "link up"
    EF_DONE = "T_step_EF elapsed"
    FAIL = "fail"
    RETRY_SEQUENCE = "E/F retry"


S = SlacState
T = Trigger

#: TRANSITIONS[role][state][trigger] -> next state.
TRANSITIONS: dict[Role, dict[SlacState, dict[Trigger, SlacState]]] = {
    Role.EVSE: {
        S.IDLE: {T.START: S.SETTING_KEY},
        S.SETTING_KEY: {T.KEY_CONFIRMED: S.WAIT_SLAC_PARM_REQ, T.FAIL: S.FAILED},
        S.WAIT_SLAC_PARM_REQ: {
            T.SLAC_PARM_REQ: S.WAIT_START_ATTEN_CHAR,
            T.RETRY_SEQUENCE: S.EF_PAUSE,
            T.FAIL: S.FAILED,
        },
        S.WAIT_START_ATTEN_CHAR: {
            T.START_ATTEN_CHAR: S.SOUNDING,
            T.RETRY_SEQUENCE: S.EF_PAUSE,
            T.FAIL: S.FAILED,
        },
        S.SOUNDING: {
            T.SOUNDS_COLLECTED: S.WAIT_ATTEN_CHAR_RSP,
            T.RETRY_SEQUENCE: S.EF_PAUSE,
            T.FAIL: S.FAILED,
        },
        S.WAIT_ATTEN_CHAR_RSP: {
            T.ATTEN_CHAR_RSP: S.WAIT_SLAC_MATCH_REQ,
            T.RETRY_SEQUENCE: S.EF_PAUSE,
            T.FAIL: S.FAILED,
        },
        S.WAIT_SLAC_MATCH_REQ: {
            T.SLAC_MATCH_REQ: S.WAIT_LINK_READY,
            T.VALIDATE_START: S.COUNTING_TOGGLES,
            T.RETRY_SEQUENCE: S.EF_PAUSE,
            T.FAIL: S.FAILED,
        },
        S.COUNTING_TOGGLES: {T.VALIDATE_DONE: S.WAIT_SLAC_MATCH_REQ},
        S.WAIT_LINK_READY: {T.LINK_UP: S.MATCHED, T.RETRY_SEQUENCE: S.EF_PAUSE, T.FAIL: S.FAILED},
        S.EF_PAUSE: {T.EF_DONE: S.WAIT_SLAC_PARM_REQ},
        S.MATCHED: {},
        S.FAILED: {},
    },
    Role.EV: {
        S.IDLE: {T.START: S.WAIT_SLAC_PARM_CNF},
        S.WAIT_SLAC_PARM_CNF: {T.SLAC_PARM_CNF_COLLECTED: S.SOUNDING, T.FAIL: S.FAILED},
        S.SOUNDING: {T.SOUNDS_SENT: S.WAIT_ATTEN_CHAR_IND, T.FAIL: S.FAILED},
        S.WAIT_ATTEN_CHAR_IND: {
            T.ATTEN_CHAR_IND_COLLECTED: S.WAIT_SLAC_MATCH_CNF,
            T.VALIDATE_START: S.WAIT_VALIDATE_CNF,
            T.FAIL: S.FAILED,
        },
        S.WAIT_VALIDATE_CNF: {
            T.VALIDATE_DONE: S.WAIT_SLAC_MATCH_CNF,
            # toggles not confirmed: validate the next EVSE in order of attenuation
            T.VALIDATE_START: S.WAIT_VALIDATE_CNF,
            T.FAIL: S.FAILED,
        },
        S.WAIT_SLAC_MATCH_CNF: {T.SLAC_MATCH_CNF: S.SETTING_KEY, T.FAIL: S.FAILED},
        S.SETTING_KEY: {T.KEY_CONFIRMED: S.WAIT_LINK_READY, T.FAIL: S.FAILED},
        S.WAIT_LINK_READY: {T.LINK_UP: S.MATCHED, T.FAIL: S.FAILED},
        S.MATCHED: {},
        S.FAILED: {},
    },
}

#: The Table A.1 timer (a :class:`~v2gtool.slac.timers.SlacTimers` field) armed on entering a
#: state. The EV's SOUNDING paces itself with TP_EV_batch_msg_interval; its TT_EV_atten_results
#: runs from the first CM_START_ATTEN_CHAR.IND through WAIT_ATTEN_CHAR_IND.
STATE_TIMER: dict[Role, dict[SlacState, str]] = {
    Role.EVSE: {
        S.SETTING_KEY: "T_modem_response",
        S.WAIT_SLAC_PARM_REQ: "TT_EVSE_SLAC_init",
        S.WAIT_START_ATTEN_CHAR: "TT_match_sequence",
        S.SOUNDING: "TT_EVSE_match_MNBC",
        S.WAIT_ATTEN_CHAR_RSP: "TT_match_response",
        S.WAIT_SLAC_MATCH_REQ: "TT_EVSE_match_session",
        S.COUNTING_TOGGLES: "TT_EVSE_vald_toggle",
        S.WAIT_LINK_READY: "TT_match_join",
        S.EF_PAUSE: "T_step_EF",
    },
    Role.EV: {
        S.WAIT_SLAC_PARM_CNF: "TT_match_response",
        S.SOUNDING: "TP_EV_batch_msg_interval",
        S.WAIT_ATTEN_CHAR_IND: "TT_EV_atten_results",
        S.WAIT_VALIDATE_CNF: "TT_match_response",
        S.WAIT_SLAC_MATCH_CNF: "TT_match_response",
        S.SETTING_KEY: "T_modem_response",
        S.WAIT_LINK_READY: "TT_match_join",
    },
}

TERMINAL_STATES = frozenset({S.MATCHED, S.FAILED})

#: What a role waits for in each state, in the words of the MMEs: the status line of a command that
#: runs SLAC on a real link (``evse-slac --iface``, ``session run --role``).
WAITING_FOR: dict[Role, dict[SlacState, str]] = {
    Role.EVSE: {
        S.SETTING_KEY: "setting the NMK in the own modem (CM_SET_KEY.CNF)",
        S.WAIT_SLAC_PARM_REQ: "waiting for the EV's CM_SLAC_PARM.REQ",
        S.WAIT_START_ATTEN_CHAR: "waiting for the EV's CM_START_ATTEN_CHAR.IND",
        S.SOUNDING: "collecting the EV's sounds (CM_ATTEN_PROFILE.IND)",
        S.WAIT_ATTEN_CHAR_RSP: "waiting for the EV's CM_ATTEN_CHAR.RSP",
        S.WAIT_SLAC_MATCH_REQ: "waiting for the EV's match (CM_VALIDATE.REQ or CM_SLAC_MATCH.REQ)",
        S.COUNTING_TOGGLES: "counting the EV's B-C-B toggles on the control pilot",
        S.WAIT_LINK_READY: "waiting for the own modem to join the EV's AVLN",
        S.EF_PAUSE: "control pilot in state E/F before a new attempt (T_step_EF)",
    },
    Role.EV: {
        S.WAIT_SLAC_PARM_CNF: "waiting for the chargers' CM_SLAC_PARM.CNF",
        S.SOUNDING: "sounding (CM_START_ATTEN_CHAR.IND, CM_MNBC_SOUND.IND)",
        S.WAIT_ATTEN_CHAR_IND: "waiting for the chargers' CM_ATTEN_CHAR.IND",
        S.WAIT_VALIDATE_CNF: "waiting for the charger's CM_VALIDATE.CNF",
        S.WAIT_SLAC_MATCH_CNF: "waiting for the charger's CM_SLAC_MATCH.CNF",
        S.SETTING_KEY: "setting the NMK in the own modem (CM_SET_KEY.CNF)",
        S.WAIT_LINK_READY: "waiting for the own modem to join the charger's AVLN",
    },
}


class IllegalTransition(RuntimeError):
    """A machine asked for a transition the table does not allow (a bug, not bad input)."""


def next_state(role: Role, state: SlacState, trigger: Trigger) -> SlacState:
    """The state that *trigger* leads to from *state* for *role*, per :data:`TRANSITIONS`."""
    try:
        return TRANSITIONS[role][state][trigger]
    except KeyError:
        raise IllegalTransition(
            f"{role.value}: no transition from {state.value} on {trigger.value}"
        ) from None
