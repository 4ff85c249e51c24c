"""A durable, ordered outbox for the messages a CSMS must receive exactly once and in order.

OCPP 2.0.1 E04 / E12 ("Transaction-related message ... offline"): a station queues TransactionEvent
messages while the CSMS cannot be reached and delivers them in order once it can, flagged
``offline``. Here every transaction message goes through the outbox, online or not, so order is
the same either way, and nothing is lost when the process stops: each record is appended to
``outbox.jsonl`` and flushed to disk (fsync) before it counts as queued, and removed only after
the CSMS answered it (the acknowledged position lives in ``outbox.acked``, replaced atomically).

A crash in the middle of an append leaves a torn last line; opening the outbox cuts it off (that
record was never acknowledged as queued). Delivery is at least once — a CSMS that answered just
before the station crashed sees the record again — and the (transactionId, seqNo) pair every
TransactionEvent carries lets the CSMS drop the repeat, which makes it exactly once.

The acknowledged position also says which transaction is still open: the transaction id, last seqNo
and last meter value of the TransactionEvents the CSMS answered since that transaction's Started,
until its Ended (:class:`OpenTransaction`). With the records still queued on top of it,
:attr:`Outbox.open_transaction` tells a restarted station which transaction the previous process left
open (killed mid-session), so that it can end it, behind its queued events and before a new one,
whether or not the CSMS already had the rest.

A disk that refuses a write (full, EIO) does not stop the charging session that produced the
record: README and OCPP 2.0.1 E04 put the session first, and losing the session to save a log line
would lose the energy the record is about. The record is kept in memory and sent as usual; a one-line
warning names the file and the errno and says what is no longer durable. The file then holds the
queue's older part only (a cut-off line is cut back), so nothing is appended behind a gap: later
records stay in memory too until the queue drains, when the emptied file is durable again. Only a
process that stops meanwhile loses the records in memory, which the warning said.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from v2gtool.errors import V2GToolError

log = logging.getLogger(__name__)


class OutboxError(V2GToolError):
    """The outbox directory cannot be used."""

    exit_code = 4


@dataclass(frozen=True)
class Record:
    """One queued message: its position, OCPP action and snake_case payload."""

    n: int
    action: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class OpenTransaction:
    """A transaction with TransactionEvents through the outbox and no Ended yet: its id, the seqNo
    of its last event, and the last MeterValueType one of its events carried (None: none did)."""

    transaction_id: str
    seq_no: int
    meter_value: dict[str, Any] | None = None


def _after(open_tx: OpenTransaction | None, record: Record) -> OpenTransaction | None:
    """The open transaction once *record* is queued behind *open_tx*: a TransactionEvent opens or
    continues its transaction, its Ended closes it; any other record leaves it as it was."""
    payload = record.payload
    info = payload.get("transaction_info")
    seq_no = payload.get("seq_no")
    if record.action != "TransactionEvent" or not isinstance(info, dict) or type(seq_no) is not int:
        return open_tx
    transaction_id = info.get("transaction_id")
    if not isinstance(transaction_id, str):
        return open_tx
    same = open_tx is not None and open_tx.transaction_id == transaction_id
    if payload.get("event_type") == "Ended":
        return None if same else open_tx
    meters = payload.get("meter_value")
    meter = meters[-1] if isinstance(meters, list) and meters and isinstance(meters[-1], dict) else None
    if meter is None and same:
        assert open_tx is not None
        meter = open_tx.meter_value
    return OpenTransaction(transaction_id, seq_no, meter)


class Outbox:
    """The on-disk FIFO in *directory* (created when missing)."""

    def __init__(self, directory: Path, durable: bool = True) -> None:
        self.directory = directory
        self.durable = durable
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._acked_path = directory / "outbox.acked"
            self._log_path = directory / "outbox.jsonl"
            self.acked, self._answered = self._read_acked()
            self._pending: deque[Record] = deque(self._load())
            self._log = self._log_path.open("ab", buffering=0)  # a failed write leaves no buffer behind
        except (OSError, ValueError) as exc:
            raise OutboxError(f"outbox {directory}: {getattr(exc, 'strerror', None) or exc}") from None
        self.last = self._pending[-1].n if self._pending else self.acked
        self.on_disk = True  # every pending record is in the file (False: the newer ones in memory only)
        self._failing: set[Path] = set()  # files whose last write failed (warned once until one succeeds)

    def _read_acked(self) -> tuple[int, OpenTransaction | None]:
        """The acknowledged position and the transaction open at it (``outbox.acked``: ``{"n": N,
        "open_transaction": ...}``, or the number alone as the outbox wrote it before it kept the
        open transaction); ValueError naming the file when it is neither."""
        if not self._acked_path.exists():
            return 0, None
        text = self._acked_path.read_text()
        try:
            raw = json.loads(text)
            if type(raw) is int:
                return raw, None
            n, tx = raw["n"], raw["open_transaction"]
            if type(n) is not int:
                raise TypeError(n)
            if tx is None:
                return n, None
            open_tx = OpenTransaction(tx["transaction_id"], tx["seq_no"], tx["meter_value"])
            if (
                not isinstance(open_tx.transaction_id, str)
                or type(open_tx.seq_no) is not int
                or not isinstance(open_tx.meter_value, dict | None)
            ):
                raise TypeError(tx)
            return n, open_tx
        except (ValueError, KeyError, TypeError):
            raise ValueError(f"{self._acked_path.name} {text[:40]!r} is not an acknowledged position") from None

    @property
    def open_transaction(self) -> OpenTransaction | None:
        """The transaction the outbox's TransactionEvents leave open (no Ended queued for it): the one
        open where the CSMS's answers stopped, with the records still queued on top of it."""
        open_tx = self._answered
        for record in self._pending:
            open_tx = _after(open_tx, record)
        return open_tx

    def _load(self) -> list[Record]:
        if not self._log_path.exists():
            return []
        data = self._log_path.read_bytes()
        records: list[Record] = []
        good = 0
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break  # torn by a crash mid-append: never acknowledged as queued
            try:
                raw = json.loads(line)
                record = Record(int(raw["n"]), str(raw["action"]), dict(raw["payload"]))
            except (ValueError, KeyError, TypeError):
                break
            good += len(line)
            if record.n > self.acked:
                records.append(record)
        if good != len(data):
            with self._log_path.open("r+b") as f:
                f.truncate(good)
        return records

    def __len__(self) -> int:
        return len(self._pending)

    def put(self, action: str, payload: dict[str, Any]) -> Record:
        """Queue a message; it is on disk when this returns, unless the disk refused it or an
        earlier one (see the module: then in memory, with a warning)."""
        record = Record(self.last + 1, action, payload)
        if self.on_disk:
            self.on_disk = self._append(record)
        self.last = record.n
        self._pending.append(record)
        return record

    def _append(self, record: Record) -> bool:
        """Write *record* at the end of the file (fsync when durable); False when the disk refused
        it, the partial line cut back (kept off the disk until the queue drains, if that fails too)."""
        line = json.dumps({"n": record.n, "action": record.action, "payload": record.payload},
                          separators=(",", ":")) + "\n"  # fmt: skip
        fd = self._log.fileno()
        size: int | None = None
        try:
            size = os.fstat(fd).st_size
            data = memoryview(line.encode())
            while data:  # a write(2) may take part of it (the disk filled meanwhile), the next one fails
                data = data[os.write(fd, data):]
            if self.durable:
                os.fsync(fd)
        except OSError as exc:
            self._refused(self._log_path, exc, f"{record.action} {record.n} and those after it are kept in "
                          "memory only until the CSMS has them (lost if the process stops)")  # fmt: skip
            if size is not None:
                with contextlib.suppress(OSError):
                    os.ftruncate(fd, size)
            return False
        self._failing.discard(self._log_path)
        return True

    def _refused(self, path: Path, exc: OSError, consequence: str) -> None:
        """One warning line when *path* starts failing (not one per record while the disk is full)."""
        if path not in self._failing:
            self._failing.add(path)
            code = errno.errorcode.get(exc.errno or 0, "?")
            log.warning("outbox %s: %s (%s): %s", path, exc.strerror or exc, code, consequence)

    def peek(self) -> Record | None:
        """The oldest message not yet answered by the CSMS."""
        return self._pending[0] if self._pending else None

    def ack(self, record: Record) -> None:
        """The CSMS answered *record*: it leaves the outbox (and the file shrinks once empty).

        A disk that refuses the acknowledged position leaves it behind on disk: after a restart the
        CSMS gets those records again and drops them by their seqNo (the module's at least once)."""
        if not self._pending or self._pending[0].n != record.n:
            raise OutboxError(f"outbox {self.directory}: ack of {record.n} out of order")
        self._pending.popleft()
        self.acked = record.n
        self._answered = _after(self._answered, record)
        open_tx = None if self._answered is None else dataclasses.asdict(self._answered)
        position = {"n": self.acked, "open_transaction": open_tx}
        tmp = self._acked_path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps(position, separators=(",", ":")))
            if self.durable:
                with tmp.open("rb") as f:
                    os.fsync(f.fileno())
            tmp.replace(self._acked_path)
        except OSError as exc:
            self._refused(self._acked_path, exc, "records the CSMS answered are sent again after a restart")
        else:
            self._failing.discard(self._acked_path)
        if not self._pending:
            try:
                self._log.truncate(0)
            except OSError as exc:
                self._refused(self._log_path, exc, "new records stay in memory only")
            else:
                self.on_disk = True

    def close(self) -> None:
        self._log.close()
