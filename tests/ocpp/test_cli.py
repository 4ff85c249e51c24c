"""The ``vpp`` and ``ocpp-bridge`` commands as a person and a script use them."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import click
import pytest
from click.testing import CliRunner
from rich.console import Console

from tests.ocpp.test_park import free_port
from v2gtool.cli import ocpp_bridge
from v2gtool.cli.context import AppContext
from v2gtool.cli.main import cli
from v2gtool.cli.ocpp_bridge import _printer as bridge_printer
from v2gtool.cli.vpp import _printer, fleet_table
from v2gtool.cli.vpp import _serve as vpp_serve
from v2gtool.config import Config
from v2gtool.ocpp.csms import CsmsError, StationConnected, StationLeft, Vpp, VppConfig
from v2gtool.ocpp.rpc_errors import FrameRejected
from v2gtool.ocpp.station import VariableSet

V2GTOOL = [sys.executable, "-m", "v2gtool"]


@pytest.fixture()
def vpp(tmp_path: Path) -> Iterator[str]:
    process = subprocess.Popen(
        [*V2GTOOL, "--json", "vpp", "serve", "--port", "0", "--http-port", "0", "--state-dir", str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        yield json.loads(process.stdout.readline())["http"]
    finally:
        process.kill()
        process.wait()


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*V2GTOOL, *args], capture_output=True, text=True, timeout=60)


def test_dispatch_status_and_cancel(vpp: str) -> None:
    human = run("vpp", "dispatch", "--http", vpp, "--power-kw", "200", "--duration", "900")
    assert human.returncode == 0 and human.stdout.strip() == "dispatching 200.0 kW into the grid for 900 s"
    status = run("--json", "vpp", "status", "--http", vpp, "--once")
    snapshot = json.loads(status.stdout)
    assert snapshot["request"]["power_w"] == -200_000 and snapshot["vehicles"] == []
    table = run("vpp", "status", "--http", vpp, "--once")
    assert "0 stations, 0 vehicles" in table.stdout and "200.0 kW asked" in table.stdout
    cancelled = run("--json", "vpp", "dispatch", "--http", vpp, "--cancel")
    assert json.loads(cancelled.stdout) == {"cancelled": True}
    assert json.loads(run("--json", "vpp", "status", "--http", vpp, "--once").stdout)["request"] is None


def test_status_into_a_pipe_prints_a_table_per_refresh(vpp: str) -> None:
    """Not on a terminal a live table would draw nothing: a table per refresh instead (as top -b)."""
    with pytest.raises(subprocess.TimeoutExpired) as ran:  # it refreshes until stopped
        subprocess.run([*V2GTOOL, "vpp", "status", "--http", vpp, "--interval", "0.2"], capture_output=True,
                       text=True, timeout=4)
    output = ran.value.stdout
    printed = output.decode() if isinstance(output, bytes) else output or ""
    assert printed.count("0 stations, 0 vehicles") >= 2


def test_errors_are_one_line_with_their_exit_status(tmp_path: Path) -> None:
    port = free_port()
    for args in (["status", "--once"], ["dispatch", "--power-kw", "5"]):  # refused: 1, as tls-verify without TCP
        unreachable = run("vpp", *args, "--http", f"http://127.0.0.1:{port}")
        assert unreachable.returncode == 1 and len(unreachable.stderr.strip().splitlines()) == 1
        assert "Connection refused" in unreachable.stderr and "Traceback" not in unreachable.stderr
    key = tmp_path / "k.pem"
    key.write_text("x")
    assert run("vpp", "serve", "--key", str(key)).returncode == 2
    assert run("ocpp-bridge", "--csms", "ws://127.0.0.1:1/ocpp").returncode == 2  # neither --sim nor --iface
    wrong = run("ocpp-bridge", "--sim", "--csms", "http://127.0.0.1:1/ocpp")
    assert wrong.returncode == 2 and "ws:// or wss://" in wrong.stderr
    passwords = tmp_path / "passwords"
    passwords.write_text("no colon here\n")
    bad = run("vpp", "serve", "--passwords", str(passwords), "--state-dir", str(tmp_path / "s"))
    assert bad.returncode == 2 and f"{passwords}:1" in bad.stderr


def test_station_ids_are_shown_as_text_not_markup() -> None:
    """A station names itself in its URL: "[/red]" there must neither vanish nor crash the aggregator's
    output (rich markup)."""
    console = Console(record=True, width=200)
    show = _printer(AppContext(Config(), False, False, console, console), as_json=False)
    show(StationConnected(t=0.0, station="CS[/red]1", subprotocol="ocpp2.1"))
    show(StationLeft(t=1.0, station="CS[bold]2", reason="closed [1006]"))
    vehicle = {"station": "CS[/red]1", "evse_id": 1, "soc": 50.0, "min_soc": 20, "power_w": -1000.0,
               "allocation_w": -1000.0, "capacity_w": 11000.0, "remaining_wh": 9000.0, "departure": None}
    console.print(fleet_table({"stations": 1, "vehicles": [vehicle], "power_w": -1000.0, "request_w": None,
                               "met_at": None, "discharge_capacity_w": 11000.0, "time": 0.0}))
    text = console.export_text()
    assert "+ CS[/red]1 (ocpp2.1)" in text and "- CS[bold]2: closed [1006]" in text and "CS[/red]1/1" in text


def test_the_fleet_table_keeps_station_names_whole_and_marks_held_power() -> None:
    """Into a pipe (80 columns) rows must stay apart; a refused share is what it runs, not asked."""
    console = Console(record=True, width=80)
    vehicles = [{"station": f"SIM-PARK-{i:03d}", "evse_id": 1, "soc": 50.0, "min_soc": 20, "power_w": -6976.7,
                 "allocation_w": -6976.7, "capacity_w": 0.0, "remaining_wh": 9000.0, "departure": None,
                 "refused": i == 2} for i in (1, 2, 3)]
    console.print(fleet_table({"stations": 3, "vehicles": vehicles, "power_w": -20930.1, "request": None,
                               "met_at": None, "discharge_capacity_w": 0.0, "time": 0.0}))
    text = console.export_text()
    assert all(f"SIM-PARK-{i:03d}/1" in text for i in (1, 2, 3))
    assert "SIM-PARK-002/1" in next(line for line in text.splitlines() if "-6.98*" in line)
    assert text.count("*") == 2 and "* held: its station refused its share" in text


class NotAVpp(BaseHTTPRequestHandler):
    """Another service behind the URL: answers by the first path segment."""

    ANSWERS: ClassVar[dict[str, tuple[int, str, bytes]]] = {
        "other": (200, "application/json", b'{"hello": 1}'),
        "rows": (200, "application/json", b'{"stations": 1, "vehicles": [{"station": "x"}], "power_w": 0,'
                                          b' "discharge_capacity_w": 0, "time": 0}'),
        "text": (200, "text/plain", b"nope\n"),
        "html": (404, "text/html", b"<!DOCTYPE html>\n<html>\n<body>\n<h1>Not Found</h1>\n</body>\n</html>\n"),
        "ws": (426, "text/plain", b"Failed to open a WebSocket connection: missing Connection header.\n\nYou cannot"
                                  b" access a WebSocket server directly with a browser.\n"),
    }  # fmt: skip

    def answer(self) -> None:
        status, kind, body = self.ANSWERS[self.path.split("/")[1]]
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture()
def not_a_vpp() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), NotAVpp)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


NOT_VPP = "not an answer of vpp serve"


@pytest.mark.parametrize(
    ("args", "returncode", "message"),
    [
        (["status", "--http", "notaurl", "--once"], 2, "'notaurl' is not an http:// or https:// URL"),
        (["status", "--http", "file:///etc/passwd", "--once"], 2, "is not an http:// or https:// URL"),
        (["status", "--http", "{url}/other", "--once"], 1, f"GET {{url}}/other/fleet: {NOT_VPP} (no 'stations')"),
        (["status", "--http", "{url}/rows", "--once"], 1, f"GET {{url}}/rows/fleet: {NOT_VPP} (no 'evse_id')"),
        (["--json", "status", "--http", "{url}/other"], 1, NOT_VPP),
        (["status", "--http", "{url}/text", "--once"], 1, "GET {url}/text/fleet: the answer is not JSON: nope"),
        (["status", "--http", "{url}/html", "--once"], 1, "GET {url}/html/fleet: HTTP 404 Not Found"),
        (["dispatch", "--http", "{url}/ws", "--power-kw", "5"], 1, "POST {url}/ws/dispatch: HTTP 426 Upgrade Required"),
        (["dispatch", "--http", "{url}/other", "--power-kw", "5"], 1, f"POST {{url}}/other/dispatch: {NOT_VPP}"),
        (["dispatch", "--http", "{url}/other", "--cancel"], 1, f"DELETE {{url}}/other/dispatch: {NOT_VPP}"),
        (["dispatch", "--http", "{url}/other"], 2, "give either --power-kw or --cancel"),
        (["dispatch", "--http", "{url}/other", "--cancel", "--power-kw", "5"], 2, "give either --power-kw or --cancel"),
    ],
)
def test_a_wrong_endpoint_is_one_line_naming_it(not_a_vpp: str, args: list[str], returncode: int, message: str) -> None:
    args = [a.format(url=not_a_vpp) for a in args]
    json_flag = ["--json"] if args[0] == "--json" else []
    result = run(*json_flag, "vpp", *args[len(json_flag) :])
    lines = [line for line in result.stderr.splitlines() if line.startswith(("v2gtool: error", "Error:"))]
    assert result.returncode == returncode and "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1 and message.format(url=not_a_vpp) in lines[0], result.stderr
    if returncode == 1:
        assert result.stderr.count("\n") == 1


def test_rejected_frames_are_one_line_on_stderr() -> None:
    out, err = Console(record=True, width=60), Console(record=True, width=60)
    show = _printer(AppContext(Config(), False, False, out, err), as_json=False)
    show(FrameRejected(t=0.0, station="CS[/red]1", message_id="-1", code="FormatViolation",
                       reason="not a JSON frame: Expecting value: line 1 column 1 (char 0)"))  # fmt: skip
    assert out.export_text() == ""
    assert err.export_text() == (
        "! CS[/red]1: FormatViolation (not a JSON frame: Expecting value: line 1 column 1 (char 0)) to message '-1'\n"
    )


def test_the_bridge_names_a_variable_the_csms_set() -> None:
    out, err = Console(record=True, width=100), Console(record=True, width=100)
    show = bridge_printer(AppContext(Config(), False, False, out, err), as_json=False)
    show(VariableSet(t=0.0, station="CS1", component="OCPPCommCtrlr", variable="HeartbeatInterval", value="[b]1"))
    assert out.export_text() == "CS1: CSMS set OCPPCommCtrlr.HeartbeatInterval = [b]1\n"
    assert err.export_text() == ""


def test_an_endpoint_that_stays_silent_is_a_timeout() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel accepts; nobody answers
        result = run("vpp", "status", "--once", "--http", f"http://127.0.0.1:{silent.getsockname()[1]}")
    assert result.returncode == 3 and result.stderr.count("\n") == 1 and "timed out" in result.stderr


def test_a_station_that_cannot_run_ends_the_bridge_with_its_error(tmp_path: Path) -> None:
    """A station's failure (here: its outbox cannot be made) is the run's error, not a silent exit 0."""
    (tmp_path / "afile").touch()
    for stations in ("1", "3"):
        result = run("ocpp-bridge", "--sim", "--stations", stations, "--csms", "ws://127.0.0.1:1/ocpp",
                     "--sessions", "1", "--outbox-dir", str(tmp_path / "afile" / "sub"))
        assert result.returncode == 4 and result.stderr.count("\n") == 1, result.stderr
        assert result.stderr.startswith(f"v2gtool: error: outbox {tmp_path}/afile/sub/V2GTOOL")
        assert result.stderr.endswith(": Not a directory\n")


def test_vpp_serve_ends_with_the_control_loops_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Dispatching that stopped is the aggregator's error, not a run that waits on for a signal."""

    async def broken(self: Vpp) -> None:
        raise CsmsError("the control loop failed")

    monkeypatch.setattr(Vpp, "control_loop", broken)
    app = AppContext(Config(), True, False, Console(file=io.StringIO()), Console(file=io.StringIO()))
    serving = vpp_serve(VppConfig(state_dir=tmp_path), "127.0.0.1", 0, "127.0.0.1", 0, None, 900, lambda e: None,
                        app, True)
    with pytest.raises(CsmsError, match="the control loop failed"):
        asyncio.run(asyncio.wait_for(serving, 30))


@pytest.mark.parametrize(("args", "listened"), [([], 50002), (["--port", "50003"], 50003)])
def test_the_bridged_secc_listens_on_the_configured_port_unless_given_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, args: list[str], listened: int
) -> None:
    """--iface is the SECC of ``serve``: the same port, ``[sdp] tcp_port`` unless --port names one."""
    ports: list[int] = []

    async def secc_on_link(*positional: object) -> list[bool]:
        ports.append(positional[3])  # type: ignore[arg-type]  # (park, config, iface, port, context, plant)
        return [True]

    monkeypatch.setattr(ocpp_bridge, "_secc_on_link", secc_on_link)
    result = CliRunner().invoke(
        cli,
        ["ocpp-bridge", "--iface", "eth1", "--csms", "ws://127.0.0.1:9/ocpp", "--no-tls", "--outbox-dir", str(tmp_path),
         *args],
        env={"V2GTOOL_SDP__TCP_PORT": "50002"},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert ports == [listened]
    port = next(p for p in ocpp_bridge.ocpp_bridge.params if p.name == "port")
    assert isinstance(port, click.Option)
    assert port.help == "With --iface: TCP port [default: [sdp] tcp_port, else 64109]."
