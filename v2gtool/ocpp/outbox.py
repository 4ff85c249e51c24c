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
"""

from __future__ import annotations

import json
import os
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from v2gtool.errors import V2GToolError


class OutboxError(V2GToolError):
    """The outbox directory cannot be used."""

    exit_code = 4


@dataclass(frozen=True)
class Record:
    """One queued message: its position, OCPP action and snake_case payload."""

    n: int
    action: str
    payload: dict[str, Any]


class Outbox:
    """The on-disk FIFO in *directory* (created when missing)."""

    def __init__(self, directory: Path, durable: bool = True) -> None:
        self.directory = directory
        self.durable = durable
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self._acked_path = directory / "outbox.acked"
            self._log_path = directory / "outbox.jsonl"
            self.acked = int(self._acked_path.read_text()) if self._acked_path.exists() else 0
            self._pending: deque[Record] = deque(self._load())
            self._log = self._log_path.open("ab")
        except (OSError, ValueError) as exc:
            raise OutboxError(f"outbox {directory}: {getattr(exc, 'strerror', None) or exc}") from None
        self.last = self._pending[-1].n if self._pending else self.acked

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
        """Queue a message; it is on disk when this returns."""
        record = Record(self.last + 1, action, payload)
        line = json.dumps({"n": record.n, "action": action, "payload": payload}, separators=(",", ":")) + "\n"
        self._log.write(line.encode())
        self._log.flush()
        if self.durable:
            os.fsync(self._log.fileno())
        self.last = record.n
        self._pending.append(record)
        return record

    def peek(self) -> Record | None:
        """The oldest message not yet answered by the CSMS."""
        return self._pending[0] if self._pending else None

    def ack(self, record: Record) -> None:
        """The CSMS answered *record*: it leaves the outbox (and the file shrinks once empty)."""
        if not self._pending or self._pending[0].n != record.n:
            raise OutboxError(f"outbox {self.directory}: ack of {record.n} out of order")
        self._pending.popleft()
        self.acked = record.n
        tmp = self._acked_path.with_suffix(".tmp")
        tmp.write_text(str(self.acked))
        if self.durable:
            with tmp.open("rb") as f:
                os.fsync(f.fileno())
        tmp.replace(self._acked_path)
        if not self._pending:
            self._log.truncate(0)

    def close(self) -> None:
        self._log.close()
