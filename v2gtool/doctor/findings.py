"""The result of one doctor check: a status, what was found, and how to fix it."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any


class Status(Enum):
    """How a check came out; only FAIL makes ``doctor`` exit non-zero."""

    OK = "ok"
    WARN = "warn"  # works, but not as a field installation should be, or could not be verified
    FAIL = "fail"  # a charging session will fail or is unsafe until fixed
    SKIPPED = "skipped"  # the user skipped it with --skip


@dataclass(frozen=True)
class Finding:
    """What one check found; *fix* says how to resolve a WARN or FAIL, as commands where possible."""

    check: str
    status: Status
    summary: str
    fix: str | None = None
    details: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"check": self.check, "status": self.status.value, "summary": self.summary}
        if self.fix is not None:
            record["fix"] = self.fix
        if self.details:
            record["details"] = list(self.details)
        return record
