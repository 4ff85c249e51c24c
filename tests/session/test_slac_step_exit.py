"""The SLAC step of `session run`: an EV on a link where no EVSE answers stayed unanswered past
TT_match_response and its retries (ISO 15118-3 Table A.1), a timeout: exit 3, one line; the step
offers the control pilot module's 5 %."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.netns import veth_pair
from v2gtool.exit_codes import ExitCode
from v2gtool.hw import cp
from v2gtool.session import link_chain, slac_step

V2GTOOL = [sys.executable, "-m", "v2gtool"]


@pytest.mark.netns
def test_an_unanswered_slac_is_a_timeout() -> None:
    with veth_pair("v2gy") as link:  # nothing runs on the SECC end
        ev = subprocess.run(link.cmd(link.ev_ns, *V2GTOOL, "session", "run", "--role", "ev", "--iface", link.ev_if,
                                     "--no-tls", "--no-trace"),
                            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert ev.returncode == ExitCode.TIMEOUT, ev.stderr
    assert ev.stderr.count("\n") == 1 and "NO_SLAC_PARM_CNF" in ev.stderr and "Traceback" not in ev.stderr


def test_the_chain_offers_the_duty_cycle_of_the_control_pilot_module() -> None:
    """One 5 % (IEC 61851-1: digital communication required) for the whole tool, not a copy per step."""
    assert slac_step.DIGITAL_COMMUNICATION_DUTY is cp.DIGITAL_COMMUNICATION_DUTY
    assert link_chain.DIGITAL_COMMUNICATION_DUTY is cp.DIGITAL_COMMUNICATION_DUTY
