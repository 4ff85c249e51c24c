"""The EVSE and EV machines on a virtual clock: matching, the lowest-attenuation choice, every
timeout and retry of Table A.1, and the diagnoses."""

from __future__ import annotations

import dataclasses
import itertools
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from v2gtool.session.events import Event
from v2gtool.slac import mme
from v2gtool.slac.cable import SimCable
from v2gtool.slac.diagnosis import Diagnosis
from v2gtool.slac.ev import EvSlac
from v2gtool.slac.events import ControlPilotRequest, EvseChosen, MmeRejected, MmeSent
from v2gtool.slac.evse import EvseSlac, average_profiles
from v2gtool.slac.keys import derive_nid
from v2gtool.slac.machine import SlacMachine
from v2gtool.slac.modem_sim import AttenuationModel, SimModem
from v2gtool.slac.states import TRANSITIONS, IllegalTransition, Role, SlacState, Trigger, next_state
from v2gtool.slac.timers import SlacTimers

EV_MAC = "02:00:00:00:0e:02"
EVSE_MAC = "02:00:00:00:0e:01"
EVSE_MODEM = "00:b0:52:00:00:e1"  # the EVSE's own modem: it confirms CM_SET_KEY and reports the sounds
ADJACENT_MAC = "02:00:00:00:0e:03"
FAST = SlacTimers(TT_EVSE_SLAC_init=5.0, C_sequ_retry=0)


def seeded(seed: int = 1) -> random.Random:
    return random.Random(seed)


def ev_machine(timers: SlacTimers = FAST, **kw: object) -> EvSlac:
    return EvSlac(EV_MAC, timers, random_bytes=seeded().randbytes, **kw)


def evse_machine(mac: str = EVSE_MAC, timers: SlacTimers = FAST, seed: int = 2) -> EvseSlac:
    return EvseSlac(mac, timers, random_bytes=seeded(seed).randbytes)


def cable_with(*stations: tuple[SlacMachine, SimModem]) -> SimCable:
    cable = SimCable()
    for machine, modem in stations:
        cable.add(machine, modem)
    return cable


def evse_modem(mac: str = EVSE_MAC, base_db: float = 20.0, **kw: object) -> SimModem:
    return SimModem(
        mac, modem_mac="00:b0:52:00:00:" + mac[-2:], attenuation=AttenuationModel(base_db=base_db), **kw
    )


def ev_modem(**kw: object) -> SimModem:
    return SimModem(EV_MAC, modem_mac="00:b0:52:00:00:e2", **kw)


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[int, Event]] = []

    def __call__(self, index: int, event: Event) -> None:
        self.events.append((index, event))

    def of(self, index: int, kind: type[Event]) -> list[Event]:
        return [e for i, e in self.events if i == index and isinstance(e, kind)]


def test_both_roles_match_and_agree_on_the_keys() -> None:
    ev, evse = ev_machine(), evse_machine()
    ev_result, evse_result = cable_with((ev, ev_modem()), (evse, evse_modem())).run()
    assert ev_result.matched and evse_result.matched
    assert ev_result.peer_mac == EVSE_MAC and evse_result.peer_mac == EV_MAC
    assert ev_result.run_id == evse_result.run_id
    assert ev_result.nmk == evse_result.nmk and ev_result.nid == evse_result.nid
    assert ev_result.nid == derive_nid(ev_result.nmk or b"")
    assert ev_result.t_link_ready is not None and ev_result.t_slac_parm_req == 0.0
    # PARM.CNF collection (TT_match_response) + 13 paced messages is the floor of a matching.
    assert ev_result.t_link_ready > FAST.TT_match_response + 12 * FAST.TP_EV_batch_msg_interval


