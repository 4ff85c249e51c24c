"""A veth link between two network namespaces, and running code inside one of them."""

from __future__ import annotations

import ctypes
import os
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000


@dataclass(frozen=True)
class VethLink:
    ev_ns: str
    ev_if: str
    secc_ns: str
    secc_if: str

    def run_in(self, ns: str, fn: Callable[[], T]) -> Future[T]:
        """Run *fn* in a new thread that has entered namespace *ns*; sockets it opens live there."""
        future: Future[T] = Future()

        def body() -> None:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {ns}")
            finally:
                os.close(fd)
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=body, daemon=True).start()
        return future
