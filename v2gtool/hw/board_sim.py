"""A reference Control Pilot board that speaks :mod:`v2gtool.hw.board_protocol` over a pseudo-terminal.

It stands in for the microcontroller board of the ``serial`` backend in tests and on a laptop::

    python -m v2gtool.hw.board_sim --state C
    # prints the port, e.g. /dev/pts/7; then, in another shell:
    V2GTOOL_HW__SERIAL_PORT=/dev/pts/7 v2gtool cp-duty watch --backend serial

The board model is the same IEC 61851-1 pilot model as the ``sim`` backend
(:func:`v2gtool.hw.cp.pilot_levels`). For tests it can corrupt its next replies, stay mute, or be
"unplugged" (:meth:`BoardSimulator.stop` closes the pseudo-terminal's master side).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import threading
import tty

from v2gtool.hw.board_protocol import (
    MAX_FRAME,
    BoardProtocolError,
    Frame,
    decode_frame,
    encode_frame,
    parse_int,
)
from v2gtool.hw.cp import PWM_OFF_DUTY, CpState, pilot_levels

FIRMWARE = "v2gtool-board-sim-1"


class BoardSimulator:
    """The board on the master side of a pseudo-terminal; :attr:`port` is the slave's path."""

    def __init__(self, ev_state: CpState = CpState.B, proximity_ohm: int = 220) -> None:
        self.ev_state = ev_state
        self.diode = True
        self.proximity_ohm = proximity_ohm
        self.duty_permille = round(PWM_OFF_DUTY * 10)
        self.corrupt_replies = 0
        self.mute = False
        self.received: list[bytes] = []
        self._master, self._slave = os.openpty()
        tty.setraw(self._slave)
        self.port = os.ttyname(self._slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="board-sim", daemon=True)

    def start(self) -> BoardSimulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Unplug: stop answering and close both sides of the pseudo-terminal."""
        self._stop.set()
        self._thread.join(timeout=2.0)
        for fd in (self._master, self._slave):
            with contextlib.suppress(OSError):  # already closed
                os.close(fd)

    def _serve(self) -> None:
        pending = b""
        while not self._stop.is_set():
            ready, _, _ = select.select([self._master], [], [], 0.05)
            if not ready:
                continue
            try:
                chunk = os.read(self._master, 4096)
            except OSError:
                return
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                self.received.append(line)
                reply = self._answer(line + b"\n")
                if reply is not None and not self.mute:
                    os.write(self._master, reply)
            pending = pending[-MAX_FRAME:]

    def _answer(self, line: bytes) -> bytes | None:
        try:
            request = decode_frame(line)
        except BoardProtocolError as exc:
            seq = _guess_seq(line)
            if seq is None:
                return None
            code = "CRC" if "checksum" in str(exc) else "SYNTAX"
            return self._encode(Frame(seq, "ERR", (code,)))
        return self._encode(self._handle(request))

    def _handle(self, request: Frame) -> Frame:
        seq = request.seq
        try:
            if request.verb == "PING":
                return Frame(seq, "PONG", (FIRMWARE,))
            if request.verb == "DUTY":
                self.duty_permille = parse_int(request, 0, 0, 1000)
                return Frame(seq, "OK", ("DUTY", str(self.duty_permille)))
            if request.verb == "CP?":
                high, low = pilot_levels(self.ev_state, self.duty_permille / 10.0, diode=self.diode)
                return Frame(
                    seq, "CP", (str(round(high * 1000)), str(round(low * 1000)), str(self.duty_permille))
                )
            if request.verb == "PP?":
                return Frame(seq, "PP", (str(self.proximity_ohm),))
        except BoardProtocolError:
            return Frame(seq, "ERR", ("RANGE",))
        return Frame(seq, "ERR", ("UNKNOWN", request.verb))

    def _encode(self, frame: Frame) -> bytes:
        wire = encode_frame(frame)
        if self.corrupt_replies > 0:
            self.corrupt_replies -= 1
            # Flip one bit in the body: the checksum no longer matches.
            index = wire.index(b":") + 1
            wire = wire[:index] + bytes([wire[index] ^ 0x01]) + wire[index + 1 :]
        return wire


def _guess_seq(line: bytes) -> int | None:
    """The sequence number of a damaged request, when its first field still reads as one."""
    start = line.find(b"$")
    if start < 0 or len(line) < start + 4 or line[start + 3 : start + 4] != b":":
        return None
    try:
        return int(line[start + 1 : start + 3].decode("ascii"), 16)
    except (UnicodeDecodeError, ValueError):
        return None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m v2gtool.hw.board_sim", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--state", choices=[s.name for s in CpState], default="B", help="vehicle's CP state")
    args = parser.parse_args(argv)
    board = BoardSimulator(CpState[args.state]).start()
    print(board.port, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        board.stop()


if __name__ == "__main__":
    main()
