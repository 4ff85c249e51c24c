"""The ``serial`` backend: a microcontroller board that generates the CP PWM and reads CP and PP.

The board speaks the framed, checksummed line protocol of :mod:`v2gtool.hw.board_protocol` over a
serial port (USB CDC-ACM or a UART) through ``pyserial``; :mod:`v2gtool.hw.board_sim` is a
reference board that speaks it over a pseudo-terminal. A request is repeated when the reply is
lost, late or corrupted (bad checksum, foreign sequence number); a port that goes away
(unplugged board) is a one-line :class:`~v2gtool.hw.errors.HardwareError`.
"""

from __future__ import annotations

import math
import termios

import serial as pyserial

from v2gtool.hw.board_protocol import BoardProtocolError, Frame, decode_frame, encode_frame, parse_int
from v2gtool.hw.cp import CpReading
from v2gtool.hw.errors import HardwareError

#: How often a request is sent before the board counts as not answering.
ATTEMPTS = 3
#: Float noise of ``percent * 10`` (89.2 % gives 892.0000000000001): below one permille by far.
_PERMILLE_NOISE = 1e-9


class BoardLink:
    """Request/response over the board's serial port."""

    def __init__(self, port: str, baudrate: int = 115200, timeout_s: float = 0.1) -> None:
        self.port = port
        self.retries = 0
        try:
            self._serial = pyserial.Serial(port, baudrate=baudrate, timeout=timeout_s)
        except (pyserial.SerialException, OSError, ValueError) as exc:
            raise HardwareError(f"cannot open serial board on {port}: {exc}") from None
        self._seq = 0

    def close(self) -> None:
        """Close the port (pyserial's ``close`` may be called again)."""
        self._serial.close()

    def request(self, verb: str, *args: str) -> Frame:
        """Send a request and return the board's reply (``ERR`` replies raise)."""
        self._seq = (self._seq + 1) % 256
        wire = encode_frame(Frame(self._seq, verb, args))
        problem = "no reply"
        for attempt in range(ATTEMPTS):
            if attempt:
                self.retries += 1
            try:
                self._serial.reset_input_buffer()
                self._serial.write(wire)
                reply = self._read_reply()
            except (pyserial.SerialException, OSError, termios.error) as exc:
                # termios.error: flushing a pseudo-terminal whose other side is gone (EIO).
                raise HardwareError(f"serial board on {self.port} disconnected: {exc}") from None
            except BoardProtocolError as exc:
                problem = str(exc)
                continue
            if reply is None:
                continue
            if reply.verb == "ERR":
                code = reply.args[0] if reply.args else "?"
                if code == "CRC":  # our request was corrupted on the way: send it again
                    problem = "board reported a checksum error"
                    continue
                raise HardwareError(f"serial board on {self.port} refused {verb}: {' '.join(reply.args)}")
            return reply
        raise HardwareError(
            f"serial board on {self.port} not answering {verb} after {ATTEMPTS} tries: {problem}"
        )

    def _read_reply(self) -> Frame | None:
        """The reply to the current request, or ``None`` on timeout; stale replies are skipped."""
        while True:
            line = self._serial.readline()
            if not line:
                return None
            if not line.endswith(b"\n"):
                return None  # timed out mid-line
            frame = decode_frame(line)
            if frame.seq == self._seq:
                return frame


class SerialControlPilot:
    """The :class:`~v2gtool.hw.interfaces.ControlPilot` of a serial board."""

    def __init__(self, link: BoardLink) -> None:
        self._link = link

    def set_duty(self, percent: float) -> None:
        """Generate *percent* duty. The board takes whole permille, so the duty is rounded *down*:
        the current a duty advertises rises with it (IEC 61851-1 Table A.8), and rounding to the
        nearest permille would advertise more than asked (10 A: 16.67 % -> 16.7 % = 10.02 A), which
        :func:`~v2gtool.hw.cp.duty_from_current` promises never to do."""
        permille = math.floor(percent * 10 + _PERMILLE_NOISE)
        reply = self._link.request("DUTY", str(permille))
        if reply.verb != "OK" or parse_int(reply, 1, 0, 1000) != permille:
            raise HardwareError(f"serial board on {self._link.port} did not confirm duty {percent} %")

    def read(self) -> CpReading:
        reply = self._link.request("CP?")
        if reply.verb != "CP":
            raise BoardProtocolError(f"expected a CP reply to CP?, got {reply.verb}")
        high = parse_int(reply, 0, -15000, 15000)
        low = parse_int(reply, 1, -15000, 15000)
        permille = parse_int(reply, 2, 0, 1000)
        return CpReading(high / 1000.0, low / 1000.0, permille / 10.0)

    def proximity_ohm(self) -> int:
        """The PP resistance to PE (cable coding), as the board measures it."""
        reply = self._link.request("PP?")
        if reply.verb != "PP":
            raise BoardProtocolError(f"expected a PP reply to PP?, got {reply.verb}")
        return parse_int(reply, 0, 0, 10_000_000)
