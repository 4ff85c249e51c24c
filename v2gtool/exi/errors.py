"""The EXI codec's own error classes: every failure of decode or encode is one of these."""

from v2gtool.errors import V2GToolError


class EXIError(V2GToolError):
    """Base of every EXI codec error."""


class EXIDecodeError(EXIError):
    """The bytes are not a valid EXI stream for the schema set (names the bit, byte and grammar state)."""


class EXIEncodeError(EXIError):
    """A message does not fit its schema: a missing, misplaced or out-of-range value (names the path)."""
