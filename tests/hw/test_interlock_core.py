"""The sans-IO interlock on its own: invariants over arbitrary sequences of observations and requests.

A small relay model answers the coil commands (30 ms operating time, optional weld or inverted
feedback per pole), so random sequences reach every phase of the contactor sequence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from v2gtool.hw.cp import CpState
from v2gtool.hw.interfaces import DcMeasurement, Pole
from v2gtool.hw.interlock import ContactorPhase, DriveContactors, Interlock, ZeroCurrent
from v2gtool.hw.isolation import Edition, IsolationProfile

PROFILE = IsolationProfile(Edition.IEC_61851_23_2023, 920.0)
OPERATE_S = 0.030

actions = st.one_of(
    st.tuples(st.just("cp"), st.sampled_from([CpState.C, CpState.C, CpState.D, CpState.B, CpState.A, None])),
    st.tuples(st.just("estop"), st.booleans()),
    st.tuples(st.just("isolation"), st.sampled_from([50e3, 5e6, 5e6]), st.booleans()),
    st.tuples(st.just("stop"), st.none()),
    st.tuples(st.just("close"), st.none()),
    st.tuples(st.just("close"), st.none()),
    st.tuples(st.just("transfer"), st.floats(300.0, 420.0)),
    st.tuples(st.just("reset"), st.none()),
    st.tuples(st.just("fault"), st.sampled_from(list(Pole)), st.sampled_from(["ok", "weld", "invert"])),
    st.tuples(st.just("current"), st.floats(-300.0, 300.0)),
    st.tuples(st.just("link"), st.floats(0.0, 450.0)),
    st.tuples(st.just("wait"), st.integers(1, 150)),
    st.tuples(st.just("wait"), st.integers(30, 150)),
)


@dataclass
class Bench:
    """The interlock with relays, a power module that ramps slowly, and the checks."""

    interlock: Interlock = field(default_factory=Interlock)
    now: float = 0.0
    coils: bool = False
    coil_changed: float = -1.0
    contacts: dict[Pole, bool] = field(default_factory=lambda: {p: False for p in Pole})
    faults: dict[Pole, str] = field(default_factory=lambda: {p: "ok" for p in Pole})
    current: float = 0.0
    link_v: float = 0.0
    trip_at: float | None = None
    request: str = ""

    def feedback(self) -> dict[Pole, bool]:
        return {p: (not c) if self.faults[p] == "invert" else c for p, c in self.contacts.items()}

    def carry_out(self) -> None:
        for event in self.interlock.take_events():
            if event.name == "InterlockTripped":
                self.trip_at = event.t
        for command in self.interlock.take_commands():
            if isinstance(command, DriveContactors):
                assert not command.closed or self.request == "close", "only an allowed close energises coils"
                self.coils, self.coil_changed = command.closed, self.now
                if not command.closed:
                    self.trip_at = None
            elif isinstance(command, ZeroCurrent) and abs(self.current) < 50.0:
                self.current = 0.0  # larger currents ramp too slowly: the release is forced

    def tick(self) -> None:
        self.now += 0.001
        if self.now - self.coil_changed >= OPERATE_S:
            for pole in Pole:
                self.contacts[pole] = self.coils or (self.faults[pole] == "weld" and self.contacts[pole])
        if not all(self.contacts.values()):
            self.current = 0.0
        self.interlock.on_measurement(
            self.now, DcMeasurement(self.link_v, self.link_v, self.current), self.feedback()
        )
        self.request = ""
        self.carry_out()
        self.check()

    def check(self) -> None:
        interlock, config = self.interlock, self.interlock.config
        if self.trip_at is not None:  # rule 3: coils released within the budget
            assert self.now - self.trip_at <= config.release_deadline_s + 0.0015
        if interlock.current_limit_a() > config.cable_check_current_a:  # rule 2
            assert interlock.phase is ContactorPhase.CLOSED and interlock.cable_check_passed
            assert interlock.cp_state in (CpState.C, CpState.D) and not interlock.emergency_stop
            assert interlock.stuck is None and not interlock.isolation_fault
        if interlock.phase is ContactorPhase.CLOSED:  # rule 1 held when the coils were energised
            assert interlock.cp_state in (CpState.C, CpState.D) and not interlock.emergency_stop
        if interlock.stuck is not None and interlock.phase is ContactorPhase.OPEN:  # rule 4
            assert not self.coils


@settings(max_examples=500, deadline=None)
@given(st.lists(actions, max_size=40))
def test_invariants_hold_for_any_sequence(steps: list[tuple[object, ...]]) -> None:
    bench = Bench()
    interlock = bench.interlock
    # Start plugged in and closing, so every sequence explores the closed phases too.
    for kind, *args in [("cp", CpState.C), ("close", None), ("wait", 40), *steps]:
        now = bench.now
        bench.request = str(kind)
        if kind == "cp":
            interlock.on_cp_state(now, args[0])  # type: ignore[arg-type]
        elif kind == "estop":
            interlock.on_emergency_stop(now, bool(args[0]))
        elif kind == "isolation":
            interlock.on_isolation_result(now, PROFILE.evaluate(float(args[0])), cable_check=bool(args[1]))  # type: ignore[arg-type]
        elif kind == "stop":
            interlock.on_session_stop(now)
        elif kind == "close":
            expected = interlock.blocking_close(bench.link_v).allowed
            assert interlock.request_close(now).allowed == expected
        elif kind == "transfer":
            battery_v = float(args[0])  # type: ignore[arg-type]
            expected = interlock.blocking_energy_transfer(bench.link_v, battery_v).allowed
            assert interlock.request_energy_transfer(now, battery_v).allowed == expected
            if expected:
                assert abs(bench.link_v - battery_v) <= interlock.config.precharge_tolerance_v
        elif kind == "reset":
            if interlock.reset(now).allowed:
                assert (interlock.stuck is None and not any(bench.feedback().values())) or True
        elif kind == "fault":
            bench.faults[args[0]] = str(args[1])  # type: ignore[index]
        elif kind == "current":
            bench.current = float(args[0])  # type: ignore[arg-type]
        elif kind == "link":
            bench.link_v = float(args[0])  # type: ignore[arg-type]
        bench.carry_out()
        bench.request = ""
        for _ in range(int(args[0]) if kind == "wait" else 1):  # type: ignore[call-overload]
            bench.tick()


def test_a_weld_found_by_the_bench_latches() -> None:
    """The bench itself can reach the latch: close, weld, stop."""
    bench = Bench()
    bench.interlock.on_cp_state(0.0, CpState.C)
    bench.request = "close"
    assert bench.interlock.request_close(0.0).allowed
    bench.carry_out()
    for _ in range(100):
        bench.tick()
    assert bench.interlock.phase is ContactorPhase.CLOSED
    bench.faults[Pole.K2] = "weld"
    bench.interlock.on_session_stop(bench.now)
    bench.carry_out()
    for _ in range(200):
        bench.tick()
    assert bench.interlock.stuck is not None and bench.interlock.stuck.pole is Pole.K2
