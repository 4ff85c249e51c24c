"""The durable transaction-event outbox (OCPP 2.0.1 E04/E12): FIFO order, persistence across a
restart, a record torn by a crash mid-append cut off on reopen, acknowledgements only in order, and a
state machine of put/ack/reopen/crash against a model queue."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
from collections import deque
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from v2gtool.ocpp import outbox
from v2gtool.ocpp.outbox import Outbox, OutboxError, Record


def event(seq: int) -> dict[str, Any]:
    return {"event_type": "Updated", "seq_no": seq, "transaction_info": {"transaction_id": "tx-1"}}


def test_put_peek_ack_in_order(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox")
    assert len(box) == 0 and box.peek() is None
    records = [box.put("TransactionEvent", event(i)) for i in range(3)]
    assert [r.n for r in records] == [1, 2, 3]
    for i, record in enumerate(records):
        assert box.peek() == record and record.payload == event(i) and record.action == "TransactionEvent"
        box.ack(record)
        assert len(box) == 2 - i
    assert box.peek() is None
    box.close()


def test_records_survive_a_restart_and_numbering_continues(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    first = box.put("TransactionEvent", event(0))
    box.put("TransactionEvent", event(1))
    box.put("MeterValues", {"evse_id": 1})
    box.ack(first)
    box.close()
    again = Outbox(tmp_path)
    assert len(again) == 2
    head = again.peek()
    assert head is not None and (head.n, head.payload) == (2, event(1))
    assert again.put("TransactionEvent", event(3)).n == 4
    again.ack(head)
    again.close()
    third = Outbox(tmp_path)
    head = third.peek()
    assert head is not None and head.n == 3 and len(third) == 2
    third.close()


def test_an_emptied_outbox_shrinks_and_keeps_counting_after_a_restart(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    for i in range(3):
        box.ack(box.put("TransactionEvent", event(i)))
    assert (tmp_path / "outbox.jsonl").stat().st_size == 0
    box.close()
    again = Outbox(tmp_path)
    assert len(again) == 0 and again.put("TransactionEvent", event(9)).n == 4
    again.close()


def test_a_line_torn_by_a_crash_is_cut_off_and_the_good_records_survive(tmp_path: Path) -> None:
    box = Outbox(tmp_path)
    for i in range(3):
        box.put("TransactionEvent", event(i))
    box.close()
    log = tmp_path / "outbox.jsonl"
    good = log.read_bytes()
    with log.open("ab") as f:
        f.write(b'{"n":4,"action":"TransactionEvent","payload":{"seq')  # the process died here
    reopened = Outbox(tmp_path)
    assert log.read_bytes() == good  # cut back to the last whole record
    head = reopened.peek()
    assert len(reopened) == 3 and head is not None and head.n == 1
    assert reopened.put("TransactionEvent", event(3)).n == 4  # the torn record was never queued
    reopened.close()
    lines = log.read_bytes().splitlines()
    assert [json.loads(line)["n"] for line in lines] == [1, 2, 3, 4]  # no garbage glued to the new record
    final = Outbox(tmp_path)
    assert len(final) == 4
    final.close()


def test_ack_out_of_order_is_refused(tmp_path: Path) -> None:
    box = Outbox(tmp_path, durable=False)
    first, second = box.put("TransactionEvent", event(0)), box.put("TransactionEvent", event(1))
    with pytest.raises(OutboxError, match=r"ack of 2 out of order") as info:
        box.ack(second)
    assert "\n" not in str(info.value) and str(tmp_path) in str(info.value)
    box.ack(first)
    with pytest.raises(OutboxError, match="ack of 1 out of order"):
        box.ack(first)
    box.ack(second)
    with pytest.raises(OutboxError, match="ack of 2 out of order"):
        box.ack(second)
    box.close()


def test_an_unusable_directory_is_a_one_line_outbox_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    with pytest.raises(OutboxError, match="not-a-directory") as info:
        Outbox(blocker / "outbox")
    assert "\n" not in str(info.value) and info.value.exit_code == 4
    with pytest.raises(OutboxError, match="not-a-directory"):
        Outbox(blocker)


def test_a_corrupt_acknowledged_position_is_an_outbox_error(tmp_path: Path) -> None:
    (tmp_path / "outbox.acked").write_text("twelve")
    with pytest.raises(OutboxError, match="twelve") as info:
        Outbox(tmp_path)
    assert "\n" not in str(info.value)


class FullDisk:
    """``os.write`` and ``os.replace`` of the outbox on a disk that fills: the first failing write
    still takes *partial* bytes (write(2) stops at the last free block), then ENOSPC until freed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, partial: int = 10) -> None:
        self.full = False
        self.partial = partial
        real_write, real_replace = os.write, os.replace

        def write(fd: int, data: Any) -> int:
            if not self.full:
                return real_write(fd, data)
            if self.partial:
                taken, self.partial = real_write(fd, bytes(data[: self.partial])), 0
                return taken
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

        def replace(src: Any, dst: Any) -> None:
            if self.full:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            real_replace(src, dst)

        monkeypatch.setattr(outbox.os, "write", write)
        monkeypatch.setattr(outbox.os, "replace", replace)