def test_ev_picks_the_lowest_attenuation_and_the_adjacent_charger_diagnoses_cross_talk() -> None:
    recorder = Recorder()
    ev, evse, adjacent = ev_machine(), evse_machine(), evse_machine(ADJACENT_MAC, seed=3)
    cable = cable_with(
        (ev, ev_modem()), (adjacent, evse_modem(ADJACENT_MAC, 32.0)), (evse, evse_modem(EVSE_MAC, 21.0))
    )
    ev_result, adjacent_result, evse_result = cable.run(on_event=recorder)
    assert ev_result.matched and ev_result.peer_mac == EVSE_MAC
    assert set(ev_result.attenuation_db) == {EVSE_MAC, ADJACENT_MAC}
    assert ev_result.attenuation_db[EVSE_MAC] < ev_result.attenuation_db[ADJACENT_MAC]
    (chosen,) = recorder.of(0, EvseChosen)
    assert isinstance(chosen, EvseChosen) and chosen.evse_mac == EVSE_MAC
    assert evse_result.matched
    assert (
        adjacent_result.diagnosis is Diagnosis.PEER_CHOSE_OTHER and adjacent_result.diagnosis.exit_code == 14
    )


@settings(max_examples=25, deadline=None)
@given(st.lists(st.integers(5, 38), min_size=2, max_size=4, unique=True), st.integers(0, 1000))
def test_the_choice_is_the_minimum_average_for_any_set_of_evses(bases: list[int], seed: int) -> None:
    ev = ev_machine(SlacTimers(C_sequ_retry=0, TT_EVSE_match_session=1.0))
    stations: list[tuple[SlacMachine, SimModem]] = [(ev, ev_modem())]
    for i, base in enumerate(bases):
        mac = f"02:00:00:00:0f:{i:02x}"
        modem = SimModem(
            mac,
            modem_mac=f"00:b0:52:00:0f:{i:02x}",
            seed=seed + i,
            attenuation=AttenuationModel(base_db=base, jitter_db=0.4),
        )
        stations.append(
            (evse_machine(mac, SlacTimers(C_sequ_retry=0, TT_EVSE_match_session=1.0), seed=i), modem)
        )
    ev_result = cable_with(*stations).run()[0]
    assert ev_result.matched
    assert ev_result.peer_mac == min(ev_result.attenuation_db, key=ev_result.attenuation_db.__getitem__)
    assert ev_result.peer_mac == f"02:00:00:00:0f:{bases.index(min(bases)):02x}"


def test_attenuation_above_threshold_fails_with_its_own_exit_code() -> None:
    ev_result, _ = cable_with((ev_machine(), ev_modem()), (evse_machine(), evse_modem(base_db=55.0))).run()
    assert ev_result.diagnosis is Diagnosis.ATTENUATION_TOO_HIGH
    assert "> 40 dB" in ev_result.detail and ev_result.diagnosis.exit_code == 12


def test_threshold_is_configurable() -> None:
    timers = dataclasses.replace(FAST, attenuation_threshold_db=60.0)
    ev_result, _ = cable_with(
        (ev_machine(timers), ev_modem()), (evse_machine(), evse_modem(base_db=55.0))
    ).run()
    assert ev_result.matched


def drive(machine: SlacMachine, until: float, inbound: dict[float, list[bytes]] | None = None) -> list[Event]:
    """Run one machine alone on a virtual clock, feeding *inbound* frames at their times."""
    inbound = dict(inbound or {})
    events: list[Event] = []
    machine.start(0.0)
    while not machine.done:
        times = [t for t in inbound if t <= until]
        deadline = machine.next_deadline
        candidates = [*times, *([deadline] if deadline is not None else [])]
        if not candidates or min(candidates) > until:
            break
        now = min(candidates)
        for frame in inbound.pop(now, []):
            machine.receive(frame, now)
        machine.handle_timer(now)
        events.extend(machine.take_events())
        machine.take_frames()
    events.extend(machine.take_events())
    return events


def sent(events: list[Event], name: str) -> list[float]:
    return [e.t for e in events if isinstance(e, MmeSent) and e.mme == name]


def test_ev_retries_slac_parm_req_c_ev_match_retry_times_then_diagnoses() -> None:
    ev = ev_machine()
    events = drive(ev, 10.0)
    assert sent(events, "CM_SLAC_PARM.REQ") == pytest.approx([0.0, 0.2, 0.4])
    assert ev.result is not None and ev.result.diagnosis is Diagnosis.NO_SLAC_PARM_CNF
    assert events[-1].t == pytest.approx(0.6)


def test_ev_retry_counter_is_configurable() -> None:
    ev = ev_machine(dataclasses.replace(FAST, C_EV_match_retry=4, TT_match_response=0.1))
    events = drive(ev, 10.0)
    assert sent(events, "CM_SLAC_PARM.REQ") == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])


