"""Journal logging: the native protocol's encoding, the $JOURNAL_STREAM detection of systemd.exec(5),
records arriving on a unix datagram socket standing in for journald, and the fall-backs."""

from __future__ import annotations

import contextlib
import os
import socket
import string
import struct
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from v2gtool.cli.main import cli
from v2gtool.iso20.events import MessageSent, PhaseChanged, SessionEnded
from v2gtool.net.v2g_tcp import TransportFailed
from v2gtool.session import journal
from v2gtool.session.journal import JournalLog, encode_record, journal_log, output_goes_to_journal, record


def parse_datagram(data: bytes) -> list[tuple[str, str]]:
    """Decode one native-protocol datagram (systemd's "Native Journal Protocol" documentation)."""
    fields = []
    while data:
        line_end = data.index(b"\n")
        head = data[:line_end]
        if b"=" in head:
            name, _, value = head.partition(b"=")
            data = data[line_end + 1:]
        else:
            name = head
            (size,) = struct.unpack("<Q", data[line_end + 1:line_end + 9])
            value = data[line_end + 9:line_end + 9 + size]
            assert data[line_end + 9 + size:line_end + 10 + size] == b"\n"
            data = data[line_end + 10 + size:]
        fields.append((name.decode(), value.decode()))
    return fields


field_names = st.from_regex(r"[A-Z][A-Z0-9_]{0,63}", fullmatch=True)
field_values = st.text(st.characters(blacklist_categories=("Cs",)), max_size=200)


@given(st.lists(st.tuples(field_names, field_values), max_size=12))
def test_encoded_records_decode_to_the_same_fields(fields: list[tuple[str, str]]) -> None:
    assert parse_datagram(encode_record(fields)) == fields


@given(st.text(string.ascii_letters + string.digits + "_=\n .", min_size=1, max_size=70))
def test_only_valid_field_names_are_encoded(name: str) -> None:
    valid = name[0] in string.ascii_uppercase and len(name) <= 64 and all(
        c in string.ascii_uppercase + string.digits + "_" for c in name)
    if valid:
        assert encode_record([(name, "x")]) == f"{name}=x\n".encode()
    else:
        with pytest.raises(ValueError):
            encode_record([(name, "x")])


def test_a_value_with_a_newline_is_sent_with_its_length() -> None:
    assert encode_record([("MESSAGE", "a\nb")]) == b"MESSAGE\n" + struct.pack("<Q", 3) + b"a\nb\n"


def test_journal_stream_must_name_our_own_stream(tmp_path: Path) -> None:
    with (tmp_path / "out").open("w") as ours, (tmp_path / "other").open("w") as other:
        mine = os.fstat(ours.fileno())
        theirs = os.fstat(other.fileno())
        streams = (ours.fileno(),)
        assert output_goes_to_journal({"JOURNAL_STREAM": f"{mine.st_dev}:{mine.st_ino}"}, streams)
        # inherited from a parent whose output went elsewhere: not ours
        assert not output_goes_to_journal({"JOURNAL_STREAM": f"{theirs.st_dev}:{theirs.st_ino}"}, streams)
        # INVOCATION_ID alone (systemd started us, output may go to a file) does not switch it on
        assert not output_goes_to_journal({"INVOCATION_ID": "0123456789abcdef"}, streams)
        for garbage in ("", "12", "a:b", f"{mine.st_dev}:", f":{mine.st_ino}"):
            assert not output_goes_to_journal({"JOURNAL_STREAM": garbage}, streams)


@pytest.fixture
def fake_journald(tmp_path: Path) -> Iterator[tuple[socket.socket, Path]]:
    """A unix datagram socket where journald's would be."""
    path = tmp_path / "journal.socket"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(5)
    yield server, path
    server.close()


def our_stderr_env() -> dict[str, str]:
    status = os.fstat(2)
    return {"JOURNAL_STREAM": f"{status.st_dev}:{status.st_ino}"}


