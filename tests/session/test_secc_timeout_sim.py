"""``session run --sim`` when the SECC's own timeout ends the session: the EV sees only the connection
the SECC closed, yet the session ended by V2G_SECC_Sequence_Timeout, and the command says so with the
timeout exit status (README "Exit status" 3), not as a dropped link (1)."""

from __future__ import annotations

import asyncio

import pytest

from v2gtool.cli.live import SessionTimeout
from v2gtool.cli.session import _report
from v2gtool.exit_codes import ExitCode
from v2gtool.iso20.events import SessionEnded
from v2gtool.iso20.timeouts import Timeouts
from v2gtool.net.v2g_tcp import Ending
from v2gtool.session import scenario as scenarios
from v2gtool.session.runner import run_sim


@pytest.mark.parametrize("speed", [None, 20.0])
def test_an_ev_silent_past_the_secc_sequence_timeout_ends_as_the_secc_timeout(speed: float | None) -> None:
    """The EV stays in standby 4 s, past a 2 s V2G_SECC_Sequence_Timeout: the SECC ends the session
    and closes the connection under the EV, which only sees it closed."""
    scenario = scenarios.load(None, duration=3.0, standby_at=1.0, standby_for=4.0)
    result = asyncio.run(run_sim(scenario, speed=speed, timeouts=Timeouts(sequence=2.0)))
    ev_ended = [e.reason for e in result.events if isinstance(e, SessionEnded) and e.role == "EVCC"]
    assert ev_ended == ["the SECC closed the connection"]
    assert not result.ok and result.ending is Ending.TIMEOUT
    assert result.reason == result.secc_reason == "V2G_SECC_Sequence_Timeout: no request in state PowerDelivery"

    with pytest.raises(SessionTimeout) as raised:
        _report(None, result, as_json=True)  # type: ignore[arg-type]  # JSON output needs no console
    assert raised.value.exit_code == ExitCode.TIMEOUT
    assert str(raised.value) == (
        "session failed in PowerDelivery: V2G_SECC_Sequence_Timeout: no request in state PowerDelivery"
    )
