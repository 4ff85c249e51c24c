"""The committed completions and man pages are what the generators make from today's command tree
and event classes."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.tools.conftest import REPO, run_tool
from v2gtool.cli.main import SUBCOMMANDS
from v2gtool.iso20.evcc import Direction
from v2gtool.session import scenario as scenarios
from v2gtool.session.events import Event
from v2gtool.session.runner import run_sim

#: Each generated directory and the generators that write it.
GENERATED = {"completions": ("gen_completions.py",), "man": ("gen_man.py", "gen_events.py")}
EVENTS_PAGE = REPO / "man" / "v2gtool-events.7"


def _tree(directory: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(directory.iterdir()) if p.is_file()}


@pytest.mark.parametrize("directory", GENERATED)
def test_committed_output_is_current(tmp_path: Path, directory: str) -> None:
    for script in GENERATED[directory]:
        run_tool(script, tmp_path)
    fresh, committed = _tree(tmp_path), _tree(REPO / directory)
    stale = sorted(name for name in fresh.keys() | committed.keys() if fresh.get(name) != committed.get(name))
    scripts = " and ".join(f"python tools/{script}" for script in GENERATED[directory])
    assert not stale, f"{directory}/ is stale ({', '.join(stale)}): run {scripts}"


def test_every_subcommand_has_a_man_page(tmp_path: Path) -> None:
    run_tool("gen_man.py", tmp_path)
    pages = {p.name for p in tmp_path.iterdir()}
    assert pages == {"v2gtool.1", *(f"v2gtool-{name}.1" for name in SUBCOMMANDS)}


# --- the event reference: man/v2gtool-events.7 ------------------------------------------------


@pytest.fixture
def gen_events(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(REPO / "tools"))
    import gen_events

    return gen_events


def _documented() -> set[str]:
    return {line.removeprefix(".SS ") for line in EVENTS_PAGE.read_text().splitlines() if line.startswith(".SS ")}


def test_the_reference_covers_every_event_module_session_run_loads(gen_events: ModuleType) -> None:
    """An event class in a module the page has no section for would be missing from it: the modules
    are those whose Event subclasses ``session run``'s command module loads, in a fresh interpreter."""
    probe = ("import json, v2gtool.cli.session\n"
             "from v2gtool.session.events import Event\n"
             "def walk(c):\n"
             "    for s in c.__subclasses__():\n"
             "        yield s\n"
             "        yield from walk(s)\n"
             "print(json.dumps(sorted({c.__module__ for c in walk(Event)})))\n")
    loaded = json.loads(subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True, text=True,
                                       timeout=60).stdout)
    listed = {module for section in gen_events.SECTIONS for module in section.modules}
    assert set(loaded) <= listed, f"event modules without a section in tools/gen_events.py: {set(loaded) - listed}"


def test_every_event_of_a_session_is_documented_with_its_role(gen_events: ModuleType) -> None:
    """A --sim discharge session (what --json writes line by line): each event's type has its entry, and
    its role is one the page gives for it."""
    events: list[Event] = []
    scenario = scenarios.load(None, direction=Direction.DISCHARGE, duration=5.0)
    result = asyncio.run(run_sim(scenario, listener=events.append))
    assert result.ok, result.reason
    documented = _documented()
    assert {event.name for event in events} <= documented
    for event in events:
        if (role := getattr(event, "role", None)) is not None:
            assert role in gen_events.ROLES[type(event).__module__], event


def test_the_reference_says_which_role_names_each_step_uses(gen_events: ModuleType) -> None:
    text = EVENTS_PAGE.read_text()
    assert '"evse" or "ev" in the SLAC events' in text
    assert '"SECC" or "EVCC" in the ISO 15118\\-20 session and connection events' in text
    assert 'role\\fR: string, "evse" or "ev"' in text and 'role\\fR: string, "SECC" or "EVCC"' in text


def test_the_reference_renders_without_warnings() -> None:
    if shutil.which("groff") is None:
        pytest.skip("groff is not installed (apt-get install groff-base)")
    result = subprocess.run(["groff", "-man", "-ww", "-z", str(EVENTS_PAGE)], capture_output=True, text=True,
                            timeout=30)
    assert (result.returncode, result.stderr) == (0, "")
