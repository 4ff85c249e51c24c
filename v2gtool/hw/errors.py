"""Errors of the hardware layer, each with the exit code the commands document."""

from __future__ import annotations

from v2gtool.errors import V2GToolError


class HardwareError(V2GToolError):
    """A backend failed: a device is missing, unplugged or answered garbage."""

    exit_code = 1


class BackendPartMissing(V2GToolError):
    """The selected backend does not have the part a command needs (e.g. no IMD on ``gpiod``)."""

    exit_code = 2


class ScenarioError(V2GToolError):
    """A fault scenario file is unreadable or malformed."""

    exit_code = 2


class InterlockRefusedError(V2GToolError):
    """The interlock refused a command; the message names the blocking condition."""

    exit_code = 3


class ContactorStuckError(V2GToolError):
    """A contactor is welded or its feedback disagrees with the command ("Contactor Stuck")."""

    exit_code = 4


class InterlockTrippedError(V2GToolError):
    """The interlock opened the contactors during the run (CP, isolation, emergency stop)."""

    exit_code = 5


class IsolationFaultError(V2GToolError):
    """The cable check found an insulation fault, or could not verify the insulation."""

    exit_code = 6
