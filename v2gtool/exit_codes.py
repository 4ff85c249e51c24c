"""The exit status of every ``v2gtool`` command, the same for all subcommands.

Field scripts branch on these: retry on :attr:`ExitCode.TIMEOUT`, fix the machine on
:attr:`ExitCode.ENVIRONMENT`, never retry blindly on :attr:`ExitCode.SAFETY`. ``1`` and ``2`` keep the
meaning :class:`v2gtool.errors.V2GToolError` and :class:`v2gtool.errors.ConfigError` (and click's
usage errors) give them; a :class:`~v2gtool.errors.V2GToolError` subclass picks a specific code by
setting ``exit_code = ExitCode.X``. The man pages' EXIT STATUS section is generated from this table.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit status of a ``v2gtool`` command."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    TIMEOUT = 3
    ENVIRONMENT = 4
    SECURITY = 5
    SAFETY = 6
    INTERRUPTED = 130

    @property
    def meaning(self) -> str:
        """One sentence for the man pages and ``--help``."""
        return _MEANINGS[self]


_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "Success; for doctor: no check failed (warnings allowed).",
    ExitCode.FAILURE: (
        "The step failed: a protocol error, a negative ResponseCode from the peer, an undecodable "
        "message or bad input data (in line mode: at least one bad line)."
    ),
    ExitCode.USAGE: "Usage or configuration error: an unknown option, a bad value, an unreadable config file.",
    ExitCode.TIMEOUT: (
        "The peer did not answer within the timeout the standard sets for the step "
        "(for example 250 ms per SDP request, 20 s communication setup)."
    ),
    ExitCode.ENVIRONMENT: (
        "The machine is not ready: a doctor check failed, the PLC interface is missing or down, "
        "raw sockets are not permitted (needs CAP_NET_RAW or root), --rt or --cpu was refused "
        "(needs CAP_SYS_NICE or RLIMIT_RTPRIO; a CPU that exists)."
    ),
    ExitCode.SECURITY: (
        "TLS or certificate failure: handshake refused, chain invalid, certificate expired or not yet valid "
        "(check the clock first)."
    ),
    ExitCode.SAFETY: (
        "A safety interlock tripped: isolation fault, contactor weld, emergency stop. "
        "Inspect the hardware before retrying."
    ),
    ExitCode.INTERRUPTED: "Interrupted by the user (Ctrl-C, SIGINT).",
}
