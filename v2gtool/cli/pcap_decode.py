"""``v2gtool pcap-decode``: decode a V2G capture and answer the field engineer's questions.

Reads pcap/pcapng from a file, stdin (``-``) or a growing trace (``--follow``); dissects SLAC, SDP,
TCP, TLS (with ``--keylog`` or secrets disclosed in the capture), V2GTP and EXI; prints a tree per
message and a summary, or ``--json`` lines. The exit code is 1 when the trace shows a protocol
error (undecodable or missing data, a FAILED response code, a response over its timeout or never
given, a TLS handshake that never completed), so a charger's CI can gate on it; bad input and
options are 2, never 1.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import click
from rich.console import Console
from rich.table import Table

from v2gtool.cli.context import app_context
from v2gtool.cli.lines import stdin_binary
from v2gtool.cli.output import emit_json, json_option, message_tree, use_json, wire_text
from v2gtool.cli.progress import progress_bar
from v2gtool.errors import V2GToolError
from v2gtool.exit_codes import ExitCode
from v2gtool.pcap.analysis import TraceAnalysis
from v2gtool.pcap.dissect import Dissector
from v2gtool.pcap.filters import MessageFilter, parse_filter
from v2gtool.pcap.homeplug import SLAC_MMTYPES
from v2gtool.pcap.plot import check_plotting, plot_series
from v2gtool.pcap.reader import CaptureError, NotACaptureError, read_capture
from v2gtool.pcap.records import (
    ConnectionEnd,
    Frame,
    KeyDisclosed,
    ProtocolError,
    SdpMessage,
    SlacMessage,
    TLSSession,
    TraceRecord,
    V2GMessage,
)
from v2gtool.pcap.tls import KeyLog


class InputError(V2GToolError):
    """The capture cannot be opened, or the --keylog file cannot be read or holds no secrets: bad
    input (exit 2), told apart from exit 1, "the trace shows a protocol error"."""

    exit_code = ExitCode.USAGE


@click.command("pcap-decode")
@click.argument("capture", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--keylog", "keylogs", multiple=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="NSS key-log file (SSLKEYLOGFILE format) to decrypt TLS; repeatable.")
@click.option("--follow", is_flag=True, help="Keep reading as the capture file grows (Ctrl-C ends and summarises).")
@click.option("--filter", "filters", multiple=True, metavar="EXPR",
              help="Show only messages matching EXPR: a name (DC_ChargeLoopReq) or a field comparison "
                   "(\"DC_ChargeLoopReq.EVTargetCurrent < 0\"); repeatable, any may match.")
@click.option("--summary", "summary_only", is_flag=True, help="Print only the summary.")
@click.option("--frames", "show_frames", is_flag=True, help="Also list every frame (people's output).")
@click.option("--plot", "plot_file", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the loop's voltage/current/power series to this PNG (needs matplotlib).")
@json_option
@click.pass_context
def pcap_decode(ctx: click.Context, capture: Path, keylogs: tuple[Path, ...], follow: bool, filters: tuple[str, ...],
                summary_only: bool, show_frames: bool, plot_file: Path | None, json_out: bool) -> None:
    """Decode a V2G capture (pcap/pcapng): SLAC, SDP, TLS, V2GTP, EXI, with a timing and protocol summary.

    Exit code 1 when the trace shows a protocol error: undecodable or missing data, a FAILED
    response code, a response over its message timeout, a request never answered (its connection
    closed, or the capture ends over its timeout later), a TLS alert or a TLS handshake closed before
    its ServerHello; a request the capture cut short within its timeout is only listed. 2 when the input cannot be
    read or is no pcap or pcapng capture at all, a --keylog holds no secrets, a --filter is
    malformed or --plot has nothing to draw; 4 when --plot lacks matplotlib.

    \b
    Examples:
      v2gtool pcap-decode session.pcapng
      v2gtool pcap-decode --keylog keys.log --summary tls-session.pcapng
      v2gtool --json pcap-decode trace.pcap | jq 'select(.event=="V2GMessage")'
      v2gtool pcap-decode --filter 'DC_ChargeLoopReq.EVTargetCurrent < 0' discharge.pcapng
      tcpdump -i eth1 -U -w - | v2gtool pcap-decode -
      v2gtool pcap-decode --follow /var/log/v2g/trace.pcap
    """
    app = app_context(ctx)
    as_json = use_json(ctx, json_out)
    parsed = [parse_filter(text) for text in filters]
    if plot_file is not None:
        check_plotting()
    keylog = KeyLog()
    for path in keylogs:
        _load_keylog(keylog, path)
    dissector = Dissector(keylog)
    analysis = TraceAnalysis()
    # Someone may wait for each line of a live capture; a file read to its end is written in blocks.
    live = follow or str(capture) == "-"
    renderer = _Renderer(app.console, as_json, show_frames, parsed, live)
    add, show = analysis.add, renderer.show
    with _open(capture) as stream:
        records = _records(stream, dissector, follow, capture)
        try:
            if summary_only:
                if not follow:  # nothing else on the terminal: show that work goes on
                    records = progress_bar(ctx, records, description=f"decoding {capture}", json_out=as_json)
                for record in records:
                    add(record)
            else:
                for record in records:
                    add(record)
                    show(record)
        finally:
            renderer.flush()
    summary = analysis.summary()
    if as_json:
        emit_json(summary)
    else:
        _print_summary(app.console, summary)
    if plot_file is not None:
        plot_series(analysis, plot_file)
    if analysis.failed:
        ctx.exit(1)


def _load_keylog(keylog: KeyLog, path: Path) -> None:
    try:
        text = path.read_text(encoding="ascii", errors="replace")
    except OSError as exc:
        raise InputError(f"--keylog {path}: {exc.strerror}") from None
    if not keylog.add_text(text):
        raise InputError(f"--keylog {path}: no NSS key-log lines (CLIENT_RANDOM, *_TRAFFIC_SECRET_*) found")


@contextlib.contextmanager
def _open(capture: Path) -> Iterator[BinaryIO]:
    if str(capture) == "-":
        yield stdin_binary()
        return
    try:
        stream = capture.open("rb")
    except OSError as exc:
        raise InputError(f"{capture}: {exc.strerror}") from None
    with stream:
        yield stream


def _records(stream: BinaryIO, dissector: Dissector, follow: bool, name: Path) -> Iterator[TraceRecord]:
    """Every record of the capture; a damaged capture ends in a ProtocolError record, Ctrl-C ends --follow.
    Input that is no capture at all is a one-line error naming it."""
    try:
        for packet in read_capture(stream, follow=follow, tls_keylog=dissector.keylog.add_text):
            yield from dissector.packet(packet)
    except NotACaptureError as exc:
        raise NotACaptureError(f"{name}: {exc}") from None
    except CaptureError as exc:
        yield ProtocolError(t=dissector.last_time, frame=dissector.last_frame, layer="capture", message=str(exc))
    except KeyboardInterrupt:
        if not follow:
            raise
    yield from dissector.finish()


_JSON_LINE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)  # the form of emit_json
_JSON_BLOCK = 512  # JSON lines written at once when nobody waits for each


def _json_chunks() -> Callable[[Any], list[str]]:
    """A function giving a JSON-able value as the chunks of its :data:`_JSON_LINE` text.

    ``JSONEncoder.encode`` sets the C encoder up anew on every call, a fifth of the cost of a
    record's line; this sets it up once (no circular-reference check: records are trees).
    """
    make_encoder = getattr(json.encoder, "c_make_encoder", None)
    if make_encoder is None:  # no C accelerator: the pure-Python encoder
        return lambda value: list(_JSON_LINE.iterencode(value))
    encoder = make_encoder(None, _JSON_LINE.default, json.encoder.encode_basestring, _JSON_LINE.indent,
                           _JSON_LINE.key_separator, _JSON_LINE.item_separator, _JSON_LINE.sort_keys,
                           _JSON_LINE.skipkeys, _JSON_LINE.allow_nan)
    return lambda value: encoder(value, 0)


class _Renderer:
    """Rich output for people or JSON lines, for each record as it arrives."""

    def __init__(self, console: Console, as_json: bool, show_frames: bool, filters: list[MessageFilter],
                 live: bool) -> None:
        self._console = console
        self._json = as_json
        self._frames = show_frames
        self._filters = filters
        self._start: float | None = None
        self._live = live
        self._encode = _json_chunks()
        self._chunks: list[str] = []  # JSON lines not yet written
        self._held = 0  # how many

    def show(self, record: TraceRecord) -> None:
        if self._start is None:
            self._start = record.t
        if (self._filters and not isinstance(record, ProtocolError)
                and not any(f.matches(record) for f in self._filters)):
            return
        if self._json:
            self._chunks += self._encode(record.to_json())
            self._chunks.append("\n")
            self._held += 1
            if self._live or self._held >= _JSON_BLOCK:
                self.flush()
            return
        self._person(record, record.t - self._start)

    def flush(self) -> None:
        """Write the JSON lines held back and flush stdout."""
        if self._chunks:
            sys.stdout.write("".join(self._chunks))
            sys.stdout.flush()
            self._chunks.clear()
            self._held = 0

    def _person(self, record: TraceRecord, rel: float) -> None:
        head = f"[dim]#{record.frame:<6} {rel:10.6f}[/dim]"
        out = self._console
        if isinstance(record, V2GMessage):
            lock = " 🔒" if record.tls else ""
            title = (f"{head} [bold]{record.message}[/bold]  [dim]{record.sender}, stream {record.tcp_stream}, "
                     f"{record.namespace} 0x{record.payload_type:04X}{lock}[/dim]")
            out.print(message_tree(title, next(iter(record.document.values()))), highlight=False)
        elif isinstance(record, SlacMessage) and (self._frames or record.mme["mmtype"] in SLAC_MMTYPES):
            fields = ", ".join(f"{k}={v}" for k, v in record.mme.items()
                               if k not in ("mmv", "mmtype", "name", "profile"))
            profile = record.mme.get("profile")
            if profile:
                fields += f", {profile['groups']} groups, average {profile['average_db']} dB"
            vlan = f" vlan {record.vlan}" if record.vlan is not None else ""
            line = f"{record.source} → {record.destination}{vlan}{'  ' + fields if fields else ''}"
            out.print(f"{head} [bold]{record.mme['name']}[/bold] [dim]{wire_text(line)}[/dim]", highlight=False)
        elif isinstance(record, SdpMessage):
            fields = ", ".join(f"{k}={v}" for k, v in record.fields.items())
            line = f"{record.source} → {record.destination}  {fields}"  # IPv6 sources are "[addr]:port"
            out.print(f"{head} [bold]{record.message}[/bold] [dim]{wire_text(line)}[/dim]", highlight=False)
        elif isinstance(record, TLSSession):
            out.print(f"{head} [bold]TLS[/bold] [dim]stream {record.tcp_stream}: {record.version}, "
                      f"{record.cipher_suite}[/dim]", highlight=False)
        elif isinstance(record, ConnectionEnd) and record.sender is not None:
            out.print(f"{head} [dim]stream {record.tcp_stream}: the {record.sender} closed the connection "
                      f"({record.how})[/dim]", highlight=False)
        elif isinstance(record, KeyDisclosed):
            out.print(f"{head} [dim]key disclosed: {wire_text(record.label)} for {record.client_random[:16]}…[/dim]",
                      highlight=False)
        elif isinstance(record, ProtocolError):
            out.print(f"{head} [red]{wire_text(f'{record.layer} error: {record.message}')}[/red]", highlight=False,
                      soft_wrap=True)
        elif isinstance(record, Frame) and self._frames:
            line = f"{record.protocols} {record.source} → {record.destination} {record.info}"
            out.print(f"{head} [dim]{wire_text(line)}[/dim]", highlight=False)


def _print_summary(console: Console, summary: dict[str, Any]) -> None:
    console.rule("[bold]Summary")
    console.print(f"{summary['frames']} frames, {summary['messages']} V2G messages in {summary['duration']:.3f} s; "
                  f"protocols: {', '.join(summary['protocols']) or 'none'}", highlight=False)
    for tls in summary["tls"]:
        console.print(f"TLS on stream {tls['tcp_stream']}: {tls['version']}, {tls['cipher_suite']}", highlight=False)
    if summary["phases"]:
        table = Table("phase", "frame", "start s", "duration s", "messages", title="Timeline")
        for phase in summary["phases"]:
            table.add_row(phase["phase"], str(phase["frame"]), f"{phase['start']:.3f}", f"{phase['duration']:.3f}",
                          str(phase["messages"]))
        console.print(table)
    if summary["response_times"]:
        table = Table("request", "count", "min s", "mean s", "max s", "timeout s", "near", "over",
                      title="Response times")
        for name, stats in summary["response_times"].items():
            style = "red" if stats["over"] else "yellow" if stats["near"] else ""
            table.add_row(name, str(stats["count"]), f"{stats['min']:.3f}", f"{stats['mean']:.3f}",
                          f"{stats['max']:.3f}", str(stats["timeout"]), str(stats["near"]), str(stats["over"]),
                          style=style)
        console.print(table)
    energy = summary["energy_transfer"]
    console.print(f"Energy transfer: offered {', '.join(energy['offered']) or '-'}; selected "
                  f"{', '.join(energy['selected']) or '-'}; control modes "
                  f"{', '.join(energy['control_modes']) or '-'} → [bold]{energy['verdict']}[/bold]", highlight=False)
    slac = summary["slac"]
    for evse, info in slac["candidates"].items():
        chosen = " [bold](chosen)[/bold]" if evse == slac["chosen_evse"] else ""
        console.print(f"SLAC: EVSE {evse} average attenuation {info.get('average_attenuation_db', '?')} dB{chosen}",
                      highlight=False)
    for code in summary["response_codes"]:
        console.print(f"[yellow]#{code['frame']} {code['message']}: {code['code']}[/yellow]", highlight=False)
    for note in summary["notifications"]:
        console.print(f"[yellow]#{note['frame']} {note['message']}: EVSENotification {note['notification']}[/yellow]",
                      highlight=False)
    for name, info in summary["series"].items():
        console.print(f"{name}: {info['samples']} samples, {info['min']:g} … {info['max']:g}", highlight=False)
    for slow in summary["slow_responses"]:
        if slow["verdict"] == "near":
            console.print(f"[yellow]#{slow['response_frame']} {slow['message']}Res after {slow['seconds']:.3f} s, near "
                          f"its {slow['timeout']} s timeout[/yellow]", highlight=False, soft_wrap=True)
    for request in summary["open_requests"]:
        console.print(f"[dim]#{request['request_frame']} {request['message']}Req still open when the capture "
                      f"ended[/dim]", highlight=False, soft_wrap=True)
    for error in summary["errors"]:
        console.print(f"[red]#{error['frame']} {wire_text(error['error'])}[/red]", highlight=False, soft_wrap=True)
    verdict = f"[red]{summary['error_count']} protocol error(s)[/red]" if summary["error_count"] else \
        "[green]no protocol errors[/green]"
    if summary["frames"]:
        when = datetime.fromtimestamp(summary["start"], UTC).isoformat(timespec="milliseconds")
        console.print(f"{verdict}  [dim]capture started {when}[/dim]")
    else:
        console.print(f"{verdict}  [dim]no packet in the capture[/dim]")
