"""``session run --sim --json``: one simulated clock runs through the whole chain, so the event lines
come in time order, the station's (contactors, cable check) between the messages around them."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import pytest


@pytest.mark.parametrize("options", [[], ["--direction", "discharge", "--control-mode", "dynamic"]])
def test_the_event_lines_of_a_sim_session_are_in_time_order(options: list[str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "v2gtool", "--json", "session", "run", "--sim", "--no-trace",
                           "--duration", "10", *options], capture_output=True, text=True, timeout=120, check=True)
    timed = [(record["t"], record["event"]) for record in map(json.loads, proc.stdout.splitlines()) if "t" in record]
    late = [(before, after) for before, after in itertools.pairwise(timed) if after[0] < before[0]]
    assert not late, late[:3]
    events = [event for _, event in timed]
    # the station's own events are among them: the ones that used to come after later messages
    assert {"ContactorsClosing", "CableCheckFinished", "ContactorsOpening"} <= set(events)
