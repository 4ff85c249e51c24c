"""The EVSE side of SLAC (ISO 15118-3, Annex A), sans-IO.

Sequence: generate an NMK and set it in the own modem (CM_SET_KEY, so that the EV's modem can
join at once after the match), offer the 5 % duty cycle, wait TT_EVSE_SLAC_init for
CM_SLAC_PARM.REQ, answer with the sounding parameters, average the modem's CM_ATTEN_PROFILE.IND
per group during TT_EVSE_match_MNBC, send CM_ATTEN_CHAR.IND (repeated on TT_match_response),
answer CM_VALIDATE.REQ (counting the EV's B-C-B toggles when it can see them), answer
CM_SLAC_MATCH.REQ with NID and NMK, then poll the modem until the link is up.

A failure after the 5 % duty cycle was offered ends the attempt with the control pilot in E/F
for T_step_EF, then 5 % is offered again, up to C_sequ_retry times; once they are used up, the
pilot goes to X1 (PWM off) ([V2G3-M06-07]; EVerest applies it to DC too because many EVs need it).
The CP is hardware, so the machine emits
:class:`~v2gtool.slac.events.ControlPilotRequest` events. When the retries end in silence (no
CM_SLAC_PARM.REQ), the diagnosis is that of the last attempt the EV took part in: an EV that chose
another charger does not come back after E/F, and "it chose another" is what the engineer needs.
"""

from __future__ import annotations

import secrets
from dataclasses import replace

from v2gtool.slac import mme
from v2gtool.slac.diagnosis import Diagnosis, attenuation_too_high
from v2gtool.slac.events import AttenuationMeasured, ControlPilotRequest, MmeRejected
from v2gtool.slac.keys import derive_nid, generate_nmk
from v2gtool.slac.machine import STATE_TIMER_KEY, RandomBytes, SlacMachine, SlacResult
from v2gtool.slac.states import Role, SlacState, Trigger
from v2gtool.slac.timers import SlacTimers

S = SlacState


def average_profiles(profiles: list[list[int]]) -> list[int]:
    """Average attenuation per group over the sounds received (ISO 15118-3 Annex A: the EVSE
    reports the arithmetic mean per group, rounded to whole dB)."""
    groups = min(len(p) for p in profiles)
    return [round(sum(p[g] for p in profiles) / len(profiles)) for g in range(groups)]


