"""The human line of the session events people follow as they happen (``serve``, ``connect``,
``session run --role``), shared by the terminal printer and the journal's MESSAGE field."""

from __future__ import annotations

from v2gtool.iso20.events import (
    MessageReceived,
    MessageSent,
    NoEnergyTransferred,
    SessionEnded,
    SessionPaused,
    SessionResumed,
)
from v2gtool.net.v2g_tcp import TransportFailed
from v2gtool.session.events import Event


def describe(event: Event) -> str | None:
    """``ROLE -> message`` / ``<-``, the session's end, a pause or resume, a loop that moved no energy
    and a failed connection; None for other events."""
    if isinstance(event, MessageSent | MessageReceived):
        arrow = "->" if isinstance(event, MessageSent) else "<-"
        return f"{event.role} {arrow} {event.message}"
    if isinstance(event, SessionEnded):
        return f"{event.role} session ended: {event.reason}"
    if isinstance(event, SessionPaused):
        return f"{event.role} session paused: resume it with --resume {event.session_id}"
    if isinstance(event, SessionResumed):
        joined = "joined the paused session" if event.joined else "started a new session instead:"
        return f"{event.role} resumed: the SECC {joined} {event.session_id}"
    if isinstance(event, NoEnergyTransferred):
        return f"{event.role} warning: no energy moved in the {event.direction} direction: {event.reason}"
    if isinstance(event, TransportFailed):
        return f"{event.role} connection failed: {event.error}"
    return None