def test_a_full_disk_keeps_records_in_memory_with_one_warning_and_recovers_once_drained(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    disk = FullDisk(monkeypatch)
    box = Outbox(tmp_path)
    first = box.put("TransactionEvent", event(0))
    log = tmp_path / "outbox.jsonl"
    on_disk = log.read_bytes()
    disk.full = True
    with caplog.at_level(logging.WARNING, "v2gtool.ocpp.outbox"):
        later = [box.put("TransactionEvent", event(i)) for i in range(1, 4)]  # no exception: the session goes on
    assert [r.n for r in later] == [2, 3, 4] and len(box) == 4 and not box.on_disk
    assert log.read_bytes() == on_disk  # the partial line cut back, nothing behind it
    assert caplog.messages == [
        f"outbox {log}: No space left on device (ENOSPC): TransactionEvent 2 and those after "
        "it are kept in memory only until the CSMS has them (lost if the process stops)"
    ]
    caplog.clear()
    with caplog.at_level(logging.WARNING, "v2gtool.ocpp.outbox"):
        for record in [first, *later]:  # delivered in order, from memory past the disk's part
            assert box.peek() == record
            box.ack(record)
    assert caplog.messages == [
        f"outbox {tmp_path / 'outbox.acked'}: No space left on device (ENOSPC): records the "
        "CSMS answered are sent again after a restart"
    ]
    disk.full = False
    assert box.on_disk and log.read_bytes() == b""  # drained: durable again
    box.put("TransactionEvent", event(4))
    box.close()
    again = Outbox(tmp_path)
    head = again.peek()
    assert len(again) == 1 and head is not None and head.payload == event(4)
    again.close()


class OutboxMachine(RuleBasedStateMachine):
    """The outbox against a model queue, across restarts and crashes in the middle of an append."""

    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp(prefix="v2g-outbox-"))
        self.box = Outbox(self.directory, durable=False)
        self.model: deque[tuple[int, dict[str, Any]]] = deque()
        self.next_n = 1

    @rule(payload=st.dictionaries(st.text(max_size=5), st.integers() | st.text(max_size=5), max_size=3))
    def put(self, payload: dict[str, Any]) -> None:
        record = self.box.put("TransactionEvent", payload)
        assert record.n == self.next_n
        self.model.append((record.n, payload))
        self.next_n += 1

    @rule()
    def ack_head(self) -> None:
        head = self.box.peek()
        if not self.model:
            assert head is None
            return
        assert head is not None
        self.box.ack(head)
        self.model.popleft()

    @rule(skip=st.integers(1, 5))
    def ack_out_of_order(self, skip: int) -> None:
        if len(self.model) <= skip:
            return
        n, payload = self.model[skip]
        with pytest.raises(OutboxError):
            self.box.ack(Record(n, "TransactionEvent", payload))

    @rule()
    def drain(self) -> None:
        """Deliver everything: exactly the model's records, in its order."""
        while (head := self.box.peek()) is not None:
            assert (head.n, head.payload) == self.model.popleft()
            self.box.ack(head)
        assert not self.model

    @rule()
    def reopen(self) -> None:
        self.box.close()
        self.box = Outbox(self.directory, durable=False)

    @rule(cut=st.integers(1, 60))
    def crash_mid_append(self, cut: int) -> None:
        self.box.close()
        line = json.dumps({"n": self.next_n, "action": "TransactionEvent", "payload": {"x": "y" * 40}})
        with (self.directory / "outbox.jsonl").open("ab") as f:
            f.write(line.encode()[: min(cut, len(line))])
        self.box = Outbox(self.directory, durable=False)

    @invariant()
    def matches_model(self) -> None:
        assert len(self.box) == len(self.model)
        head = self.box.peek()
        assert ((head.n, head.payload) == self.model[0]) if head is not None else not self.model

    def teardown(self) -> None:
        self.box.close()
        shutil.rmtree(self.directory, ignore_errors=True)


OutboxMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=40, deadline=None)
TestOutboxMachine = OutboxMachine.TestCase