class EvseSlac(SlacMachine):
    """One EVSE matching on one interface. It holds no global state, so several EVSE sessions
    (one per interface and modem) run side by side in one process."""

    role = Role.EVSE

    def __init__(
        self,
        mac: str,
        timers: SlacTimers | None = None,
        *,
        modem_mac: str = mme.QCA_LOCAL_MAC,
        random_bytes: RandomBytes = secrets.token_bytes,
        evse_id: bytes = b"",
        validate: bool = False,
    ) -> None:
        """``validate``: this EVSE can see B-C-B toggles on its control pilot (fed through
        :meth:`observe_bc_toggle`) and so offers CM_VALIDATE; without, it answers Not Required."""
        super().__init__(mac, timers, modem_mac=modem_mac, random_bytes=random_bytes)
        self.validate = validate
        self.toggles = 0
        self.nmk = generate_nmk(random_bytes)
        self.nid = derive_nid(self.nmk)
        self.evse_id = evse_id[:17].ljust(17, b"\0")
        self.sequence_retries = 0
        self._key_requests = 0
        #: The failure of the last attempt in which the EV sent CM_SLAC_PARM.REQ.
        self._ev_seen_failure: SlacResult | None = None
        self.own_modem: str | None = None  # the MAC the modem answered CM_SET_KEY.REQ from
        self._t_first_offer: float | None = None  # when 5 % was first offered
        self._reset_attempt()

    def _reset_attempt(self) -> None:
        self.ev_mac: str | None = None
        self.run_id: bytes | None = None
        self.num_sounds = self.timers.C_EV_match_MNBC
        self.profiles: list[list[int]] = []
        self.sounds = 0
        self.aag: list[int] = []
        self._atten_char_sent = 0
        self.t_slac_parm_req: float | None = None

    # -- start: the own modem takes the NMK -------------------------------------------------
    def _on_start(self, now: float) -> None:
        self._request_key(now)

    def _request_key(self, now: float) -> None:
        self._key_requests += 1
        self._send(self.modem_mac, self._set_key_req(self.nid, self.nmk), now)

    # -- frames ------------------------------------------------------------------------------
    def _on_mme(self, frame: mme.MmeFrame, now: float) -> None:
        body = frame.body
        to_me = frame.dst == self.mac
        match body:
            case mme.CM_SET_KEY_CNF() if to_me and self.state is S.SETTING_KEY:
                self.own_modem = frame.src
                if mme.set_key_succeeded(body):
                    self._transition(Trigger.KEY_CONFIRMED, now)
                    self._t_first_offer = now
                    self._emit(ControlPilotRequest(t=now, cp="5%"))
                else:
                    self._fail(now, Diagnosis.SET_KEY_NOT_CONFIRMED, f"modem answered Result {body.result}")
            case mme.VS_PL_LNK_STATUS_CNF() if to_me and self.state is S.WAIT_LINK_READY:
                if body.link_status == 1:
                    self._matched(now)
            case mme.CM_ATTEN_PROFILE_IND() if self.state is S.SOUNDING:
                # From the own modem only, the station that confirmed CM_SET_KEY (it is on the host
                # side); QCA firmware sends it to the host's MAC, others (seen in captures) to
                # broadcast. The same MME from anywhere else (the EV, a neighbour over the cable)
                # would let its sender choose the attenuation this EVSE reports.
                if frame.src != self.own_modem:
                    self._emit(MmeRejected(t=now, role=self.role.value,
                                           reason=f"CM_ATTEN_PROFILE.IND from {frame.src}, not from this "
                                                  f"EVSE's modem {self.own_modem}: ignored"))
                elif body.pev_mac == self.ev_mac and body.num_groups > 0:
                    self.profiles.append([int(a) for a in body.aag])
                    if len(self.profiles) >= self.num_sounds:
                        self._sounding_complete(now)
            case mme.CM_SLAC_PARM_REQ():
                self._on_slac_parm_req(frame, body, now)
            case _ if frame.src != self.ev_mac or getattr(body, "run_id", self.run_id) != self.run_id:
                return  # another EV's matching, or a stale RunID
            case mme.CM_START_ATTEN_CHAR_IND() | mme.CM_MNBC_SOUND_IND():
                self._on_sound(body, now)
            case mme.CM_ATTEN_CHAR_RSP() if self.state is S.WAIT_ATTEN_CHAR_RSP:
                self._transition(Trigger.ATTEN_CHAR_RSP, now)
            case mme.CM_VALIDATE_REQ() if self.state is S.WAIT_SLAC_MATCH_REQ:
                self._on_validate_req(body, now)
            case mme.CM_SLAC_MATCH_REQ() if body.evse_mac == self.mac:
                self._on_slac_match_req(frame, body, now)

    def _on_slac_parm_req(self, frame: mme.MmeFrame, body: mme.CM_SLAC_PARM_REQ, now: float) -> None:
        if body.application_type != mme.ApplicationType.PEV_EVSE_MATCHING:
            return
        if self.state is S.WAIT_SLAC_PARM_REQ:
            self.ev_mac, self.run_id, self.t_slac_parm_req = frame.src, bytes(body.run_id), now
            self._send_slac_parm_cnf(now)
            self._transition(Trigger.SLAC_PARM_REQ, now)
        elif self.state is S.WAIT_START_ATTEN_CHAR and (frame.src, bytes(body.run_id)) == (
            self.ev_mac,
            self.run_id,
        ):
            self._send_slac_parm_cnf(now)  # the EV's retry: our CNF was lost

    def _send_slac_parm_cnf(self, now: float) -> None:
        assert self.ev_mac is not None and self.run_id is not None
        self._send(
            self.ev_mac,
            mme.CM_SLAC_PARM_CNF(
                msound_target=mme.BROADCAST_MAC,
                num_sounds=self.timers.C_EV_match_MNBC,
                time_out=round(self.timers.TT_EVSE_match_MNBC * 10),
                resp_type=1,
                forwarding_sta=self.ev_mac,
                run_id=self.run_id,
            ),
            now,
        )

    def _on_sound(self, body: mme.CM_START_ATTEN_CHAR_IND | mme.CM_MNBC_SOUND_IND, now: float) -> None:
        if self.state is S.WAIT_START_ATTEN_CHAR:
            if isinstance(body, mme.CM_START_ATTEN_CHAR_IND) and body.num_sounds > 0:
                self.num_sounds = int(body.num_sounds)
            self._transition(Trigger.START_ATTEN_CHAR, now)
        if self.state is S.SOUNDING and isinstance(body, mme.CM_MNBC_SOUND_IND):
            self.sounds += 1

    def _sounding_complete(self, now: float) -> None:
        if not self.profiles:
            detail = f"{self.sounds} M-Sounds seen from {self.ev_mac}"
            self._fail(now, Diagnosis.NO_ATTEN_PROFILE, detail)
            return
        assert self.ev_mac is not None
        self.aag = average_profiles(self.profiles)
        average = sum(self.aag) / len(self.aag)
        self._emit(
            AttenuationMeasured(
                t=now,
                role=self.role.value,
                evse_mac=self.mac,
                num_sounds=len(self.profiles),
                aag=tuple(self.aag),
                average_db=average,
            )
        )
        self._transition(Trigger.SOUNDS_COLLECTED, now)
        self._send_atten_char_ind(now)

    def _send_atten_char_ind(self, now: float) -> None:
        self._atten_char_sent += 1
        assert self.ev_mac is not None and self.run_id is not None
        self._send(
            self.ev_mac,
            mme.CM_ATTEN_CHAR_IND(
                source_address=self.ev_mac, run_id=self.run_id, num_sounds=len(self.profiles), aag=self.aag
            ),
            now,
        )

    def _on_validate_req(self, body: mme.CM_VALIDATE_REQ, now: float) -> None:
        """CM_VALIDATE (ISO 15118-3 Annex A): step 1 (Timer 0) says whether validation
        is possible; step 2 opens a window of Timer x 100 ms (at most TT_EVSE_vald_toggle) in
        which the EVSE counts the EV's B-C-B toggles, then reports the count."""
        assert self.ev_mac is not None
        if not self.validate:
            self._send(self.ev_mac, mme.CM_VALIDATE_CNF(result=mme.ValidateResult.NOT_REQUIRED), now)
        elif body.timer == 0:
            self._send(self.ev_mac, mme.CM_VALIDATE_CNF(toggle_num=0, result=mme.ValidateResult.READY), now)
        else:
            self.toggles = 0
            self._transition(Trigger.VALIDATE_START, now)
            window = min(int(body.timer) * 0.1, self.timers.TT_EVSE_vald_toggle)
            self._set_timer(STATE_TIMER_KEY, now + window)

    def observe_bc_toggle(self, now: float) -> None:
        """The control pilot went B -> C -> B once (the EV closed and opened S2)."""
        if self.state is S.COUNTING_TOGGLES:
            self.toggles += 1

    def _on_slac_match_req(self, frame: mme.MmeFrame, body: mme.CM_SLAC_MATCH_REQ, now: float) -> None:
        if self.state not in (S.WAIT_SLAC_MATCH_REQ, S.WAIT_LINK_READY):
            return
        assert self.run_id is not None
        self._send(
            frame.src,
            mme.CM_SLAC_MATCH_CNF(
                pev_id=body.pev_id,
                pev_mac=body.pev_mac,
                evse_id=self.evse_id,
                evse_mac=self.mac,
                run_id=self.run_id,
                nid=self.nid,
                nmk=self.nmk,
            ),
            now,
        )
        if self.state is S.WAIT_SLAC_MATCH_REQ:  # else: a repeated REQ, our CNF was lost
            self._transition(Trigger.SLAC_MATCH_REQ, now)
            self._poll_link(now)

    # -- timers ------------------------------------------------------------------------------
    def _on_timer(self, name: str, now: float) -> None:
        if name == "link_poll":
            self._poll_link(now)
            return
        match self.state:
            case S.SETTING_KEY if self._key_requests <= self.timers.C_EV_match_retry:
                self._request_key(now)
                self._rearm_state_timer(now)
            case S.SETTING_KEY:
                self._fail(now, Diagnosis.SET_KEY_NOT_CONFIRMED, f"{self._key_requests} requests unanswered")
            case S.WAIT_SLAC_PARM_REQ:
                self._fail(now, Diagnosis.NO_SLAC_PARM_REQ, self._slac_init_waited(now))
            case S.WAIT_START_ATTEN_CHAR:
                self._fail(now, Diagnosis.NO_START_ATTEN_CHAR, f"EV {self.ev_mac}")
            case S.SOUNDING:
                self._sounding_complete(now)
            case S.WAIT_ATTEN_CHAR_RSP if self._atten_char_sent <= self.timers.C_EV_match_retry:
                self._send_atten_char_ind(now)
                self._rearm_state_timer(now)
            case S.WAIT_ATTEN_CHAR_RSP:
                self._fail(
                    now, Diagnosis.NO_ATTEN_CHAR_RSP, f"{self._atten_char_sent} CM_ATTEN_CHAR.IND sent"
                )
            case S.WAIT_SLAC_MATCH_REQ:
                self._no_slac_match_req(now)
            case S.COUNTING_TOGGLES:
                assert self.ev_mac is not None
                self._send(
                    self.ev_mac,
                    mme.CM_VALIDATE_CNF(toggle_num=self.toggles, result=mme.ValidateResult.SUCCESS),
                    now,
                )
                self._transition(Trigger.VALIDATE_DONE, now)
            case S.WAIT_LINK_READY:
                self._fail(now, Diagnosis.LINK_NOT_READY, f"{self.timers.TT_match_join:g} s")
            case S.EF_PAUSE:
                self._reset_attempt()
                self._transition(Trigger.EF_DONE, now)
                self._emit(ControlPilotRequest(t=now, cp="5%"))

    def _slac_init_waited(self, now: float) -> str:
        """How long this EVSE has waited for CM_SLAC_PARM.REQ by *now*: TT_EVSE_SLAC_init once per
        attempt, with T_step_EF in E/F before each new one (ISO 15118-3 Table A.1, [V2G3-M06-07]), so
        the last of C_sequ_retry + 1 waits ends well after TT_EVSE_SLAC_init."""
        waits = self.sequence_retries + 1
        if waits == 1 or self._t_first_offer is None:
            return f"{self.timers.TT_EVSE_SLAC_init:g} s"
        return (f"{waits} waits of {self.timers.TT_EVSE_SLAC_init:g} s with E/F between, "
                f"{now - self._t_first_offer:.0f} s in all")

    def _no_slac_match_req(self, now: float) -> None:
        """TT_EVSE_match_session ran out without CM_SLAC_MATCH.REQ. When this EVSE's own average
        attenuation is above the threshold, that is why: the EV refuses such a link whether or not
        another charger is near. Only below it did the EV choose another charger."""
        own = self._attenuation().get(self.mac)
        limit = self.timers.attenuation_threshold_db
        too_high = None if own is None else attenuation_too_high(own, limit, self.mac)
        if too_high:
            self._fail(now, Diagnosis.ATTENUATION_TOO_HIGH, f"{too_high}; EV {self.ev_mac} sent no CM_SLAC_MATCH.REQ")
        else:
            self._fail(now, Diagnosis.PEER_CHOSE_OTHER, f"EV {self.ev_mac}")

    # -- outcomes ----------------------------------------------------------------------------
    def _fail(self, now: float, diagnosis: Diagnosis, detail: str) -> None:
        """End this attempt: through E/F to a new one while C_sequ_retry allows, else fail with the
        pilot in X1. A modem that refuses the key gets no new attempt: E/F cannot fix it (and 5 % was
        never offered, so the pilot stays as it is). The result is this
        attempt's, unless the EV stayed silent in it and took part in an earlier one (module
        docstring; ISO 15118-3 Table A.1 C_sequ_retry)."""
        result = SlacResult(
            role=self.role,
            matched=False,
            peer_mac=self.ev_mac,
            run_id=self.run_id,
            diagnosis=diagnosis,
            detail=detail,
            attenuation_db=self._attenuation(),
            t_slac_parm_req=self.t_slac_parm_req,
        )
        if self.ev_mac is not None:
            self._ev_seen_failure = result
        retry = diagnosis is not Diagnosis.SET_KEY_NOT_CONFIRMED
        if retry and self.sequence_retries < self.timers.C_sequ_retry:
            self.sequence_retries += 1
            self._emit(ControlPilotRequest(t=now, cp="E/F"))
            self._transition(Trigger.RETRY_SEQUENCE, now)
            return
        if self.state is not S.SETTING_KEY:  # 5 % was offered: no more retries, X1 ([V2G3-M06-07])
            self._emit(ControlPilotRequest(t=now, cp="X1"))
        if self.ev_mac is None and self._ev_seen_failure is not None:
            seen = self._ev_seen_failure
            result = replace(seen, detail=f"{seen.detail}; no CM_SLAC_PARM.REQ in the later attempt(s)")
        self._finish(now, Trigger.FAIL, replace(result, decode_errors=self._decode_error_total()))

    def _matched(self, now: float) -> None:
        self._finish(
            now,
            Trigger.LINK_UP,
            SlacResult(
                role=self.role,
                matched=True,
                peer_mac=self.ev_mac,
                run_id=self.run_id,
                nid=self.nid,
                nmk=self.nmk,
                attenuation_db=self._attenuation(),
                t_slac_parm_req=self.t_slac_parm_req,
                t_link_ready=now,
                decode_errors=self._decode_error_total(),
            ),
        )

    def _attenuation(self) -> dict[str, float]:
        return {self.mac: sum(self.aag) / len(self.aag)} if self.aag else {}