def test_events_arrive_as_structured_records(fake_journald: tuple[socket.socket, Path]) -> None:
    server, path = fake_journald
    log = journal_log(our_stderr_env(), path, streams=(2,))
    assert isinstance(log, JournalLog)
    try:
        log(MessageSent(t=1.5, role="EVCC", message="SessionSetupReq", size=20, summary={"EVCCID": "WMI"}))
        log(SessionEnded(t=9.0, role="SECC", reason="V2G_SECC_Sequence_Timeout: no request in state X", ok=False))
        log(PhaseChanged(t=2.0, role="SECC", phase="DC_CableCheck"))
    finally:
        log.close()
    sent, ended, phase = (dict(parse_datagram(server.recv(65536))) for _ in range(3))
    assert sent == {
        "MESSAGE": "EVCC -> SessionSetupReq", "PRIORITY": "7", "SYSLOG_IDENTIFIER": "v2gtool",
        "V2G_EVENT": "MessageSent", "V2G_T": "1.5", "V2G_ROLE": "EVCC", "V2G_MESSAGE": "SessionSetupReq",
        "V2G_SIZE": "20", "V2G_SUMMARY": '{"EVCCID":"WMI"}',
    }
    assert ended["PRIORITY"] == "3" and ended["V2G_OK"] == "false"
    assert ended["MESSAGE"] == "SECC session ended: V2G_SECC_Sequence_Timeout: no request in state X"
    assert "V2G_RESPONSE_CODE" not in ended  # None is left out, not sent as "null"
    assert phase["MESSAGE"] == "PhaseChanged role=SECC phase=DC_CableCheck" and phase["PRIORITY"] == "6"


def test_the_journal_socket_is_closed_at_the_end_of_its_block(fake_journald: tuple[socket.socket, Path]) -> None:
    server, path = fake_journald
    lines: list[str] = []
    log = journal_log(our_stderr_env(), path, streams=(2,), fallback=lines.append)
    assert log is not None
    with log:
        log(PhaseChanged(t=2.0, role="SECC", phase="DC_CableCheck"))
    assert dict(parse_datagram(server.recv(65536)))["V2G_PHASE"] == "DC_CableCheck"
    log(PhaseChanged(t=3.0, role="SECC", phase="DC_PreCharge"))  # its socket is closed: the fallback line
    assert lines == ["PhaseChanged role=SECC phase=DC_PreCharge"]


def test_no_journal_without_its_socket_or_outside_systemd(tmp_path: Path,
                                                           fake_journald: tuple[socket.socket, Path]) -> None:
    assert journal_log(our_stderr_env(), tmp_path / "missing.socket", streams=(2,)) is None
    assert journal_log({}, fake_journald[1], streams=(2,)) is None


def test_a_record_the_journal_refuses_goes_to_the_fallback(tmp_path: Path) -> None:
    path = tmp_path / "journal.socket"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    lines: list[str] = []
    log = journal_log(our_stderr_env(), path, streams=(2,), fallback=lines.append)
    assert log is not None
    server.close()  # journald went away
    try:
        log(TransportFailed(t=0.1, role="EVCC", error="ConnectionResetError: reset"))
    finally:
        log.close()
    assert lines == ["EVCC connection failed: ConnectionResetError: reset"]
    assert dict(record(TransportFailed(t=0.1, role="EVCC", error="x")))["PRIORITY"] == "3"


def test_session_run_under_systemd_logs_its_events_to_the_journal(
        fake_journald: tuple[socket.socket, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """The hook: with $JOURNAL_STREAM naming our stderr, `session run --sim` sends its events to the
    journal socket instead of drawing the live panel."""
    server, path = fake_journald
    monkeypatch.setattr(journal, "JOURNAL_SOCKET", path)
    for key, value in our_stderr_env().items():
        monkeypatch.setenv(key, value)
    datagrams: list[bytes] = []
    done = threading.Event()

    def journald() -> None:  # reads as journald does, while the session runs
        server.settimeout(0.05)
        while not done.is_set():
            with contextlib.suppress(TimeoutError):
                datagrams.append(server.recv(65536))

    reader = threading.Thread(target=journald)
    reader.start()
    try:
        result = CliRunner().invoke(cli, ["session", "run", "--sim", "--no-trace", "--duration", "2"])
    finally:
        time.sleep(0.2)
        done.set()
        reader.join()
    assert result.exit_code == 0, result.output
    records = [dict(parse_datagram(data)) for data in datagrams]
    assert all(r["SYSLOG_IDENTIFIER"] == "v2gtool" for r in records)
    events = [r["V2G_EVENT"] for r in records]
    assert "PowerFlow" in events and "PhaseChanged" in events
    ended = [r for r in records if r["V2G_EVENT"] == "SessionEnded"]
    assert {r["V2G_ROLE"] for r in ended} == {"EVCC", "SECC"}
    assert all(r["PRIORITY"] == "5" and r["V2G_REASON"] == "SessionStop Terminate" for r in ended)
    assert "SessionSetupReq" in {r.get("V2G_MESSAGE") for r in records}
    assert "phase" not in result.output  # no live panel
    assert "v2gtool: " not in result.output  # no record fell back to stderr
