"""The error classes every part of v2gtool raises for bad input or a failed step.

A :class:`V2GToolError` carries a one-line message that says what went wrong and where; the CLI
prints it without a traceback (``--debug`` shows one) and exits with :attr:`exit_code`.
"""


class V2GToolError(Exception):
    """Base of every error that the CLI reports as one line and a non-zero exit code."""

    exit_code: int = 1


class ConfigError(V2GToolError):
    """The configuration file, an environment variable or an option has an invalid value."""

    exit_code = 2
