"""No JSON the VPP writes carries Infinity or NaN (RFC 8259 has neither): ``vpp status --json``
refuses an answer holding them with one line instead of passing invalid JSON down the pipe."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

FLEET = (b'{"time": 0, "stations": 1, "request": null, "met_at": null, "power_w": 0,'
         b' "discharge_capacity_w": Infinity, "vehicles": []}')  # fmt: skip


class LaxVpp(BaseHTTPRequestHandler):
    """A ``vpp serve`` of before: its /fleet says Infinity."""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(FLEET)))
        self.end_headers()
        self.wfile.write(FLEET)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture()
def lax_vpp() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), LaxVpp)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("json_flag", [["--json"], []])
def test_status_refuses_an_answer_with_infinity_in_one_line(lax_vpp: str, json_flag: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "v2gtool", *json_flag, "vpp", "status", "--once", "--http", lax_vpp],
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode != 0 and result.stdout == ""
    [line] = result.stderr.splitlines()
    assert "the answer is not JSON" in line and "Infinity" in line