def _frame_to(dst: str, src: str, body: mme.MmeBody) -> bytes:
    return mme.encode_frame(dst, src, body)


def test_ev_sounding_is_paced_and_waits_tt_ev_atten_results() -> None:
    ev = ev_machine()
    cnf = _frame_to(EV_MAC, EVSE_MAC, mme.CM_SLAC_PARM_CNF(forwarding_sta=EV_MAC, run_id=ev.run_id))
    events = drive(ev, 10.0, {0.05: [cnf]})
    starts, sounds = sent(events, "CM_START_ATTEN_CHAR.IND"), sent(events, "CM_MNBC_SOUND.IND")
    assert len(starts) == FAST.C_EV_start_atten_char_inds and len(sounds) == 10
    times = starts + sounds
    assert all(b - a == pytest.approx(FAST.TP_EV_batch_msg_interval) for a, b in itertools.pairwise(times))
    assert starts[0] == pytest.approx(FAST.TT_match_response)  # CNFs are collected for TT_match_response
    assert ev.result is not None and ev.result.diagnosis is Diagnosis.NO_ATTEN_CHAR_IND
    assert events[-1].t == pytest.approx(starts[0] + FAST.TT_EV_atten_results)


def test_ev_retries_slac_match_req_then_diagnoses() -> None:
    ev = ev_machine()
    cnf = _frame_to(EV_MAC, EVSE_MAC, mme.CM_SLAC_PARM_CNF(forwarding_sta=EV_MAC, run_id=ev.run_id))
    ind = _frame_to(
        EV_MAC, EVSE_MAC, mme.CM_ATTEN_CHAR_IND(source_address=EV_MAC, run_id=ev.run_id, aag=[10] * 58)
    )
    events = drive(ev, 10.0, {0.05: [cnf], 0.8: [ind]})
    match_reqs = sent(events, "CM_SLAC_MATCH.REQ")
    assert match_reqs == pytest.approx([0.8, 1.0, 1.2])
    assert sent(events, "CM_ATTEN_CHAR.RSP") == pytest.approx([0.8])
    assert ev.result is not None and ev.result.diagnosis is Diagnosis.NO_SLAC_MATCH_CNF


def test_evse_without_slac_parm_req_goes_through_e_f_and_retries() -> None:
    timers = SlacTimers(TT_EVSE_SLAC_init=20.0, T_step_EF=4.0, C_sequ_retry=2)
    evse = evse_machine(timers=timers)
    key_cnf = _frame_to(EVSE_MAC, mme.QCA_LOCAL_MAC, mme.CM_SET_KEY_CNF(result=0))
    events = drive(evse, 200.0, {0.001: [key_cnf]})
    cp = [(round(e.t, 3), e.cp) for e in events if isinstance(e, ControlPilotRequest)]
    # C_sequ_retry used up: the pilot goes to X1, not left at 5 % ([V2G3-M06-07]).
    assert cp == [(0.001, "5%"), (20.001, "E/F"), (24.001, "5%"), (44.001, "E/F"), (48.001, "5%"), (68.001, "X1")]
    assert evse.result is not None and evse.result.diagnosis is Diagnosis.NO_SLAC_PARM_REQ
    assert events[-1].t == pytest.approx(68.001)
    assert evse.result.diagnosis.exit_code == 10
    # The wait it reports is the one it made: three TT_EVSE_SLAC_init with T_step_EF between, not 20 s.
    assert evse.result.detail == "3 waits of 20 s with E/F between, 68 s in all"


def test_evse_without_retries_reports_the_one_wait() -> None:
    evse = evse_machine()  # FAST: C_sequ_retry = 0
    drive(evse, 60.0, {0.001: [_frame_to(EVSE_MAC, mme.QCA_LOCAL_MAC, mme.CM_SET_KEY_CNF(result=0))]})
    assert evse.result is not None and evse.result.diagnosis is Diagnosis.NO_SLAC_PARM_REQ
    assert evse.result.detail == "5 s"


