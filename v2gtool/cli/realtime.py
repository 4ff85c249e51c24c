"""``--rt [PRIO]`` and ``--cpu N`` of the commands that run the communication process (``serve``, ``session run``)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

import click

from v2gtool.cli.context import app_context
from v2gtool.cli.output import emit_json
from v2gtool.realtime import DEFAULT_PRIORITY, MAX_PRIORITY, RealtimeError, SchedulingApplied, apply_realtime

F = TypeVar("F", bound=Callable[..., Any])


def realtime_options(func: F) -> F:
    """Add ``--rt [PRIO]`` (parameter ``rt``) and ``--cpu N`` (parameter ``cpu``)."""
    func = click.option(
        "--cpu",
        type=click.IntRange(min=0),
        metavar="N",
        help="Pin the communication process to CPU N (keep certificate validation and logging on the others).",
    )(func)
    return click.option(
        "--rt",
        type=click.IntRange(1, MAX_PRIORITY),
        is_flag=False,
        flag_value=DEFAULT_PRIORITY,
        metavar="[PRIO]",
        help=f"Real-time scheduling: SCHED_FIFO at PRIO [{DEFAULT_PRIORITY} without a value] "
        "(needs CAP_SYS_NICE or RLIMIT_RTPRIO >= PRIO; see doctor's realtime check).",
    )(func)


def apply_options(ctx: click.Context, rt: int | None, cpu: int | None, as_json: bool) -> SchedulingApplied | None:
    """Apply ``--rt``/``--cpu`` when given, and report the scheduling now in effect (stdout or a JSON line)."""
    if rt is None and cpu is None:
        return None
    applied = apply_realtime(rt, cpu)
    if as_json:
        emit_json(applied.to_json())
    else:
        app_context(ctx).console.print(f"scheduling: {applied.describe()}", highlight=False)
    return applied


def check_options(rt: int | None, cpu: int | None) -> None:
    """Raise the :class:`RealtimeError` that ``--rt``/``--cpu`` would raise here, without changing this
    process's scheduling: for a command whose child processes apply them (``session run --netns``), so
    that a refusal is one error before anything starts. They are applied to a thread of its own, which
    then ends: policy, priority and affinity are per thread (:mod:`v2gtool.realtime`)."""
    if rt is None and cpu is None:
        return
    refused: list[RealtimeError] = []

    def try_them() -> None:
        try:
            apply_realtime(rt, cpu)
        except RealtimeError as exc:
            refused.append(exc)

    probe = threading.Thread(target=try_them, name="v2gtool-realtime-check")
    probe.start()
    probe.join()
    if refused:
        raise refused[0]
