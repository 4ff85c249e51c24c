"""``session run --sim``: both roles of an ISO 15118-20 session over real TCP on loopback.

The chain: CP to 5 %, SLAC on the simulated cable (:mod:`v2gtool.session.slac_step`), SDP on the
simulated link (:mod:`v2gtool.session.sdp_step`), then the -20 session over TCP on loopback, which
stands for the link-local connection to the SECC that SDP announced.

The SECC and the EVCC are the sans-IO engines of :mod:`v2gtool.iso20`; here they get sockets and a
clock. Both sides share one simulated plant (:mod:`v2gtool.hw.sim`): the SECC's station and the
EV's battery are the two ends of the same DC cable. Simulated time advances by the EVCC's cadence
(its pace between requests); ``speed`` says how much faster than real time that runs (None: as
fast as possible). Message timeouts are enforced on the transport's wall clock, as on a charger.
"""

from __future__ import annotations

import asyncio
import dataclasses
import errno
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from v2gtool.errors import V2GToolError
from v2gtool.exit_codes import ExitCode
from v2gtool.hw.backends import sim_station
from v2gtool.hw.cp import CpState
from v2gtool.hw.isolation import Edition, IsolationProfile
from v2gtool.hw.station import STOP_ACTION_TIMEOUT_S, Station, StationConfig
from v2gtool.iso20.evcc import Evcc, EvccConfig
from v2gtool.iso20.events import MessageSent, SessionEnded
from v2gtool.iso20.pnc import Contract
from v2gtool.iso20.ports import GridRequest
from v2gtool.iso20.secc import Secc, SeccConfig
from v2gtool.iso20.timeouts import Timeouts
from v2gtool.iso20.values import ServiceID
from v2gtool.net.v2g_tcp import Ending, run_evcc, serve_connection
from v2gtool.session.events import Event
from v2gtool.session.plant import SimVehiclePort, StationCharger
from v2gtool.session.scenario import SessionScenario
from v2gtool.session.sdp_step import run_sdp
from v2gtool.session.slac_step import run_slac
from v2gtool.session.trace import TraceSink

Listener = Callable[[Event], None]

#: How often a session that ended polls its stop actions still running.
_STOP_ACTION_POLL_S = 0.05


@dataclass
class SessionResult:
    """How a session ended, what moved and what was said."""

    ok: bool
    reason: str  # the EV's, or the SECC's when its timeout ended the session (the EV lost the link)
    secc_reason: str
    requests: list[str] = field(default_factory=list)
    energy_wh: float = 0.0
    soc_start: float = 0.0
    soc_end: float = 0.0
    duration: float = 0.0
    events: list[Event] = field(default_factory=list)
    ending: Ending | None = None  # how the EVCC's connection ended (None: it never got one)


class TraceWriteFailed(V2GToolError):
    """The session's trace could not be written (a full disk, an I/O error): the machine's fault,
    not the session's (README "Exit status" 4). The session was ended and the station brought down
    first; :attr:`result` is how the session ended."""

    exit_code = ExitCode.ENVIRONMENT

    def __init__(self, message: str, result: SessionResult) -> None:
        super().__init__(message)
        self.result = result


class _GuardedTrace:
    """A session's trace (:class:`TraceSink`) as :func:`run_sim` writes it: a write error (a full
    disk) must not break the protocol handler that sent the frame, mid-message. The first is kept
    (:attr:`failure`; a :class:`~v2gtool.session.trace.SessionTrace` writes nothing after it), and
    :func:`run_sim` ends the session and raises it once the station is down."""

    def __init__(self, trace: TraceSink) -> None:
        self._trace = trace
        self.epoch = trace.epoch
        self.failure: V2GToolError | None = None

    def ethernet_frame(self, t: float, frame: bytes) -> None:
        self._guarded(lambda: self._trace.ethernet_frame(t, frame))

    def sdp(self, t: float, from_evcc: bool, datagram: bytes) -> None:
        self._guarded(lambda: self._trace.sdp(t, from_evcc, datagram))

    def v2gtp(self, t: float, from_evcc: bool, data: bytes) -> None:
        self._guarded(lambda: self._trace.v2gtp(t, from_evcc, data))

    def close(self, t: float) -> None:
        self._guarded(lambda: self._trace.close(t))

    def _guarded(self, write: Callable[[], None]) -> None:
        try:
            write()
        except V2GToolError as exc:
            self.failure = self.failure or exc