@pytest.mark.parametrize("retries", [0, 1])
def test_evse_failing_after_5_percent_ends_in_x1_whatever_the_step(retries: int) -> None:
    """Every failure once 5 % was offered ends with the pilot in X1 when no retry is left (here: no
    CM_ATTEN_CHAR.RSP, after C_sequ_retry E/F retries)."""
    evse = evse_machine(timers=dataclasses.replace(FAST, C_sequ_retry=retries))
    events = drive(evse, 60.0, _evse_until_atten_char(evse, b"RUNID123", 10))
    cp = [e.cp for e in events if isinstance(e, ControlPilotRequest)]
    assert cp == ["5%"] + ["E/F", "5%"] * retries + ["X1"]
    assert evse.result is not None and not evse.result.matched


def test_evse_whose_modem_refuses_the_key_never_offered_5_percent_and_asks_no_cp_state() -> None:
    recorder = Recorder()
    (result,) = cable_with((evse_machine(), evse_modem(set_key_result=2))).run(on_event=recorder)
    assert result.diagnosis is Diagnosis.SET_KEY_NOT_CONFIRMED
    assert recorder.of(0, ControlPilotRequest) == []


def _evse_until_atten_char(evse: EvseSlac, run_id: bytes, profiles: int) -> dict[float, list[bytes]]:
    key_cnf = _frame_to(EVSE_MAC, EVSE_MODEM, mme.CM_SET_KEY_CNF(result=1))
    req = _frame_to(mme.BROADCAST_MAC, EV_MAC, mme.CM_SLAC_PARM_REQ(run_id=run_id))
    start = _frame_to(mme.BROADCAST_MAC, EV_MAC, mme.CM_START_ATTEN_CHAR_IND(num_sounds=10, run_id=run_id))
    inbound = {0.001: [key_cnf], 0.1: [req], 0.3: [start]}
    for i in range(profiles):
        inbound[0.35 + i * 0.04] = [
            _frame_to(mme.BROADCAST_MAC, EV_MAC, mme.CM_MNBC_SOUND_IND(cnt=9 - i, run_id=run_id)),
            _frame_to(EVSE_MAC, EVSE_MODEM, mme.CM_ATTEN_PROFILE_IND(pev_mac=EV_MAC, aag=[20 + i] * 58)),
        ]
    return inbound


def test_evse_repeats_atten_char_ind_then_diagnoses() -> None:
    evse = evse_machine()
    events = drive(evse, 30.0, _evse_until_atten_char(evse, b"RUNID123", 10))
    inds = sent(events, "CM_ATTEN_CHAR.IND")
    assert inds == pytest.approx([0.71, 0.91, 1.11])  # after the 10th profile, then TT_match_response apart
    assert evse.result is not None and evse.result.diagnosis is Diagnosis.NO_ATTEN_CHAR_RSP
    assert evse.aag == [round(sum(20 + i for i in range(10)) / 10)] * 58


def test_evse_sends_what_it_has_when_tt_evse_match_mnbc_expires() -> None:
    evse = evse_machine()
    events = drive(evse, 30.0, _evse_until_atten_char(evse, b"RUNID123", 4))
    assert sent(events, "CM_ATTEN_CHAR.IND")[0] == pytest.approx(0.3 + FAST.TT_EVSE_match_MNBC)
    assert evse.profiles and len(evse.profiles) == 4


def test_evse_ignores_atten_profiles_not_from_its_own_modem() -> None:
    """CM_ATTEN_PROFILE.IND from the EV's address (or a neighbour's) is the attacker choosing the
    attenuation: only the modem that confirmed CM_SET_KEY reports sounds."""
    evse = evse_machine()
    inbound = _evse_until_atten_char(evse, b"RUNID123", 4)
    forged = mme.CM_ATTEN_PROFILE_IND(pev_mac=EV_MAC, aag=[1] * 58)
    for i, source in enumerate([EV_MAC, "00:b0:52:00:00:99", mme.QCA_LOCAL_MAC] * 4):
        inbound.setdefault(0.36 + i * 0.01, []).append(_frame_to(EVSE_MAC, source, forged))
    events = drive(evse, 30.0, inbound)
    assert evse.own_modem == EVSE_MODEM
    assert len(evse.profiles) == 4 and 1 not in {a for p in evse.profiles for a in p}
    assert sent(events, "CM_ATTEN_CHAR.IND")[0] == pytest.approx(0.3 + FAST.TT_EVSE_match_MNBC)
    rejected = [e.reason for e in events if isinstance(e, MmeRejected)]
    assert len(rejected) == 12 and all(f"not from this EVSE's modem {EVSE_MODEM}" in r for r in rejected)
    assert evse.aag == [round(sum(20 + i for i in range(4)) / 4)] * 58


