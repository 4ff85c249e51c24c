"""``--rt``/``--cpu`` on ``session run`` and ``serve``: applied and reported, or refused with exit status 4.

Each case runs the real command in a child process (scheduling is per process, and the test
runner's own must stay untouched); the child reports the policy of its main thread after the
command returned, so the test reads the kernel's state, not the command's own report.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import resource
import subprocess
import sys
from typing import Any

import pytest

from v2gtool.cli.doctor import doctor
from v2gtool.exit_codes import ExitCode
from v2gtool.realtime import DEFAULT_PRIORITY

# Runs the CLI, then writes the main thread's scheduling as the last line of stderr.
_CHILD = """
import json, os, sys
from v2gtool.cli.main import main
try:
    main(sys.argv[1:])
finally:
    print(json.dumps({"policy": os.sched_getscheduler(0), "priority": os.sched_getparam(0).sched_priority,
                      "cpus": sorted(os.sched_getaffinity(0))}), file=sys.stderr)
"""
SIM = ["session", "run", "--sim", "--duration", "1", "--no-trace", "--no-tls"]
PR_CAPBSET_DROP = 24  # linux/prctl.h
CAP_SYS_NICE = 23


def _run(args: list[str], **kwargs: Any) -> tuple[subprocess.CompletedProcess[str], dict[str, Any]]:
    done = subprocess.run([sys.executable, "-c", _CHILD, *args], capture_output=True, text=True, timeout=60,
                          **kwargs)
    return done, json.loads(done.stderr.strip().splitlines()[-1])


def _cpu() -> int:
    return max(os.sched_getaffinity(0))


def _sched_fifo_possible() -> None:
    done = subprocess.run([sys.executable, "-c", "import os; os.sched_setscheduler(0, os.SCHED_FIFO, "
                           f"os.sched_param({DEFAULT_PRIORITY}))"], capture_output=True)
    if done.returncode:
        pytest.skip("SCHED_FIFO is not permitted on this machine (no CAP_SYS_NICE or RT throttling)")


def test_session_run_applies_and_reports_sched_fifo_and_cpu() -> None:
    _sched_fifo_possible()
    cpu = _cpu()
    done, sched = _run(["--json", *SIM, "--rt", "--cpu", str(cpu)])
    assert done.returncode == 0, done.stderr
    assert sched == {"policy": os.SCHED_FIFO, "priority": DEFAULT_PRIORITY, "cpus": [cpu]}
    records = [json.loads(line) for line in done.stdout.splitlines()]  # the stream stays JSON lines
    applied = [r for r in records if r["event"] == "SchedulingApplied"]
    assert applied == [{"event": "SchedulingApplied", "t": applied[0]["t"], "policy": "SCHED_FIFO",
                        "priority": DEFAULT_PRIORITY, "cpus": [cpu]}]
    assert records[-1]["event"] == "SessionSummary" and records[-1]["ok"]


def test_rt_takes_a_priority_and_reports_it_to_people() -> None:
    _sched_fifo_possible()
    done, sched = _run([*SIM, "--rt", "7"])
    assert done.returncode == 0, done.stderr
    assert (sched["policy"], sched["priority"]) == (os.SCHED_FIFO, 7)
    assert sched["cpus"] == sorted(os.sched_getaffinity(0))  # no --cpu: the affinity is left alone
    assert "scheduling: SCHED_FIFO priority 7 on CPU" in done.stdout


def test_serve_applies_rt_before_it_touches_the_interface() -> None:
    _sched_fifo_possible()
    done, sched = _run(["v2g-message-handler", "serve", "--iface", "lo", "--no-tls", "--rt", "--cpu", str(_cpu()),
                        "--sessions", "1"])
    assert (sched["policy"], sched["cpus"]) == (os.SCHED_FIFO, [_cpu()])
    assert f"scheduling: SCHED_FIFO priority {DEFAULT_PRIORITY} on CPU {_cpu()}" in done.stdout
    assert done.returncode != 0  # lo has no IPv6 link-local address: serve stops there, with one line
    assert "link-local" in done.stderr and "Traceback" not in done.stderr


@pytest.mark.parametrize("command", [SIM, ["v2g-message-handler", "serve", "--iface", "lo", "--no-tls"]])
def test_a_cpu_that_does_not_exist_is_an_environment_error(command: list[str]) -> None:
    missing = (os.cpu_count() or 1) + 1000
    done, sched = _run([*command, "--cpu", str(missing)])
    assert done.returncode == ExitCode.ENVIRONMENT
    error = done.stderr.strip().splitlines()[-2]  # the line before the child's own report
    assert error.startswith(f"v2gtool: error: --cpu {missing}: no such CPU here (online: ")
    assert "Traceback" not in done.stderr and done.stdout == ""
    assert sched["policy"] == os.SCHED_OTHER


def _without_cap_sys_nice() -> None:
    """In the child before exec: no CAP_SYS_NICE ever again (bounding set) and RLIMIT_RTPRIO 0."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if libc.prctl(PR_CAPBSET_DROP, CAP_SYS_NICE, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_CAPBSET_DROP")
    resource.setrlimit(resource.RLIMIT_RTPRIO, (0, 0))


def test_rt_without_permission_is_refused_with_the_fix() -> None:
    try:
        done, sched = _run([*SIM, "--rt"], preexec_fn=_without_cap_sys_nice)
    except subprocess.SubprocessError as exc:
        pytest.skip(f"cannot drop CAP_SYS_NICE in a child here: {exc}")
    assert done.returncode == ExitCode.ENVIRONMENT
    error = done.stderr.strip().splitlines()[-2]
    assert error == (f"v2gtool: error: --rt {DEFAULT_PRIORITY}: SCHED_FIFO not permitted: RLIMIT_RTPRIO is 0 and "
                     f"CAP_SYS_NICE is missing; raise it (ulimit -r {DEFAULT_PRIORITY}, "
                     f"LimitRTPRIO={DEFAULT_PRIORITY} in the unit) or grant CAP_SYS_NICE")
    assert done.stdout == ""
    assert sched["policy"] == os.SCHED_OTHER


def test_rt_priority_out_of_range_is_a_usage_error() -> None:
    done = subprocess.run([sys.executable, "-m", "v2gtool", *SIM, "--rt", "99"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == ExitCode.USAGE
    assert "99 is not in the range 1<=x<=98" in done.stderr


def test_doctor_names_the_priority_rt_uses() -> None:
    assert f"--rt's default priority ({DEFAULT_PRIORITY})" in (doctor.help or "")


@pytest.mark.netns
def test_netns_gives_rt_and_cpu_to_both_roles() -> None:
    """With --netns the communication processes are the two children: each applies and reports it."""
    _sched_fifo_possible()
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    cpu = _cpu()
    done = subprocess.run([sys.executable, "-m", "v2gtool", "--json", "session", "run", "--netns", "--no-tls",
                           "--duration", "1", "--rt", "12", "--cpu", str(cpu)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    applied = [(r["policy"], r["priority"], r["cpus"]) for r in records if r["event"] == "SchedulingApplied"]
    assert applied == [("SCHED_FIFO", 12, [cpu])] * 2
