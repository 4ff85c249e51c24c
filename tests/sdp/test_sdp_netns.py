"""SDP over real sockets: an EVCC and an SECC in two network namespaces joined by veth."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sdp_netns_support import VethLink

from v2gtool.net.sdp_transport import discover, link_local_address, serve_sdp
from v2gtool.pki.create import init_pki
from v2gtool.sdp import (
    SdpMalformedDatagram,
    SdpRequestAnswered,
    SdpRequestSent,
    SdpResponse,
    SdpResult,
    SdpTimeout,
    Security,
    decode_request,
    encode_response,
    result_from_json,
)
from v2gtool.session.events import Event

pytestmark = pytest.mark.netns
REPO = Path(__file__).resolve().parents[2]
PORT = 61234


def _serve(
    link: VethLink,
    supported: set[Security],
    stop: threading.Event,
    events: list[Event],
    ready: threading.Event | None = None,
) -> int:
    async def body() -> int:
        responder = await serve_sdp(link.secc_if, PORT, frozenset(supported), on_event=events.append)
        if ready is not None:
            ready.set()
        try:
            while not stop.is_set():
                await asyncio.sleep(0.005)
        finally:
            responder.close()
        return responder.server.malformed

    return asyncio.run(body())


def _discover(link: VethLink, security: Security, events: list[Event], **kwargs: float) -> SdpResult:
    return asyncio.run(discover(link.ev_if, security, on_event=events.append, **kwargs))  # type: ignore[arg-type]


def _fake_secc(link: VethLink, script: list[str], ready: threading.Event) -> list[bytes]:
    """Answer each received request by the next action of *script*: drop, garbage, or a valid response."""
    index = socket.if_nametoindex(link.secc_if)
    with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("::", 15118))
        sock.setsockopt(
            socket.IPPROTO_IPV6,
            socket.IPV6_JOIN_GROUP,
            socket.inet_pton(socket.AF_INET6, "ff02::1") + struct.pack("@I", index),
        )
        sock.settimeout(5)
        ready.set()
        own = link_local_address(link.secc_if)
        received = []
        for action in script:
            data, addr = sock.recvfrom(100)
            received.append(data)
            reply = {
                "drop": b"",
                "garbage": b"\x01\xfe\x90\x01\x00\x00\x00\x03abc",
                "valid": encode_response(SdpResponse(own, PORT, Security.TLS)),
            }[action]
            if reply:
                sock.sendto(reply, addr)
                if action == "garbage":  # the same try is then answered properly
                    sock.sendto(encode_response(SdpResponse(own, PORT, Security.TLS)), addr)
        return received


def test_discovery_finds_the_secc_on_the_first_try(veth: VethLink) -> None:
    stop, server_events, client_events = threading.Event(), [], []
    ready = threading.Event()
    server = veth.run_in(veth.secc_ns, lambda: _serve(veth, {Security.TLS}, stop, server_events, ready))
    assert ready.wait(5)  # the listener is bound before the first request
    try:
        result = veth.run_in(veth.ev_ns, lambda: _discover(veth, Security.TLS, client_events)).result(10)
    finally:
        stop.set()
    assert server.result(5) == 0
    secc_address = veth.run_in(veth.secc_ns, lambda: link_local_address(veth.secc_if)).result(5)
    ev_address = veth.run_in(veth.ev_ns, lambda: link_local_address(veth.ev_if)).result(5)
    assert result.response == SdpResponse(secc_address, PORT, Security.TLS)
    assert (result.attempts, result.source, result.interface) == (1, str(secc_address), veth.ev_if)
    answered = [e for e in server_events if isinstance(e, SdpRequestAnswered)]
    assert [e.source for e in answered] == [str(ev_address)]


def test_lost_requests_are_retried_until_the_secc_answers(veth: VethLink) -> None:
    ready, events = threading.Event(), []
    fake = veth.run_in(veth.secc_ns, lambda: _fake_secc(veth, ["drop", "drop", "valid"], ready))
    assert ready.wait(5)
    result = veth.run_in(
        veth.ev_ns, lambda: _discover(veth, Security.TLS, events, request_timeout=0.05)
    ).result(10)
    assert result.attempts == 3
    assert [e.attempt for e in events if isinstance(e, SdpRequestSent)] == [1, 2, 3]
    assert [decode_request(d).security for d in fake.result(5)] == [Security.TLS] * 3


def test_secc_starting_late_is_found_by_a_later_request(veth: VethLink) -> None:
    stop, client_events = threading.Event(), []
    client = veth.run_in(
        veth.ev_ns, lambda: _discover(veth, Security.NO_TLS, client_events, request_timeout=0.05)
    )
    time.sleep(0.3)
    server = veth.run_in(veth.secc_ns, lambda: _serve(veth, {Security.TLS}, stop, []))
    try:
        result = client.result(10)
    finally:
        stop.set()
    server.result(5)
    assert result.attempts > 1
    assert result.response.security is Security.TLS  # asked NO_TLS; the SECC offers what it supports
    assert result.security_differs


def test_malformed_response_is_counted_reported_and_skipped(
    veth: VethLink, caplog: pytest.LogCaptureFixture
) -> None:
    ready, events = threading.Event(), []
    veth.run_in(veth.secc_ns, lambda: _fake_secc(veth, ["garbage"], ready))
    assert ready.wait(5)
    result = veth.run_in(veth.ev_ns, lambda: _discover(veth, Security.TLS, events)).result(10)
    assert (result.attempts, result.malformed) == (1, 1)
    malformed = [e for e in events if isinstance(e, SdpMalformedDatagram)]
    assert [e.reason for e in malformed] == ["SDP response payload is 3 bytes, expected 20"]
    assert "dropped malformed SDP datagram" not in caplog.text  # reported once, by the event's taker


def test_malformed_response_is_logged_when_nobody_takes_the_events(
    veth: VethLink, caplog: pytest.LogCaptureFixture
) -> None:
    ready = threading.Event()
    veth.run_in(veth.secc_ns, lambda: _fake_secc(veth, ["garbage"], ready))
    assert ready.wait(5)
    result = veth.run_in(veth.ev_ns, lambda: asyncio.run(discover(veth.ev_if, Security.TLS))).result(10)
    assert result.malformed == 1
    assert "dropped malformed SDP datagram #1 from" in caplog.text


def test_no_secc_fails_after_the_last_request(veth: VethLink) -> None:
    events: list[Event] = []
    future = veth.run_in(
        veth.ev_ns, lambda: _discover(veth, Security.TLS, events, request_timeout=0.02, max_requests=4)
    )
    with pytest.raises(SdpTimeout, match=f"no SDP response after 4 requests to ff02::1 on {veth.ev_if}"):
        future.result(10)


def test_server_counts_malformed_requests_and_shares_the_port(veth: VethLink) -> None:
    stop, events_a, events_b = threading.Event(), [], []
    ready_a, ready_b = threading.Event(), threading.Event()
    first = veth.run_in(veth.secc_ns, lambda: _serve(veth, {Security.TLS}, stop, events_a, ready_a))
    second = veth.run_in(veth.secc_ns, lambda: _serve(veth, {Security.TLS}, stop, events_b, ready_b))
    assert ready_a.wait(5) and ready_b.wait(5)

    def send_garbage_then_discover() -> SdpResult:
        index = socket.if_nametoindex(veth.ev_if)
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.sendto(b"\x01\xfe\x90\x00\x00\x00\x00\x02\x77\x00", ("ff02::1", 15118, 0, index))
        return _discover(veth, Security.TLS, [])

    try:
        result = veth.run_in(veth.ev_ns, send_garbage_then_discover).result(10)
    finally:
        stop.set()
    assert (first.result(5), second.result(5)) == (1, 1)  # both listeners got the multicast garbage
    assert result.attempts == 1
    assert any(isinstance(e, SdpRequestAnswered) for e in events_a + events_b)


@pytest.fixture
def cli() -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``v2gtool`` commands inside a namespace; whatever still runs at the end is killed."""
    started: list[subprocess.Popen[str]] = []

    def start(ns: str, *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-m", "v2gtool", *args],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.communicate()


def test_cli_ev_and_evse_json_records(veth: VethLink, cli: Callable[..., subprocess.Popen[str]]) -> None:
    evse = cli(
        veth.secc_ns,
        "sdp-discovery",
        "--iface",
        veth.secc_if,
        "--role",
        "evse",
        "--security",
        "both",
        "--port",
        str(PORT),
        "--answers",
        "1",
        "--json",
    )
    ev = cli(
        veth.ev_ns, "--json", "sdp-discovery", "--iface", veth.ev_if, "--security", "none", "--timeout", "0.1"
    )
    ev_out, ev_err = ev.communicate(timeout=30)
    evse_out, _ = evse.communicate(timeout=30)
    assert ev.returncode == 0, ev_err
    lines = [json.loads(line) for line in ev_out.splitlines()]
    result = result_from_json(lines[-1])
    assert (result.response.port, result.response.security, result.interface) == (
        PORT,
        Security.NO_TLS,
        veth.ev_if,
    )
    assert ipaddress.IPv6Address(result.source).is_link_local
    assert {"SdpRequestSent", "SdpResponseReceived"} <= {line["event"] for line in lines}
    assert [json.loads(line)["event"] for line in evse_out.splitlines()] == ["SdpRequestAnswered"]


def test_cli_unknown_interface_is_one_line(veth: VethLink, cli: Callable[..., subprocess.Popen[str]]) -> None:
    ev = cli(veth.ev_ns, "sdp-discovery", "--iface", "nosuch0")
    _, err = ev.communicate(timeout=30)
    assert ev.returncode == 4  # environment, as evse-slac --iface nosuch0
    assert err == "v2gtool: error: network interface 'nosuch0' does not exist\n"


def test_cli_interface_without_link_local_fails_at_once(veth: VethLink,
                                                        cli: Callable[..., subprocess.Popen[str]]) -> None:
    """A down interface (one end of a veth pair, never set up) has no IPv6 link-local address: said
    at once, not after 50 requests that could never leave (each an EADDRNOTAVAIL)."""
    subprocess.run(["ip", "netns", "exec", veth.ev_ns, "ip", "link", "add", "nolla0", "type", "veth",
                    "peer", "name", "nollb0"], check=True)
    start = time.monotonic()
    ev = cli(veth.ev_ns, "sdp-discovery", "--iface", "nolla0")
    _, err = ev.communicate(timeout=30)
    assert ev.returncode == 4 and time.monotonic() - start < 5
    assert err == "v2gtool: error: interface 'nolla0' has no usable IPv6 link-local address (none configured)\n"


def test_cli_no_secc_is_a_timeout(veth: VethLink, cli: Callable[..., subprocess.Popen[str]]) -> None:
    ev = cli(veth.ev_ns, "sdp-discovery", "--iface", veth.ev_if, "--tries", "3", "--timeout", "0.05")
    _, err = ev.communicate(timeout=30)
    assert ev.returncode == 3  # ExitCode.TIMEOUT: the 250 ms per request of SDP ran out
    assert err == f"v2gtool: error: no SDP response after 3 requests to ff02::1 on {veth.ev_if}\n"


def _wait_listening(ns: str, port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        listening = subprocess.run(
            ["ip", "netns", "exec", ns, "ss", "-Hltn", f"sport = :{port}"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
        if listening.strip():
            return
        time.sleep(0.05)
    raise AssertionError(f"nothing listens on TCP {port} in {ns}")


def test_discovery_piped_into_tls_verify_across_namespaces(
    veth: VethLink, tmp_path: Path, cli: Callable[..., subprocess.Popen[str]]
) -> None:
    """`sdp-discovery --json | tls-verify --from-sdp -` on the EV side, SDP + TLS server on the SECC side."""
    init_pki(tmp_path / "certs", tmp_path / "trust" / "certs")
    dirs = ("--certs-dir", str(tmp_path / "certs"), "--trust-dir", str(tmp_path / "trust" / "certs"))
    tls_server = cli(veth.secc_ns, "tls-verify", "--serve", "--port", str(PORT), "--json", *dirs)
    _wait_listening(veth.secc_ns, PORT)  # announce the port only once the TLS server accepts on it
    sdp_server = cli(
        veth.secc_ns,
        "sdp-discovery",
        "--iface",
        veth.secc_if,
        "--role",
        "evse",
        "--port",
        str(PORT),
        "--answers",
        "1",
    )
    pipeline = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            veth.ev_ns,
            "sh",
            "-c",
            f"{sys.executable} -m v2gtool sdp-discovery --iface {veth.ev_if} --json --timeout 0.1 | "
            f"{sys.executable} -m v2gtool tls-verify --from-sdp - --json {' '.join(dirs)}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    server_out, _ = tls_server.communicate(timeout=30)
    sdp_server.communicate(timeout=30)
    assert pipeline.returncode == 0, pipeline.stderr
    client = json.loads(pipeline.stdout.splitlines()[-1])
    server = json.loads(server_out.splitlines()[-1])
    secc_address = veth.run_in(veth.secc_ns, lambda: link_local_address(veth.secc_if)).result(5)
    assert client["peer"] == f"[{secc_address}%{veth.ev_if}]:{PORT}"
    assert (client["ok"], client["version"], server["ok"]) == (True, "TLSv1.3", True)
    assert client["peer_chain"][0] == "CN=SECC,O=v2gtool test PKI,DC=CPO"
    assert server["peer_chain"][0].endswith("DC=OEM")


def test_cli_human_output_shows_each_try_and_the_secc(
    veth: VethLink, cli: Callable[..., subprocess.Popen[str]]
) -> None:
    evse = cli(veth.secc_ns, "sdp-discovery", "--iface", veth.secc_if, "--role", "evse", "--port", str(PORT),
                "--answers", "1")  # fmt: skip
    ev = cli(veth.ev_ns, "sdp-discovery", "--iface", veth.ev_if, "--security", "none", "--timeout", "0.1")
    ev_out, ev_err = ev.communicate(timeout=30)
    evse_out, _ = evse.communicate(timeout=30)
    assert ev.returncode == 0, ev_err
    secc = veth.run_in(veth.secc_ns, lambda: link_local_address(veth.secc_if)).result(5)
    ev_lines = ev_out.splitlines()
    attempts = [line for line in ev_lines if ": security NO_TLS" in line]
    assert len(attempts) >= 1 and attempts[0].endswith("request 1: security NO_TLS")
    assert (
        f"SECC found: [{secc}%{veth.ev_if}]:{PORT} security TLS, transport TCP, after {len(attempts)} "
        in ev_out
    )
    assert ev_lines[-1] == "the SECC offered TLS although NO_TLS was asked for"
    assert "for NO_TLS: answered TLS (offered instead)" in evse_out


@pytest.mark.parametrize(("option", "announced"), [((), PORT), (("--port", str(PORT + 1)), PORT + 1)])
def test_cli_evse_announces_the_configured_port_unless_given_one(
    veth: VethLink, tmp_path: Path, cli: Callable[..., subprocess.Popen[str]], option: tuple[str, ...], announced: int
) -> None:
    """The SECC announces the port it listens on (``[sdp] tcp_port``, as ``serve``), not the default."""
    config = tmp_path / "v2gtool.toml"
    config.write_text(f"[sdp]\ntcp_port = {PORT}\n")
    evse = cli(veth.secc_ns, "--config", str(config), "sdp-discovery", "--iface", veth.secc_if, "--role", "evse",
               *option, "--answers", "1")  # fmt: skip
    ev = cli(veth.ev_ns, "--json", "sdp-discovery", "--iface", veth.ev_if, "--timeout", "0.1")
    ev_out, ev_err = ev.communicate(timeout=30)
    evse_out, _ = evse.communicate(timeout=30)
    assert ev.returncode == 0, ev_err
    assert result_from_json(json.loads(ev_out.splitlines()[-1])).response.port == announced
    assert f"announcing TCP port {announced} (TLS)" in evse_out