def test_evse_modem_without_atten_profile_is_diagnosed() -> None:
    _, evse_result = cable_with((ev_machine(), ev_modem()), (evse_machine(), SimModem(EVSE_MAC))).run()
    assert evse_result.diagnosis is Diagnosis.NO_ATTEN_PROFILE and evse_result.diagnosis.exit_code == 15


@pytest.mark.parametrize(
    ("modem_kw", "detail"),
    [({"responsive": False}, "3 requests unanswered"), ({"set_key_result": 2}, "Result 2")],
)
def test_set_key_not_confirmed(modem_kw: dict[str, object], detail: str) -> None:
    cable = cable_with((evse_machine(), evse_modem(**modem_kw)))
    (result,) = cable.run()
    assert result.diagnosis is Diagnosis.SET_KEY_NOT_CONFIRMED and detail in result.detail
    assert result.diagnosis.exit_code == 13


def test_link_that_never_comes_up() -> None:
    ev_result, _ = cable_with((ev_machine(), ev_modem(join_delay=60.0)), (evse_machine(), evse_modem())).run()
    assert ev_result.diagnosis is Diagnosis.LINK_NOT_READY


def test_ev_with_validate_accepts_not_required() -> None:
    recorder = Recorder()
    ev_result, _ = cable_with((ev_machine(validate=True), ev_modem()), (evse_machine(), evse_modem())).run(
        on_event=recorder
    )
    assert ev_result.matched
    assert any(
        isinstance(e, MmeSent) and e.mme == "CM_VALIDATE.CNF" for e in (ev for _, ev in recorder.events)
    )


def test_malformed_frames_are_counted_and_ignored() -> None:
    ev = ev_machine()
    ev.start(0.0)
    ev.receive(b"\x01\x02", 0.01)
    ev.receive(_frame_to(EV_MAC, EVSE_MAC, mme.CM_SLAC_PARM_CNF())[:30], 0.02)
    assert sum(ev.decode_errors.values()) == 2
    assert sum(isinstance(e, MmeRejected) for e in ev.take_events()) == 2
    assert ev.state is SlacState.WAIT_SLAC_PARM_CNF


def test_frames_of_another_run_are_ignored() -> None:
    ev = ev_machine()
    other = _frame_to(EV_MAC, EVSE_MAC, mme.CM_SLAC_PARM_CNF(run_id=b"OTHERRUN"))
    events = drive(ev, 10.0, {0.05: [other]})
    assert ev.result is not None and ev.result.diagnosis is Diagnosis.NO_SLAC_PARM_CNF
    assert len(sent(events, "CM_SLAC_PARM.REQ")) == 3


@given(st.lists(st.lists(st.integers(0, 90), min_size=58, max_size=58), min_size=1, max_size=12))
def test_average_profiles_is_the_rounded_mean_per_group(profiles: list[list[int]]) -> None:
    averaged = average_profiles(profiles)
    assert len(averaged) == 58
    for g, value in enumerate(averaged):
        column = [p[g] for p in profiles]
        assert abs(value - sum(column) / len(column)) <= 0.5


def test_state_table_rejects_undefined_transitions() -> None:
    with pytest.raises(IllegalTransition):
        next_state(Role.EV, SlacState.IDLE, Trigger.LINK_UP)
    for role in Role:
        assert TRANSITIONS[role][SlacState.MATCHED] == {} and TRANSITIONS[role][SlacState.FAILED] == {}


def test_several_evse_sessions_run_side_by_side() -> None:
    """Two independent charge points on one host: two cables, one EV each, both match."""
    results = []
    for i in range(2):
        ev = EvSlac(f"02:00:00:00:1{i}:02", FAST, random_bytes=seeded(10 + i).randbytes)
        evse = EvseSlac(f"02:00:00:00:1{i}:01", FAST, random_bytes=seeded(20 + i).randbytes)
        cable = cable_with((ev, SimModem(ev.mac)), (evse, SimModem(evse.mac, attenuation=AttenuationModel())))
        results.append(cable.run())
    assert all(r.matched for pair in results for r in pair)
    assert results[0][0].nmk != results[1][0].nmk


