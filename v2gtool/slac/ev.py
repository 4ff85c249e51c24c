"""The EV side of SLAC (ISO 15118-3, Annex A), sans-IO.

Sequence: broadcast CM_SLAC_PARM.REQ with a fresh RunID and collect every CM_SLAC_PARM.CNF for
TT_match_response (several EVSEs answer when a neighbour's cable couples: cross-talk), retry up
to C_EV_match_retry; send C_EV_start_atten_char_inds CM_START_ATTEN_CHAR.IND and the M-Sounds
TP_EV_batch_msg_interval apart; collect each EVSE's CM_ATTEN_CHAR.IND (answering each with
CM_ATTEN_CHAR.RSP) until all candidates reported or TT_EV_atten_results ran out; choose the EVSE
with the lowest average attenuation if below the threshold; optionally
CM_VALIDATE (B-C-B toggles on the control pilot that only the EVSE on our cable can count; on a
mismatch the next EVSE in order of attenuation is validated); CM_SLAC_MATCH.REQ (retried); hand
NID and NMK to the own modem with CM_SET_KEY; poll the modem until the link is up (D-LINK_READY).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from v2gtool.slac import mme
from v2gtool.slac.diagnosis import Diagnosis, attenuation_too_high
from v2gtool.slac.events import AttenuationMeasured, BcToggleRequest, EvseChosen
from v2gtool.slac.machine import STATE_TIMER_KEY, RandomBytes, SlacMachine, SlacResult
from v2gtool.slac.states import Role, SlacState, Trigger
from v2gtool.slac.timers import SlacTimers

S = SlacState
RUN_ID_LEN = 8


@dataclass(frozen=True)
class EvseCandidate:
    """An EVSE that answered CM_SLAC_PARM.REQ, with its sounding parameters."""

    mac: str
    num_sounds: int
    time_out: int


class EvSlac(SlacMachine):
    """The EV (PEV-HLE) matching process."""

    role = Role.EV

    def __init__(
        self,
        mac: str,
        timers: SlacTimers | None = None,
        *,
        modem_mac: str = mme.QCA_LOCAL_MAC,
        random_bytes: RandomBytes = secrets.token_bytes,
        validate: bool = False,
        pev_id: bytes = b"",
    ) -> None:
        super().__init__(mac, timers, modem_mac=modem_mac, random_bytes=random_bytes)
        self.validate = validate
        self.pev_id = pev_id[:17].ljust(17, b"\0")
        self.run_id = random_bytes(RUN_ID_LEN)
        self.candidates: dict[str, EvseCandidate] = {}
        self.profiles: dict[str, tuple[int, ...]] = {}
        self.chosen: str | None = None
        self.nid: bytes | None = None
        self.nmk: bytes | None = None
        self.t_slac_parm_req: float | None = None
        self._requests = 0  # transmissions of the request now awaiting its response
        self._to_validate: list[str] = []  # EVSEs left to validate, lowest attenuation first
        self._validate_step = 1
        self.bc_toggles = 0
        self._pending: list[mme.MmeBody] = []
        self._atten_results_due = 0.0

    # -- start -------------------------------------------------------------------------------
    def _on_start(self, now: float) -> None:
        self.t_slac_parm_req = now
        self._send_request(now)

    def _send_request(self, now: float) -> None:
        """(Re)send the request of the current state and re-arm its response timer."""
        self._requests += 1
        match self.state:
            case S.WAIT_SLAC_PARM_CNF:
                self._send(mme.BROADCAST_MAC, mme.CM_SLAC_PARM_REQ(run_id=self.run_id), now)
            case S.WAIT_VALIDATE_CNF if self._validate_step == 1:
                assert self.chosen is not None
                self._send(
                    self.chosen,
                    mme.CM_VALIDATE_REQ(signal_type=0, timer=0, result=mme.ValidateResult.READY),
                    now,
                )
            case S.WAIT_VALIDATE_CNF:
                assert self.chosen is not None
                window = self._toggle_window()
                self._send(
                    self.chosen,
                    mme.CM_VALIDATE_REQ(
                        signal_type=0, timer=round(window * 10), result=mme.ValidateResult.READY
                    ),
                    now,
                )
                self._emit(
                    BcToggleRequest(
                        t=now, count=self.bc_toggles, state_duration=self.timers.TP_EV_vald_state_duration
                    )
                )
                self._set_timer(STATE_TIMER_KEY, now + window + self.timers.TT_match_response)
                return
            case S.WAIT_SLAC_MATCH_CNF:
                assert self.chosen is not None
                self._send(
                    self.chosen,
                    mme.CM_SLAC_MATCH_REQ(
                        pev_id=self.pev_id, pev_mac=self.mac, evse_mac=self.chosen, run_id=self.run_id
                    ),
                    now,
                )
            case S.SETTING_KEY:
                assert self.nid is not None and self.nmk is not None
                self._send(self.modem_mac, self._set_key_req(self.nid, self.nmk), now)
        self._rearm_state_timer(now)

    def _enter(self, trigger: Trigger, now: float) -> None:
        """Transition to the next request/response state and send its first request."""
        self._transition(trigger, now)
        self._requests = 0
        self._send_request(now)

    # -- frames ------------------------------------------------------------------------------
    def _on_mme(self, frame: mme.MmeFrame, now: float) -> None:
        body = frame.body
        to_me = frame.dst == self.mac
        match body:
            case mme.CM_SET_KEY_CNF() if to_me and self.state is S.SETTING_KEY:
                if mme.set_key_succeeded(body):
                    self._transition(Trigger.KEY_CONFIRMED, now)
                    self._poll_link(now)
                else:
                    self._fail(now, Diagnosis.SET_KEY_NOT_CONFIRMED, f"modem answered Result {body.result}")
            case mme.VS_PL_LNK_STATUS_CNF() if to_me and self.state is S.WAIT_LINK_READY:
                if body.link_status == 1:
                    self._matched(now)
            case mme.CM_VALIDATE_CNF() if self.state is S.WAIT_VALIDATE_CNF and frame.src == self.chosen:
                self._on_validate_cnf(body, now)
            case _ if getattr(body, "run_id", None) != self.run_id:
                return  # not our matching (another EV, or no RunID at all)
            case mme.CM_SLAC_PARM_CNF() if self.state is S.WAIT_SLAC_PARM_CNF and to_me:
                self.candidates[frame.src] = EvseCandidate(
                    frame.src, int(body.num_sounds), int(body.time_out)
                )
            case mme.CM_ATTEN_CHAR_IND() if frame.src in self.candidates and to_me:
                self._on_atten_char_ind(frame.src, body, now)
            case mme.CM_SLAC_MATCH_CNF() if self.state is S.WAIT_SLAC_MATCH_CNF and frame.src == self.chosen:
                if body.pev_mac == self.mac:
                    self.nid, self.nmk = bytes(body.nid), bytes(body.nmk)
                    self._enter(Trigger.SLAC_MATCH_CNF, now)

    def _on_atten_char_ind(self, evse: str, body: mme.CM_ATTEN_CHAR_IND, now: float) -> None:
        if body.source_address != self.mac or not body.aag:
            return
        self._send(
            evse,
            mme.CM_ATTEN_CHAR_RSP(
                source_address=self.mac, run_id=self.run_id, source_id=self.pev_id, result=0
            ),
            now,
        )
        if evse in self.profiles or self.state not in (S.SOUNDING, S.WAIT_ATTEN_CHAR_IND):
            return  # a repeated IND (our RSP was lost): answered again, nothing new
        aag = tuple(int(a) for a in body.aag)
        self.profiles[evse] = aag
        self._emit(
            AttenuationMeasured(
                t=now,
                role=self.role.value,
                evse_mac=evse,
                num_sounds=int(body.num_sounds),
                aag=aag,
                average_db=sum(aag) / len(aag),
            )
        )
        if self.state is S.WAIT_ATTEN_CHAR_IND and self.profiles.keys() == self.candidates.keys():
            self._choose(now)

    def _toggle_window(self) -> float:
        """CM_VALIDATE step 2 window (Timer field, 100 ms units): the toggles plus one state."""
        states = 2 * self.bc_toggles + 1
        return min(states * self.timers.TP_EV_vald_state_duration, self.timers.TT_EVSE_vald_toggle)

    def _on_validate_cnf(self, body: mme.CM_VALIDATE_CNF, now: float) -> None:
        result = int(body.result)
        if result == mme.ValidateResult.NOT_REQUIRED:
            self._enter(Trigger.VALIDATE_DONE, now)
        elif result == mme.ValidateResult.READY and self._validate_step == 1:
            self._validate_step = 2
            self.bc_toggles = 1 + self.random_bytes(1)[0] % max(self.timers.C_EV_vald_nb_toggles, 1)
            self._requests = 0
            self._send_request(now)
        elif (
            result == mme.ValidateResult.SUCCESS
            and self._validate_step == 2
            and body.toggle_num == self.bc_toggles
        ):
            self._enter(Trigger.VALIDATE_DONE, now)
        elif result in (mme.ValidateResult.SUCCESS, mme.ValidateResult.FAILURE):
            # This EVSE did not see our toggles: it is not on our cable. Try the next one.
            self._validate_next(now, f"{self.chosen} counted {body.toggle_num} of {self.bc_toggles} toggles")

    def _validate_next(self, now: float, why: str) -> None:
        if not self._to_validate:
            self._fail(now, Diagnosis.VALIDATE_FAILED, why)
            return
        self.chosen = self._to_validate.pop(0)
        averages = self._averages()
        self._emit(
            EvseChosen(t=now, evse_mac=self.chosen, average_db=averages[self.chosen], candidates=averages)
        )
        self._validate_step = 1
        self._enter(Trigger.VALIDATE_START, now)

    # -- sounding and the choice -------------------------------------------------------------
    def _start_sounding(self, now: float) -> None:
        sounds = min(c.num_sounds for c in self.candidates.values()) or self.timers.C_EV_match_MNBC
        time_out = max(c.time_out for c in self.candidates.values())
        start = mme.CM_START_ATTEN_CHAR_IND(
            num_sounds=sounds, time_out=time_out, resp_type=1, forwarding_sta=self.mac, run_id=self.run_id
        )
        self._pending = [start] * self.timers.C_EV_start_atten_char_inds + [
            mme.CM_MNBC_SOUND_IND(
                sender_id=self.pev_id, cnt=cnt, run_id=self.run_id, rnd=self.random_bytes(16)
            )
            for cnt in range(sounds - 1, -1, -1)
        ]
        self._atten_results_due = now + self.timers.TT_EV_atten_results
        self._transition(Trigger.SLAC_PARM_CNF_COLLECTED, now)
        self._send_next_sound(now)

    def _send_next_sound(self, now: float) -> None:
        self._send(mme.BROADCAST_MAC, self._pending.pop(0), now)
        if self._pending:
            return  # SOUNDING's timer (TP_EV_batch_msg_interval) paces the next one
        self._transition(Trigger.SOUNDS_SENT, now)
        # TT_EV_atten_results runs from the first CM_START_ATTEN_CHAR.IND, not from here.
        self._set_timer(STATE_TIMER_KEY, self._atten_results_due)
        if self.profiles.keys() == self.candidates.keys():
            self._choose(now)

    def _averages(self) -> dict[str, float]:
        """Average attenuation (dB over all groups) of every EVSE that reported a profile."""
        return {mac: sum(aag) / len(aag) for mac, aag in self.profiles.items()}

    def _choose(self, now: float) -> None:
        if not self.profiles:
            self._fail(now, Diagnosis.NO_ATTEN_CHAR_IND, f"{len(self.candidates)} EVSE(s) answered PARM.REQ")
            return
        averages = self._averages()
        ranked = sorted(averages, key=lambda mac: (averages[mac], mac))
        best = ranked[0]
        self.chosen = best
        self._emit(EvseChosen(t=now, evse_mac=best, average_db=averages[best], candidates=averages))
        if too_high := attenuation_too_high(averages[best], self.timers.attenuation_threshold_db, best):
            self._fail(now, Diagnosis.ATTENUATION_TOO_HIGH, too_high)
        elif self.validate:
            limit = self.timers.attenuation_threshold_db
            self._to_validate = [mac for mac in ranked[1:] if averages[mac] <= limit]
            self._enter(Trigger.VALIDATE_START, now)
        else:
            self._enter(Trigger.ATTEN_CHAR_IND_COLLECTED, now)

    # -- timers ------------------------------------------------------------------------------
    def _on_timer(self, name: str, now: float) -> None:
        if name == "link_poll":
            self._poll_link(now)
            return
        match self.state:
            case S.WAIT_SLAC_PARM_CNF if self.candidates:
                self._start_sounding(now)
            case S.SOUNDING:
                self._send_next_sound(now)
                if self.state is S.SOUNDING:
                    self._rearm_state_timer(now)
            case S.WAIT_ATTEN_CHAR_IND:
                self._choose(now)
            case S.WAIT_LINK_READY:
                self._fail(now, Diagnosis.LINK_NOT_READY, f"{self.timers.TT_match_join:g} s")
            case _ if self._requests <= self.timers.C_EV_match_retry:
                self._send_request(now)
            case _:
                self._fail(now, _UNANSWERED[self.state], f"{self._requests} requests unanswered")

    # -- outcomes ----------------------------------------------------------------------------
    def _fail(self, now: float, diagnosis: Diagnosis, detail: str) -> None:
        self._finish(now, Trigger.FAIL, self._result(diagnosis=diagnosis, detail=detail))

    def _matched(self, now: float) -> None:
        self._finish(now, Trigger.LINK_UP, self._result(t_link_ready=now))

    def _result(
        self, *, diagnosis: Diagnosis | None = None, detail: str = "", t_link_ready: float | None = None
    ) -> SlacResult:
        return SlacResult(
            role=self.role,
            matched=diagnosis is None,
            peer_mac=self.chosen,
            run_id=self.run_id,
            nid=self.nid,
            nmk=self.nmk,
            diagnosis=diagnosis,
            detail=detail,
            attenuation_db=self._averages(),
            t_slac_parm_req=self.t_slac_parm_req,
            t_link_ready=t_link_ready,
            decode_errors=self._decode_error_total(),
        )


#: The diagnosis when a request of this state stays unanswered after C_EV_match_retry retries.
_UNANSWERED = {
    S.WAIT_SLAC_PARM_CNF: Diagnosis.NO_SLAC_PARM_CNF,
    S.WAIT_VALIDATE_CNF: Diagnosis.VALIDATE_FAILED,
    S.WAIT_SLAC_MATCH_CNF: Diagnosis.NO_SLAC_MATCH_CNF,
    S.SETTING_KEY: Diagnosis.SET_KEY_NOT_CONFIRMED,
}
