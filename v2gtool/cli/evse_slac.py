"""``v2gtool evse-slac``: run ISO 15118-3 SLAC as EVSE or EV and show what happened.

Live timeline of the MMEs with timings, the attenuation profile per group (table and chart),
the match result (peer MAC, RunID, NID; the NMK only with ``--show-key``), and on failure a
diagnosis in the engineer's terms with a distinct exit code (see
:class:`~v2gtool.slac.diagnosis.Diagnosis`).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from v2gtool.cli.context import app_context
from v2gtool.cli.output import emit_json, json_option, use_json
from v2gtool.cli.params import FiniteFloat, MacAddress
from v2gtool.cli.progress import Spinner, spinner
from v2gtool.errors import ConfigError
from v2gtool.net.pcapwriter import LINKTYPE_ETHERNET, PcapWriter
from v2gtool.session.events import Event
from v2gtool.slac import mme
from v2gtool.slac.cable import SimCable
from v2gtool.slac.diagnosis import Diagnosis, SlacFailed
from v2gtool.slac.events import (
    AttenuationMeasured,
    BcToggleRequest,
    ControlPilotRequest,
    EvseChosen,
    MmeReceived,
    MmeRejected,
    MmeSent,
    SlacFailedEvent,
    SlacMatched,
    SlacStateChanged,
)
from v2gtool.slac.evse import EvseSlac
from v2gtool.slac.machine import SlacResult
from v2gtool.slac.modem_sim import AttenuationModel, SimModem
from v2gtool.slac.runner import ModemLink, SlacLink, make_machine, run_slac
from v2gtool.slac.states import WAITING_FOR, Role, SlacState
from v2gtool.slac.timers import SlacTimers

SIM_EV_MAC = "02:00:00:00:0e:02"
SIM_EVSE_MAC = "02:00:00:00:0e:01"
SIM_ADJACENT_MAC = "02:00:00:00:0e:03"
_BARS = "▁▂▃▄▅▆▇█"


def attenuation_chart(
    aag: tuple[int, ...] | list[int], low: int = 0, high: int = 70, per_bar: int = 2
) -> str:
    """A compact one-line chart of the AAG groups: one bar per *per_bar* groups (their mean),
    scaled from *low* to *high* dB."""
    span = max(high - low, 1)
    means = [sum(aag[i : i + per_bar]) / len(aag[i : i + per_bar]) for i in range(0, len(aag), per_bar)]
    return "".join(_BARS[min(len(_BARS) - 1, max(0, int((m - low) * len(_BARS) // span)))] for m in means)


class Renderer:
    """Turns SLAC events into the live timeline (rich) or JSON lines; event times are seconds
    since the start of the run (the clock both links give the machines)."""

    def __init__(self, console: Console, as_json: bool, show_key: bool) -> None:
        self.console = console
        self.as_json = as_json
        self.show_key = show_key
        self.profiles: dict[str, AttenuationMeasured] = {}

    def __call__(self, event: Event, who: str = "") -> None:
        if isinstance(event, AttenuationMeasured):
            self.profiles[event.evse_mac] = event
        if self.as_json:
            record = event.to_json()
            if isinstance(event, SlacMatched) and not self.show_key:
                record["nmk"] = None
            if who:
                record["station"] = who
            emit_json(record)
            return
        line = self._line(event)
        if line:
            prefix = f"[dim]{event.t:8.3f}s[/dim] " + (f"[bold]{who:<5}[/bold] " if who else "")
            self.console.print(prefix + line, highlight=False, soft_wrap=True)

    def _line(self, event: Event) -> str | None:
        match event:
            case MmeSent():
                return f"[cyan]→ {event.mme:<24}[/cyan] to {event.dst}  ({event.size} B)"
            case MmeReceived():
                return f"[green]← {event.mme:<24}[/green] from {event.src}  ({event.size} B)"
            case MmeRejected():
                return f"[red]✗ {escape(event.reason)}[/red]"
            case SlacStateChanged():
                return f"[dim]  {event.old} → {event.new}[/dim]"
            case ControlPilotRequest():
                return f"[magenta]  CP: {event.cp}[/magenta]"
            case EvseChosen():
                return f"[bold]  chose {event.evse_mac} at {event.average_db:.1f} dB[/bold]"
            case BcToggleRequest():
                duration = f"{event.state_duration * 1000:.0f} ms"
                return f"[magenta]  CP: {event.count} B-C-B toggle(s), {duration} per state[/magenta]"
            case SlacFailedEvent():
                return f"[red bold]  FAILED: {event.diagnosis}[/red bold] {escape(event.detail)}"
            case SlacMatched():
                return "[green bold]  MATCHED[/green bold]"
        return None

    def summary(self, result: SlacResult) -> None:
        if self.as_json:
            emit_json(result_record(result, self.show_key))
            return
        if self.profiles:
            table = Table(title="Attenuation per EVSE (AAG, 58 groups)", title_justify="left")
            table.add_column("EVSE", no_wrap=True)
            for column in ("sounds", "avg dB", "range"):
                table.add_column(column, justify="right")
            table.add_column("groups 1..58, 0..70 dB", no_wrap=True)
            for mac, p in sorted(self.profiles.items(), key=lambda kv: kv[1].average_db):
                chosen = mac == result.peer_mac and result.role is Role.EV
                table.add_row(
                    f"[bold]{mac}[/bold]" if chosen else mac,
                    str(p.num_sounds),
                    f"{p.average_db:.1f}",
                    f"{min(p.aag)}-{max(p.aag)}",
                    attenuation_chart(p.aag, per_bar=3),
                )
            self.console.print(table)
        if result.matched:
            assert result.run_id is not None and result.nid is not None and result.nmk is not None
            self.console.print(f"[green bold]Matched[/green bold] {result.role.value} with {result.peer_mac}")
            self.console.print(f"  RunID {result.run_id.hex()}  NID {result.nid.hex()}")
            self.console.print(f"  NMK   {result.nmk.hex() if self.show_key else '(hidden; --show-key)'}")
            if result.t_slac_parm_req is not None and result.t_link_ready is not None:
                elapsed = result.t_link_ready - result.t_slac_parm_req
                self.console.print(f"  CM_SLAC_PARM.REQ → link ready: {elapsed * 1000:.0f} ms")
        if result.decode_errors:
            self.console.print(f"[yellow]{result.decode_errors} malformed frame(s) ignored[/yellow]")


def result_record(result: SlacResult, show_key: bool) -> dict[str, Any]:
    return {
        "event": "SlacResult",
        "role": result.role.value,
        "matched": result.matched,
        "peer_mac": result.peer_mac,
        "run_id": result.run_id.hex() if result.run_id else None,
        "nid": result.nid.hex() if result.nid else None,
        "nmk": result.nmk.hex() if result.nmk and show_key else None,
        "diagnosis": result.diagnosis.name if result.diagnosis else None,
        "exit_code": result.diagnosis.exit_code if result.diagnosis else 0,
        "detail": result.detail,
        "attenuation_db": result.attenuation_db,
        "t_slac_parm_req": result.t_slac_parm_req,
        "t_link_ready": result.t_link_ready,
        "decode_errors": result.decode_errors,
    }


def parse_timers(
    config_timers: dict[str, Any], options: tuple[str, ...], threshold: float | None
) -> SlacTimers:
    """The ``[slac.timers]`` of the config with each ``--timer NAME=VALUE`` and ``--threshold`` on top;
    a bad value is an error naming what the user wrote, the option or the config key."""
    changes: dict[str, Any] = {}
    for item in options:
        name, sep, value = (part.strip() for part in item.partition("="))
        if not sep:
            raise ConfigError(f"--timer {item!r}: expected NAME=VALUE, e.g. TT_match_response=0.2")
        try:
            changes[name] = SlacTimers.setting(name, value)
        except KeyError:
            raise ConfigError(f"--timer {item!r}: unknown SLAC timer {name!r}") from None
        except ValueError as exc:
            raise ConfigError(f"--timer {item!r}: {value} {exc}") from None
    if threshold is not None:
        try:
            changes["attenuation_threshold_db"] = SlacTimers.setting("attenuation_threshold_db", threshold)
        except ValueError as exc:
            raise ConfigError(f"--threshold: {threshold:g} {exc}") from None
    return dataclasses.replace(SlacTimers.from_mapping(config_timers, where="[slac.timers]"), **changes)


def run_sim(
    role: Role,
    timers: SlacTimers,
    renderer: Renderer,
    pcap: PcapWriter | None,
    *,
    validate: bool,
    attenuation_db: float,
    adjacent_db: float | None,
    seed: int,
) -> SlacResult:
    """Both roles (and an adjacent charger) on the in-process simulated cable."""
    cable = SimCable()
    names = ["EV", "EVSE"]
    # The EV is plugged into the EVSE (plug 0): only that EVSE sees its CM_VALIDATE toggles.
    cable.add(
        make_machine(Role.EV, SIM_EV_MAC, timers, validate=validate), SimModem(SIM_EV_MAC, seed=seed), plug=0
    )
    cable.add(
        EvseSlac(SIM_EVSE_MAC, timers, validate=validate),
        SimModem(
            SIM_EVSE_MAC,
            modem_mac="00:b0:52:00:00:e1",
            seed=seed + 1,
            attenuation=AttenuationModel(base_db=attenuation_db),
        ),
        plug=0,
    )
    if adjacent_db is not None:
        names.append("ADJ")
        cable.add(
            EvseSlac(SIM_ADJACENT_MAC, timers, validate=validate),
            SimModem(
                SIM_ADJACENT_MAC,
                modem_mac="00:b0:52:00:00:e3",
                seed=seed + 2,
                attenuation=AttenuationModel(base_db=adjacent_db),
            ),
            plug=1,
        )
    mine = 0 if role is Role.EV else 1
    wall0 = time.time()

    def on_frame(index: int, t: float, frame: bytes, _sent: bool) -> None:
        if pcap is not None and index == mine:
            pcap.write(wall0 + t, frame)

    (result,) = cable.run(on_event=lambda i, e: renderer(e, names[i]), on_frame=on_frame, wait_for=[mine])
    return result


def _check_link_options(ctx: click.Context, kind: str) -> None:
    """Options of the other kind of link are a usage error, not silently ignored."""
    foreign = ("iface", "backend", "modem_mac") if kind == "sim" else ("sim_adjacent",)
    given = [f"--{name.replace('_', '-')}" for name in foreign
             if ctx.get_parameter_source(name) is click.core.ParameterSource.COMMANDLINE]
    if given:
        raise click.UsageError(f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to --link {kind}")


# The diagnoses of a failed matching are exit codes of their own (v2gtool.slac.diagnosis).
EXIT_CODES = (
    "\b\nExit codes:\n"
    "  0  matched: the link is up\n"
    "  1  a modem or hardware error\n"
    "  2  bad option or configuration\n"
    "  4  environment: no such interface, no raw socket (root or CAP_NET_RAW)\n"
    + "".join(f"  {diagnosis.exit_code}  {diagnosis.summary}\n" for diagnosis in Diagnosis)
    + "  130  interrupted (SIGINT)\n"
)


@click.command("evse-slac", epilog=EXIT_CODES)
@click.option(
    "--role",
    type=click.Choice(["evse", "ev"]),
    default="evse",
    show_default=True,
    help="Which side of the matching to play (and report).",
)
@click.option(
    "--link",
    "link_kind",
    type=click.Choice(["sim", "raw"]),
    default=None,
    help="sim: both roles over an in-process simulated cable (no root). raw: AF_PACKET on --iface. "
    "[default: raw when --iface is given, else sim]",
)
@click.option("--iface", help="Interface towards the PLC modem (e.g. eth0, plc0) for --link raw "
              "[default: [slac] iface].")
@click.option(
    "--backend",
    type=click.Choice(["sim", "hw"]),
    default="hw",
    show_default=True,
    help="With --link raw: hw = a real QCA7000 modem on --iface; sim = the simulated modem in this process.",
)
@click.option(
    "--modem-mac",
    type=MacAddress(unicast=True),
    default=mme.QCA_LOCAL_MAC,
    show_default=True,
    help="Unicast address of the own modem, which gets CM_SET_KEY.REQ with the NMK.",
)
@click.option(
    "--timer",
    "timers_opt",
    multiple=True,
    metavar="NAME=SECONDS",
    help="Override a Table A.1 timer/counter, e.g. TT_EVSE_SLAC_init=20 or C_EV_match_retry=3.",
)
@click.option("--threshold", type=FiniteFloat(),
              help="Highest average attenuation the EV accepts, dB; an EVSE that measured more names it as "
                   "the cause of a failed matching [default: 40].")
@click.option(
    "--validate",
    is_flag=True,
    help="EV: run CM_VALIDATE (B-C-B toggles) before CM_SLAC_MATCH; --link sim: the EVSEs count them.",
)
@click.option("--show-key", is_flag=True, help="Show the NMK in the result.")
@click.option(
    "--pcap",
    "pcap_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write every frame sent and received to this pcap file.",
)
@click.option(
    "--sim-attenuation",
    type=FiniteFloat(),
    default=20.0,
    show_default=True,
    help="--link sim / --backend sim: attenuation EV -> EVSE, dB.",
)
@click.option(
    "--sim-adjacent",
    type=FiniteFloat(),
    default=None,
    help="--link sim: add an adjacent charger at this attenuation, dB (cross-talk).",
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the simulated modems' noise.")
@json_option
@click.pass_context
def evse_slac(
    ctx: click.Context,
    role: str,
    link_kind: str | None,
    iface: str | None,
    backend: str,
    modem_mac: str,
    timers_opt: tuple[str, ...],
    threshold: float | None,
    validate: bool,
    show_key: bool,
    pcap_path: Path | None,
    sim_attenuation: float,
    sim_adjacent: float | None,
    seed: int,
    json_out: bool,
) -> None:
    """Run ISO 15118-3 SLAC (HomePlug Green PHY matching) as EVSE or EV.

    \b
    Examples:
      v2gtool evse-slac                         # both roles on a simulated cable
      v2gtool evse-slac --role ev --sim-adjacent 32   # cross-talk from a neighbour
      v2gtool evse-slac --iface eth0 --pcap slac.pcap # EVSE on a real QCA7000 (root)

    Times (the timeline, and with --json every event's `t` and the result's `t_slac_parm_req`
    and `t_link_ready`) are seconds since the start, on both links.
    """
    app = app_context(ctx)
    as_json = use_json(ctx, json_out)
    config_timers = app.config.get("slac", "timers", {})
    timers = parse_timers(dict(config_timers), timers_opt, threshold)
    the_role = Role(role)
    kind = link_kind or ("raw" if iface else "sim")
    _check_link_options(ctx, kind)
    if kind == "raw":  # as serve and connect: the option, else [slac] iface, else a usage error
        iface_param = next(param for param in ctx.command.params if param.name == "iface")
        iface = str(app.option_or_config(ctx, iface_param, iface, "slac", "iface"))
    renderer = Renderer(app.console, as_json, show_key)
    pcap = PcapWriter(pcap_path, LINKTYPE_ETHERNET) if pcap_path else None
    try:
        if kind == "sim":
            result = run_sim(
                the_role,
                timers,
                renderer,
                pcap,
                validate=validate,
                attenuation_db=sim_attenuation,
                adjacent_db=sim_adjacent,
                seed=seed,
            )
        else:
            assert iface is not None
            with spinner(ctx, f"opening {iface}", as_json) as waiting:
                result = _run_raw(
                    the_role,
                    iface,
                    backend,
                    modem_mac,
                    timers,
                    renderer,
                    pcap,
                    waiting,
                    validate=validate,
                    attenuation_db=sim_attenuation,
                    seed=seed,
                )
    finally:
        if pcap is not None:
            pcap.close()
    renderer.summary(result)
    if pcap is not None and not as_json:
        app.console.print(f"{pcap.count} frames written to {pcap.path}", soft_wrap=True, highlight=False)
    if result.diagnosis is not None:
        raise SlacFailed(result.diagnosis, result.detail)


def _run_raw(
    role: Role,
    iface: str,
    backend: str,
    modem_mac: str,
    timers: SlacTimers,
    renderer: Renderer,
    pcap: PcapWriter | None,
    waiting: Spinner,
    *,
    validate: bool,
    attenuation_db: float,
    seed: int,
) -> SlacResult:
    from v2gtool.net.rawsock import RawSocketLink

    with RawSocketLink(iface, mme.ETHERTYPE_HOMEPLUG_AV) as raw:
        link: SlacLink = raw
        if backend == "sim":
            modem = SimModem(
                raw.mac,
                seed=seed,
                attenuation=AttenuationModel(base_db=attenuation_db) if role is Role.EVSE else None,
            )
            link = ModemLink(raw, modem)
        # Seconds since the start, as on --link sim: the JSON `t`, `t_slac_parm_req` and
        # `t_link_ready` mean the same on both links (the pcap gets wall-clock time).
        start, wall0 = time.monotonic(), time.time()

        def clock() -> float:
            return time.monotonic() - start

        def on_frame(t: float, frame: bytes, _sent: bool) -> None:
            if pcap is not None:
                pcap.write(wall0 + t, frame)

        on_event = follow_slac(waiting, role, iface, renderer)
        return run_slac(
            role, link, timers, clock, validate=validate, modem_mac=modem_mac, on_event=on_event, on_frame=on_frame
        )


def follow_slac(
    waiting: Spinner, role: Role, iface: str, emit: Callable[[Event], None]
) -> Callable[[Event], None]:
    """*emit* every event, and keep the spinner's text on what the matching on *iface* waits for."""
    texts = WAITING_FOR[role]

    def on_event(event: Event) -> None:
        if isinstance(event, SlacStateChanged) and (text := texts.get(SlacState(event.new))):
            waiting.update(f"{text} on {iface}")
        emit(event)

    return on_event
