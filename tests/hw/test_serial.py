"""The serial backend: the board protocol (round trip, fuzz) and the link over a real pseudo-terminal
against the reference board simulator, with corrupted frames and an unplugged board."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial as pyserial
from hypothesis import given
from hypothesis import strategies as st

from v2gtool.hw.board_protocol import BoardProtocolError, Frame, crc16_ccitt, decode_frame, encode_frame
from v2gtool.hw.board_sim import BoardSimulator
from v2gtool.hw.cp import CpState, current_from_duty, duty_from_current
from v2gtool.hw.errors import HardwareError
from v2gtool.hw.serial import ATTEMPTS, BoardLink, SerialControlPilot

ROOT = Path(__file__).resolve().parents[2]

_field = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="$*:"),
    min_size=1,
    max_size=8,
)


def test_crc_check_value() -> None:
    assert crc16_ccitt(b"123456789") == 0x29B1


@given(st.integers(0, 255), _field, st.lists(_field, max_size=5))
def test_frame_round_trip(seq: int, verb: str, args: list[str]) -> None:
    frame = Frame(seq, verb, tuple(args))
    wire = encode_frame(frame)
    assert wire.startswith(b"$") and wire.endswith(b"\n")
    assert decode_frame(wire) == frame
    assert decode_frame(b"noise" + wire.rstrip(b"\n") + b"\r\n") == frame


@given(st.binary(max_size=160))
def test_fuzz_decode_raises_only_protocol_errors(data: bytes) -> None:
    with contextlib.suppress(BoardProtocolError):
        decode_frame(data)


@given(st.integers(0, 255), _field, st.data())
def test_every_single_bit_flip_is_detected(seq: int, verb: str, data: st.DataObject) -> None:
    wire = bytearray(encode_frame(Frame(seq, verb)))
    index = data.draw(st.integers(1, len(wire) - 2))  # not the '$' and not the line end
    wire[index] ^= 1 << data.draw(st.integers(0, 6))
    with pytest.raises(BoardProtocolError):
        decode_frame(bytes(wire))


@pytest.mark.parametrize(
    "line",
    [b"", b"$", b"$05:PING", b"$05:PING*12", b"$5:PING*0000\n", b"$05:*0000\n", b"$05:PI\xffNG*0000\n"],
)
def test_malformed_lines(line: bytes) -> None:
    with pytest.raises(BoardProtocolError):
        decode_frame(line)


@pytest.fixture
def board() -> Iterator[BoardSimulator]:
    sim = BoardSimulator(CpState.C).start()
    yield sim
    sim.stop()


def test_duty_and_levels_over_a_real_pty(board: BoardSimulator) -> None:
    pilot = SerialControlPilot(BoardLink(board.port))
    pilot.set_duty(5.0)
    reading = pilot.read()
    assert reading.duty_percent == 5.0 and reading.state is CpState.C and reading.low_v == -12.0
    board.ev_state = CpState.B
    board.diode = False
    reading = pilot.read()
    assert reading.high_v == 9.0 and reading.state is None  # diode check fails
    assert pilot.proximity_ohm() == 220
    assert board.duty_permille == 50


def test_corrupted_reply_is_repeated(board: BoardSimulator) -> None:
    link = BoardLink(board.port)
    board.corrupt_replies = 1
    assert link.request("PING").verb == "PONG"
    assert link.retries == 1 and len(board.received) == 2


def test_corrupted_request_is_answered_with_err_crc(board: BoardSimulator) -> None:
    with pyserial.Serial(board.port, timeout=1.0) as port:
        good = encode_frame(Frame(0x2A, "CP?"))
        port.write(good.replace(b"CP?", b"CQ?"))  # damaged on the line
        assert decode_frame(port.readline()) == Frame(0x2A, "ERR", ("CRC",))
        port.write(good)
        assert decode_frame(port.readline()).verb == "CP"


def test_unknown_verb_is_refused_in_one_line(board: BoardSimulator) -> None:
    with pytest.raises(HardwareError, match="refused FROB: UNKNOWN FROB"):
        BoardLink(board.port).request("FROB")


def test_mute_board_is_not_answering(board: BoardSimulator) -> None:
    link = BoardLink(board.port, timeout_s=0.05)
    board.mute = True
    with pytest.raises(HardwareError, match=f"not answering PING after {ATTEMPTS} tries"):
        link.request("PING")


def test_unplugged_board_is_a_clear_error(board: BoardSimulator) -> None:
    link = BoardLink(board.port)
    assert link.request("PING").verb == "PONG"
    board.stop()
    with pytest.raises(HardwareError, match=f"serial board on {board.port} (disconnected|not answering)"):
        link.request("PING")


def test_missing_port_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(HardwareError, match="cannot open serial board"):
        BoardLink(str(tmp_path / "ttyNONE"))


def test_cp_duty_command_over_the_serial_backend(board: BoardSimulator) -> None:
    env = {**os.environ, "V2GTOOL_HW__SERIAL_PORT": board.port}
    result = subprocess.run(
        [sys.executable, "-m", "v2gtool", "cp-duty", "set", "5", "--backend", "serial", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert (
        record["state"] == "C" and record["meaning"] == "DIGITAL_COMMUNICATION" and board.duty_permille == 50
    )
    board.stop()
    gone = subprocess.run(
        [sys.executable, "-m", "v2gtool", "cp-duty", "read", "--backend", "serial"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )
    assert gone.returncode == 1 and gone.stderr.count("\n") == 1 and "Traceback" not in gone.stderr
    assert board.port in gone.stderr


def _v2gtool(board: BoardSimulator, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "V2GTOOL_HW__SERIAL_PORT": board.port}
    return subprocess.run(
        [sys.executable, "-m", "v2gtool", *args], capture_output=True, text=True, timeout=60, cwd=ROOT, env=env
    )


@pytest.mark.parametrize("amps", [10, 13, 16, 25, 40, 63, 80])
def test_board_never_advertises_more_than_asked(board: BoardSimulator, amps: int) -> None:
    # IEC 61851-1 Table A.8: the board's whole permille must not round 10 A's 16.67 % up to 16.7 %.
    pilot = SerialControlPilot(BoardLink(board.port))
    pilot.set_duty(duty_from_current(amps))
    advertised = current_from_duty(pilot.read().duty_percent).current_a
    assert advertised is not None
    assert amps - 0.25 < advertised <= amps + 1e-9  # at most one permille step (0.25 A above 85 %) below


def test_cp_duty_current_over_the_serial_backend_stays_within_the_request(board: BoardSimulator) -> None:
    result = _v2gtool(board, "--json", "cp-duty", "current", "10", "--backend", "serial")
    assert result.returncode == 0, result.stderr
    record = json.loads(result.stdout)
    assert record["duty_percent"] == 16.6 and record["current_a"] == 9.96 and board.duty_permille == 166


@pytest.mark.parametrize("command", ["status", "close", "open", "reset", "weld-check"])
def test_contactor_commands_refuse_a_backend_without_contactors(board: BoardSimulator, command: str) -> None:
    result = _v2gtool(board, "contactor", command, "--backend", "serial", "--json")
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr == "v2gtool: error: the serial backend has no contactors\n"
    assert result.stdout == ""  # no event, no result: nothing was done
