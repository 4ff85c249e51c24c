"""SLAC timers and counters: ISO 15118-3 Table A.1 defaults, every one configurable.

Names are the standard's. Durations are seconds. Where Table A.1 gives a range, the default
is stated next to it. Settings that are not in Table A.1 (host <-> own modem turnaround, the
attenuation threshold) are kept apart and say where their defaults come from.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from v2gtool.errors import ConfigError

# Settings the EVSE sends in one octet each of CM_SLAC_PARM.CNF (ISO 15118-3 Annex A): NUM_SOUNDS,
# and TIME_OUT in units of 100 ms (Table A.1 TT_EVSE_match_MNBC). Each is a whole number of its
# unit, so the window the EVSE keeps is the one it announces: (unit, lowest, highest, why).
_OCTET_LIMITS = {"C_EV_match_MNBC": (1, 1, 255, "NUM_SOUNDS is one octet and at least one sound is needed"),
                 "TT_EVSE_match_MNBC": (0.1, 0.1, 25.5, "TIME_OUT is one octet in units of 100 ms")}


@dataclass(frozen=True)
class SlacTimers:
    """Table A.1 of ISO 15118-3 (and the two host-side settings below it)."""

    #: EVSE: from the 5 % duty cycle until CM_SLAC_PARM.REQ must have arrived (20 s .. 50 s).
    TT_EVSE_SLAC_init: float = 50.0
    #: Both: the largest gap between two messages of one matching step (400 ms).
    TT_match_sequence: float = 0.4
    #: Both: how long a sender waits for the response to a request (200 ms).
    TT_match_response: float = 0.2
    #: EVSE: collection window for M-Sounds after CM_START_ATTEN_CHAR.IND (600 ms).
    TT_EVSE_match_MNBC: float = 0.6
    #: EV: from the first CM_START_ATTEN_CHAR.IND until all CM_ATTEN_CHAR.IND are in (1200 ms).
    TT_EV_atten_results: float = 1.2
    #: EVSE: after CM_ATTEN_CHAR.RSP, wait for CM_VALIDATE.REQ or CM_SLAC_MATCH.REQ (10 s).
    TT_EVSE_match_session: float = 10.0
    #: Both: after CM_SLAC_MATCH, until the logical network is joined (link ready) (12 s).
    TT_match_join: float = 12.0
    #: EVSE: how long the control pilot stays in state E/F before a new 5 % attempt (>= 4 s).
    T_step_EF: float = 4.0
    #: EV: spacing of CM_START_ATTEN_CHAR.IND and CM_MNBC_SOUND.IND (20 ms .. 50 ms).
    TP_EV_batch_msg_interval: float = 0.04
    #: EV: retransmissions of a request that got no response (2).
    C_EV_match_retry: int = 2
    #: EV: number of CM_START_ATTEN_CHAR.IND sent (3).
    C_EV_start_atten_char_inds: int = 3
    #: EV: number of M-Sounds (10); the EVSE's CM_SLAC_PARM.CNF NUM_SOUNDS takes precedence.
    C_EV_match_MNBC: int = 10
    #: EVSE: new matching attempts through E/F and back to 5 % after a failure ([V2G3-M06-07]) (2).
    C_sequ_retry: int = 2
    #: EV, CM_VALIDATE: how long each state of a B-C-B toggle lasts (200 ms .. 400 ms).
    TP_EV_vald_state_duration: float = 0.2
    #: EVSE, CM_VALIDATE: the longest toggle window it observes (3500 ms).
    TT_EVSE_vald_toggle: float = 3.5
    #: EV, CM_VALIDATE: most B-C-B toggles the EV makes (1 .. 3); it picks 1..this at random.
    C_EV_vald_nb_toggles: int = 3
    # -- not in Table A.1 --
    #: Host -> own modem CM_SET_KEY.REQ / VS_* turnaround. Modem firmware answers in a few ms;
    #: 1 s is the budget open-plc-utils allows.
    T_modem_response: float = 1.0
    #: How often the host asks its modem whether the link is up while waiting for TT_match_join.
    TP_link_status_poll: float = 0.1
    #: EV: highest average attenuation (dB) accepted. The standard leaves the decision to the EV;
    #: 40 dB is Qualcomm's (open-plc-utils) default, not a normative limit.
    attenuation_threshold_db: float = 40.0

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any], where: str = "[slac]") -> SlacTimers:
        """Build from a config table; unknown names and bad values are errors naming *where* and the key."""
        kwargs: dict[str, Any] = {}
        for name, value in values.items():
            try:
                kwargs[name] = cls.setting(name, value)
            except KeyError:
                raise ConfigError(f"{where}: unknown SLAC timer {name!r}") from None
            except ValueError as exc:
                raise ConfigError(f"{where}: {name} = {value!r} {exc}") from None
        return dataclasses.replace(cls(), **kwargs)

    @classmethod
    def setting(cls, name: str, value: Any) -> int | float:
        """*value* (a number or its text) of the setting *name*, as the field's type: KeyError for a
        name that is none, ValueError saying what is wrong with the value ("is not a number", ...),
        for the caller to put after what the user wrote."""
        field = {f.name: f for f in dataclasses.fields(cls)}[name]
        if isinstance(value, bool):
            raise ValueError("is not a number")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError("is not a number") from None
        if not math.isfinite(number) or number < 0:
            raise ValueError("must be a finite number, not negative")
        converted: int | float = number
        if field.type == "int":
            if not number.is_integer():
                raise ValueError(f"must be a whole number: {name} is a count")
            converted = int(number)
        if name in _OCTET_LIMITS:
            unit, low, high, why = _OCTET_LIMITS[name]
            if not low <= converted <= high:
                raise ValueError(f"is outside {low} .. {high} ({why})")
            if not math.isclose(converted / unit, round(converted / unit), abs_tol=1e-9):
                raise ValueError(f"is not a multiple of {unit:g} ({why})")
        return converted