def default_station(scenario: SessionScenario) -> StationConfig:
    """The station of a session without ``[hw]`` settings: the IEC 61851-23:2023 isolation profile
    at the charger's maximum voltage, the default SoC floor, no thermal derating."""
    return StationConfig(IsolationProfile(Edition.IEC_61851_23_2023, scenario.charger.max_voltage))


def no_vehicle(station: Station) -> str | None:
    """Why no session can start on *station*: no vehicle connected (CP state A, IEC 61851-1 Table
    A.3); None when one is. Then the EVSE sets no 5 % duty cycle and starts no SLAC."""
    if station.interlock.cp_state is CpState.A:
        return "no vehicle connected: CP state A (IEC 61851-1 Table A.3)"
    return None


def secc_config(
    scenario: SessionScenario,
    charger: StationCharger,
    *,
    timeouts: Timeouts,
    grid: GridRequest | None = None,
    allowed_services: Callable[[], frozenset[ServiceID]] | None = None,
    stop_request: Callable[[], str | None] | None = None,
    **options: Any,
) -> SeccConfig:
    """The SECC's configuration for *scenario* on *charger*: its services, sign convention and
    metering confirmations, the station's SoC floor, the scenario's grid request (the Dynamic mode's,
    and its ``[[at]]`` ScheduleRenegotiation) unless *grid* (an OCPP charging profile) replaces it, the
    scenario's ``bpt_allowed_from`` unless *allowed_services* (an OCPP NotifyAllowedEnergyTransfer)
    does, and the scenario's ``[[at]]`` Pause and Terminate after the station's own *stop_request*
    (an OCPP remote stop); *options* are further :class:`SeccConfig` fields."""
    return SeccConfig(
        bpt=scenario.bpt,
        timeouts=timeouts,
        grid=grid if grid is not None else scenario.grid(charger.now),
        sign_convention=scenario.sign_convention,
        metering_confirmation_interval=scenario.metering_confirmation_interval,
        discharge_refused=lambda: charger.station.discharge_refused,
        allowed_services=allowed_services or scenario.allowed_services(charger.now),
        stop_request=scenario.stop_request(charger.now, stop_request),
        **options,
    )


def evcc_config(scenario: SessionScenario, battery_capacity_wh: float, **options: Any) -> EvccConfig:
    """The EVCC's configuration for *scenario* (service, control mode, direction, power, duration,
    SoC target and floor, standby) with a battery of *battery_capacity_wh*; *options* override it."""
    settings: dict[str, Any] = {
        "service": scenario.service,
        "control_mode": scenario.control_mode,
        "direction": scenario.direction,
        "target_soc": scenario.target_soc,
        "min_soc": scenario.min_soc,
        "standby_at": scenario.standby_at,
        "standby_for": scenario.standby_for,
        "power": scenario.power,
        "duration": scenario.duration,
        "sign_convention": scenario.sign_convention,
        "battery_capacity_wh": battery_capacity_wh,
    }
    return EvccConfig(**{**settings, **options})


async def finish_stop_actions(station: Station) -> None:
    """:meth:`Station.finish` without holding up the event loop (``ocpp-bridge --sim`` runs many
    sessions in it): wait for the stop actions (``on_fault_exec``) still running, in real time, at
    most :data:`~v2gtool.hw.station.STOP_ACTION_TIMEOUT_S`, then let the station kill what is left
    and report each."""
    deadline = time.monotonic() + STOP_ACTION_TIMEOUT_S
    while station.stop_actions_running and time.monotonic() < deadline:
        await asyncio.sleep(_STOP_ACTION_POLL_S)
    station.finish(timeout=0.0)