def validating(mac: str, seed: int) -> EvseSlac:
    return EvseSlac(mac, FAST, random_bytes=seeded(seed).randbytes, validate=True)


def test_validate_counts_the_toggles_on_the_plug() -> None:
    ev, evse = ev_machine(validate=True), validating(EVSE_MAC, 2)
    cable = SimCable()
    cable.add(ev, ev_modem(), plug=0)
    cable.add(evse, evse_modem(), plug=0)
    ev_result, evse_result = cable.run()
    assert ev_result.matched and evse_result.matched
    assert 1 <= ev.bc_toggles <= FAST.C_EV_vald_nb_toggles and evse.toggles == ev.bc_toggles


def test_validate_rejects_an_adjacent_charger_that_looks_closer() -> None:
    """Bad bonding makes the neighbour's attenuation lower; only the EVSE on our plug counts our
    toggles, so validation moves on to it (CM_VALIDATE resolves cross-talk)."""
    recorder = Recorder()
    ev = ev_machine(validate=True)
    cable = SimCable()
    cable.add(ev, ev_modem(), plug=0)
    cable.add(validating(ADJACENT_MAC, 3), evse_modem(ADJACENT_MAC, 15.0), plug=1)
    cable.add(validating(EVSE_MAC, 2), evse_modem(EVSE_MAC, 28.0), plug=0)
    ev_result, _adjacent, evse_result = cable.run(on_event=recorder)
    assert ev_result.matched and ev_result.peer_mac == EVSE_MAC and evse_result.matched
    assert [e.evse_mac for e in recorder.of(0, EvseChosen)] == [ADJACENT_MAC, EVSE_MAC]  # type: ignore[attr-defined]


def test_validate_fails_when_no_evse_sees_the_toggles() -> None:
    cable = SimCable()
    cable.add(ev_machine(validate=True), ev_modem(), plug=0)
    cable.add(validating(EVSE_MAC, 2), evse_modem(), plug=1)
    ev_result, _ = cable.run()
    assert ev_result.diagnosis is Diagnosis.VALIDATE_FAILED and "counted 0" in ev_result.detail
    assert ev_result.diagnosis.exit_code == 20


def test_evse_toggle_window_is_bounded_by_tt_evse_vald_toggle() -> None:
    evse = validating(EVSE_MAC, 2)
    inbound = _evse_until_atten_char(evse, b"RUNID123", 10)
    rsp = _frame_to(EVSE_MAC, EV_MAC, mme.CM_ATTEN_CHAR_RSP(source_address=EV_MAC, run_id=b"RUNID123"))
    step2 = _frame_to(EVSE_MAC, EV_MAC, mme.CM_VALIDATE_REQ(timer=200, result=1))  # asks for 20 s
    inbound.update({0.75: [rsp], 0.8: [step2]})
    events = drive(evse, 6.0, inbound)
    assert sent(events, "CM_VALIDATE.CNF") == pytest.approx([0.8 + FAST.TT_EVSE_vald_toggle])


class SilentLink:
    """A link nobody answers on, with a virtual clock that a wait advances."""

    mac = EV_MAC

    def __init__(self) -> None:
        self.now = 0.0
        self.sent: list[tuple[float, bytes]] = []

    def clock(self) -> float:
        return self.now

    def send(self, frame: bytes) -> None:
        self.sent.append((self.now, frame))

    def recv(self, timeout: float) -> bytes | None:
        self.now += timeout
        return None


def test_run_slac_drives_a_role_to_its_diagnosis_on_the_given_clock() -> None:
    from v2gtool.slac.runner import run_slac

    link = SilentLink()
    result = run_slac(Role.EV, link, FAST, link.clock)
    assert result.diagnosis is Diagnosis.NO_SLAC_PARM_CNF
    assert [round(t, 3) for t, _ in link.sent] == [0.0, 0.2, 0.4]
    assert link.now == pytest.approx(0.6)
