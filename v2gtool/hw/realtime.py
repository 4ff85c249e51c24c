"""The real-time clock of the hardware backends (``gpiod``, ``serial``)."""

from __future__ import annotations

import time


class MonotonicClock:
    """``time.monotonic`` and a real sleep: the :class:`~v2gtool.hw.interfaces.Clock` of real hardware."""

    def now(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(max(0.0, seconds))