async def run_sim(
    scenario: SessionScenario,
    speed: float | None = None,
    listener: Listener | None = None,
    timeouts: Timeouts | None = None,
    trace: TraceSink | None = None,
    contract: Contract | None = None,
    pnc_roots: tuple[x509.Certificate, ...] | None = None,
    grid: GridRequest | None = None,
    tick_s: float = 0.001,
    stop_request: Callable[[], str | None] | None = None,
    allowed_services: Callable[[], frozenset[ServiceID]] | None = None,
    station: StationConfig | None = None,
) -> SessionResult:
    """Run one whole session, EVCC against SECC, on the ``sim`` plant; never raises for a failed
    session (the result says why), only for a broken set-up. *trace* receives every frame. With
    *pnc_roots* the SECC offers Plug & Charge, which the EV uses when it has a *contract*. *grid*
    overrides the scenario's grid request in the Dynamic mode (an OCPP charging profile). *tick_s*
    is the station's control-loop period and the plant's integration step (1 ms; a park of many
    stations may run coarser). *stop_request* is asked at every loop whether the station wants
    the session ended ("Terminate" or "Pause": an EVSENotification to the EV). *allowed_services*
    (an OCPP NotifyAllowedEnergyTransfer) overrides the scenario's ``bpt_allowed_from``. *station*
    is the station's configuration (the ``[hw]`` settings: isolation edition, SoC floor, thermal
    derating; default :func:`default_station`), run at *tick_s*. A stop action (``on_fault_exec``)
    still running at the end is waited for and reported (:func:`finish_stop_actions`).

    A *trace* that cannot be written (a full disk) ends the session as the station's wish does
    (EVSENotification Terminate at the next DC_ChargeLoopRes; standards.md 4.2), and once the session
    ended and the station is down, :class:`TraceWriteFailed` is raised with its result
    (:class:`BrokenPipeError` for a trace into a pipe whose reader left)."""
    events: list[Event] = []
    traced = _GuardedTrace(trace) if trace is not None else None

    def emit(event: Event) -> None:
        events.append(event)
        if listener is not None:
            listener(event)

    setup = sim_station(
        dataclasses.replace(station or default_station(scenario), tick_s=tick_s),
        scenario.plant,
        listener=emit,
        resolution_s=tick_s,
    )
    charger = StationCharger(setup, scenario.charger)
    vehicle = SimVehiclePort(setup, scenario.vehicle)
    setup.station.run(0.01)  # the pilot settles in state C

    def finished(result: SessionResult) -> SessionResult:
        """*result*, once the trace is closed; :class:`TraceWriteFailed` when it could not be written,
        :class:`BrokenPipeError` when the reader of a trace to a pipe left (``--trace - | head``: what
        the command ends quietly on, as any reader that leaves early)."""
        if traced is not None:
            traced.close(charger.now())
            failure = traced.failure
            if failure is not None:
                if isinstance(failure.__cause__, BrokenPipeError):
                    raise BrokenPipeError(errno.EPIPE, "the reader of the trace left") from failure
                raise TraceWriteFailed(str(failure), result) from failure
        return result

    def stop_wanted() -> str | None:
        if traced is not None and traced.failure is not None:
            return "Terminate"
        return stop_request() if stop_request is not None else None

    soc = vehicle.soc_percent()  # a session that never starts leaves the battery where it was
    if (absent := no_vehicle(setup.station)) is not None:
        return finished(
            SessionResult(ok=False, reason=absent, secc_reason="", soc_start=soc, soc_end=soc, events=events)
        )
    slac = run_slac(setup, emit, on_frame=traced.ethernet_frame if traced is not None else None)
    if not slac.matched:
        diagnosis = slac.diagnosis.name if slac.diagnosis is not None else "no match"
        return finished(
            SessionResult(
                ok=False, reason=f"SLAC failed: {diagnosis} {slac.detail}".strip(), secc_reason="",
                soc_start=soc, soc_end=soc, events=events,
                # a peer silent past an ISO 15118-3 Table A.1 timer: a timeout (README "Exit status" 3)
                ending=Ending.TIMEOUT if slac.diagnosis is not None and slac.diagnosis.is_timeout else None,
            )
        )
    run_sdp(charger.now(), emit, traced.sdp if traced is not None else None)
    timeouts = timeouts or Timeouts()
    # Simulated time runs faster than the wall clock: messages carry Unix time on the simulation's
    # own time line, the one its trace stamps frames with (ISO 15118-20 Header TimeStamp, 8.3.5.3.1).
    epoch = traced.epoch if traced is not None else time.time() - charger.now()
    secc = Secc(
        secc_config(
            scenario,
            charger,
            timeouts=timeouts,
            grid=grid,
            pnc_roots=pnc_roots,
            stop_request=stop_wanted,
            allowed_services=allowed_services,
            epoch=epoch,
        ),
        charger,
        charger.now(),
    )
    evcc = Evcc(
        evcc_config(scenario, setup.plant.battery_capacity_wh, contract=contract, timeouts=timeouts, epoch=epoch),
        vehicle,
    )
    soc_start = vehicle.soc_percent()
    started = charger.now()
    requests: list[str] = []

    def forward(event: Event) -> None:
        for plant_event in charger.events:  # the cable check reports between requests
            emit(plant_event)
        charger.events.clear()
        emit(event)
        if isinstance(event, MessageSent) and event.role == "EVCC":
            requests.append(event.message)

    async def pace(seconds: float) -> None:
        charger.advance(charger.now() + seconds)
        if speed:
            await asyncio.sleep(seconds / speed)

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await serve_connection(
            secc,
            reader,
            writer,
            charger.now,
            forward,
            tap=(lambda data: traced.v2gtp(charger.now(), False, data)) if traced else None,
        )

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        outcome = await run_evcc(
            evcc,
            reader,
            writer,
            charger.now,
            forward,
            pace,
            tap=(lambda data: traced.v2gtp(charger.now(), True, data)) if traced else None,
        )
    finally:
        server.close()
        await server.wait_closed()
    charger.stop()
    setup.station.run(0.2)  # contactors open, output bleeds down
    await finish_stop_actions(setup.station)
    ending, reason = outcome.ending, evcc.end_reason
    if ending in (Ending.CLOSED, Ending.FAILED) and _secc_timed_out(secc, events):
        # The SECC's own timeout ended the session and closed the connection, which is all the EV
        # saw: that timeout is the cause (README "Exit status" 3), and the SECC's reason names it.
        ending, reason = Ending.TIMEOUT, secc.end_reason
    return finished(
        SessionResult(
            ok=evcc.ok and not (secc.ended and "FAILED" in secc.end_reason),
            reason=reason,
            secc_reason=secc.end_reason,
            requests=requests,
            energy_wh=evcc.energy_wh,
            soc_start=soc_start,
            soc_end=vehicle.soc_percent(),
            duration=charger.now() - started,
            events=events,
            ending=ending,
        )
    )


def _secc_timed_out(secc: Secc, events: list[Event]) -> bool:
    """Whether *secc* ended its session by its own timeout (V2G_SECC_CommunicationSetup_Timeout or
    V2G_SECC_Sequence_Timeout), as its SessionEnded in *events* shows: a request answered in time
    moves :attr:`Secc.deadline` on, so a session the SECC ended at or past it ended by
    :meth:`Secc.on_timeout`, called by the transport once the deadline passed or by
    :meth:`Secc.receive` for a request that came after it (a simulated clock jumped past it)."""
    ended = next((e for e in events if isinstance(e, SessionEnded) and e.role == "SECC"), None)
    return ended is not None and not ended.ok and ended.t >= secc.deadline
