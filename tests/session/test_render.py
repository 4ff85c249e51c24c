"""The human line of each session event people follow (``serve``, ``connect``, ``--role``)."""

from __future__ import annotations

from v2gtool.iso20.events import NoEnergyTransferred, SessionEnded
from v2gtool.session.render import describe


def test_a_loop_that_moved_no_energy_is_a_warning_line() -> None:
    event = NoEnergyTransferred(t=0.0, role="EVCC", direction="discharge", reason="the SECC delivered no current")
    assert describe(event) == (
        "EVCC warning: no energy moved in the discharge direction: the SECC delivered no current"
    )


def test_the_end_of_a_session_names_its_reason() -> None:
    ended = SessionEnded(t=0.0, role="SECC", ok=True, reason="SessionStop")
    assert describe(ended) == "SECC session ended: SessionStop"
