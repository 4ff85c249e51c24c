"""Real-time scheduling of the communication process: ``SCHED_FIFO`` (``--rt``) and a pinned core (``--cpu``).

ISO 15118-20 bounds every answer of the SECC (2 s message timeout for most requests, 20 s
V2G_EVCC_CommunicationSetup_Timeout from SDP to SessionSetup; :mod:`v2gtool.iso20.timeouts`), and
SDP allows 250 ms per request. A communication process that shares a busy core with certificate
path validation, OCPP or logging can miss them under load. ``SCHED_FIFO`` makes the process preempt
every normal (``SCHED_OTHER``) task, and pinning it to one core keeps it off the cores where the
heavy work runs.

:func:`apply_realtime` applies both to the calling thread; threads started afterwards (asyncio's
resolver and executor threads) inherit policy, priority and affinity (``pthread_create(3)`` with
default attributes), so it is called once at the start of a command, before any work begins.
"""

from __future__ import annotations

import errno
import os
import resource
import time
from dataclasses import dataclass
from pathlib import Path

from v2gtool.errors import V2GToolError
from v2gtool.exit_codes import ExitCode
from v2gtool.session.events import Event

DEFAULT_PRIORITY = 40
"""``--rt`` without a value. Below 50, the priority of the kernel's threaded interrupt handlers on
PREEMPT_RT, so the interrupt thread of the PLC modem (QCA7000 on SPI) that delivers our frames still
preempts us; within ``LimitRTPRIO=50`` of the shipped ``evse-v2g.service``."""

MAX_PRIORITY = 98
"""Highest ``--rt`` priority: 99 belongs to the kernel's own threads (migration, watchdog)."""

CAP_SYS_NICE = 23  # linux/capability.h


class RealtimeError(V2GToolError):
    """The scheduling ``--rt`` or ``--cpu`` asks for is not permitted or not possible on this machine."""

    exit_code = ExitCode.ENVIRONMENT


@dataclass(frozen=True, kw_only=True)
class SchedulingApplied(Event):
    """The scheduling the process runs with after ``--rt``/``--cpu``, read back from the kernel."""

    policy: str
    priority: int
    cpus: tuple[int, ...]

    def describe(self) -> str:
        """One line for people, e.g. ``SCHED_FIFO priority 40 on CPU 1``."""
        where = ", ".join(str(cpu) for cpu in self.cpus)
        return f"{self.policy} priority {self.priority} on CPU {where}"


_POLICY_NAMES = {os.SCHED_OTHER: "SCHED_OTHER", os.SCHED_FIFO: "SCHED_FIFO", os.SCHED_RR: "SCHED_RR"}


def apply_realtime(priority: int | None, cpu: int | None) -> SchedulingApplied:
    """Switch the calling thread to ``SCHED_FIFO`` at *priority* (None: leave the policy) and pin it to
    *cpu* (None: leave the affinity); return what the kernel now reports.

    Raises :class:`RealtimeError` (exit status 4) when the kernel refuses: no ``CAP_SYS_NICE`` and an
    ``RLIMIT_RTPRIO`` below *priority*, a cgroup without real-time runtime, or a CPU that does not
    exist or is outside the process's cpuset.
    """
    if cpu is not None:
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise RealtimeError(f"--cpu {cpu}: cannot pin to CPU {cpu}: {exc.strerror}") from None
            raise RealtimeError(
                f"--cpu {cpu}: no such CPU here (online: {_online_cpus()}; a cpuset may allow fewer)"
            ) from None
    if priority is not None:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        except OSError as exc:
            if exc.errno != errno.EPERM:
                raise RealtimeError(f"--rt {priority}: cannot use SCHED_FIFO: {exc.strerror}") from None
            raise RealtimeError(f"--rt {priority}: SCHED_FIFO not permitted: {_refusal_reason(priority)}") from None
    return current_scheduling()


def current_scheduling() -> SchedulingApplied:
    """The calling thread's policy, priority and CPUs, as the kernel reports them."""
    policy = os.sched_getscheduler(0)
    return SchedulingApplied(
        t=time.monotonic(),
        policy=_POLICY_NAMES.get(policy, str(policy)),
        priority=os.sched_getparam(0).sched_priority,
        cpus=tuple(sorted(os.sched_getaffinity(0))),
    )


def _refusal_reason(priority: int) -> str:
    """Why the kernel answered EPERM, and the fix: the rlimit, or (with CAP_SYS_NICE) RT throttling."""
    if _has_cap_sys_nice():
        return ("the cgroup has no real-time runtime (cpu.rt_runtime_us is 0 with RT group scheduling); "
                "give it some or run outside it")
    soft, _hard = resource.getrlimit(resource.RLIMIT_RTPRIO)
    return (f"RLIMIT_RTPRIO is {soft} and CAP_SYS_NICE is missing; "
            f"raise it (ulimit -r {priority}, LimitRTPRIO={priority} in the unit) or grant CAP_SYS_NICE")


def _has_cap_sys_nice() -> bool:
    """Whether CAP_SYS_NICE is in the effective capability set (``CapEff`` of ``/proc/self/status``)."""
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return os.geteuid() == 0
    for line in status.splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_SYS_NICE & 1)
    return os.geteuid() == 0


def _online_cpus() -> str:
    """The kernel's list of online CPUs, e.g. ``0-3``."""
    try:
        return Path("/sys/devices/system/cpu/online").read_text().strip()
    except OSError:
        return f"0-{(os.cpu_count() or 1) - 1}"
