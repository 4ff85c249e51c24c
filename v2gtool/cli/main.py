"""The ``v2gtool`` command group: global options, lazy subcommand loading and error reporting."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TextIO, TypeVar

import click

from v2gtool import __version__
from v2gtool.cli.context import AppContext, PipelineConsole
from v2gtool.cli.lazy import LazyGroup
from v2gtool.config import load_config
from v2gtool.errors import V2GToolError
from v2gtool.exit_codes import ExitCode

# Subcommand name -> "module:attribute". Modules are imported only when their command runs, so
# `v2gtool --help` and pipelines stay fast. A command is listed here only once it works.
SUBCOMMANDS: dict[str, str] = {
    "evse-slac": "v2gtool.cli.evse_slac:evse_slac",
    "pcap-decode": "v2gtool.cli.pcap_decode:pcap_decode",
    "v2g-message-handler": "v2gtool.cli.message_handler:message_handler",
    "contactor": "v2gtool.cli.contactor:contactor",
    "cp-duty": "v2gtool.cli.cp_duty:cp_duty",
    "isolation-check": "v2gtool.cli.isolation_check:isolation_check",
    "completion": "v2gtool.cli.completion:completion",
    "deploy-files": "v2gtool.cli.deploy_files:deploy_files",
    "doctor": "v2gtool.cli.doctor:doctor",
    "session": "v2gtool.cli.session:session",
    "sdp-discovery": "v2gtool.cli.sdp_discovery:sdp_discovery",
    "pki": "v2gtool.cli.pki:pki",
    "tls-verify": "v2gtool.cli.tls_verify:tls_verify",
    "ocpp-bridge": "v2gtool.cli.ocpp_bridge:ocpp_bridge",
    "vpp": "v2gtool.cli.vpp:vpp",
}


@click.group(cls=LazyGroup, lazy_subcommands=SUBCOMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="v2gtool")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar="V2GTOOL_CONFIG",
    help="TOML configuration file [default: /etc/v2g/v2gtool.toml when present].",
)
@click.option("--json", "json_out", is_flag=True, help="Emit JSON lines instead of rich output.")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug details on errors.")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, json_out: bool, debug: bool) -> None:
    """v2gtool: CCS bi-directional (V2G) DC charging per ISO 15118-20, step by step.

    Each subcommand debugs one step of a charging session; together they form the whole chain.
    Output is rich text for people, or JSON lines with --json for pipelines.
    """
    ctx.obj = AppContext(
        config=load_config(config_path),
        json=json_out,
        debug=debug,
        console=PipelineConsole(),
        err_console=PipelineConsole(stderr=True),
    )


class StdoutWriteError(V2GToolError):
    """Standard output refused a write (a full disk, EIO): the machine's fault, not the command's."""

    exit_code = ExitCode.ENVIRONMENT

    def __init__(self, error: OSError) -> None:
        super().__init__(f"cannot write to standard output: {error.strerror or error}")


T = TypeVar("T")


class _CheckedStdout:
    """``sys.stdout`` while a command runs: a write or flush that fails (other than a closed pipe,
    which means the reader has left) raises :class:`StdoutWriteError`, and every later one again,
    so the command stops whichever of its paths (rich, JSON lines, click) wrote. The first failure
    is kept in :attr:`error` for :func:`main`, which reports it even when a callback swallowed the
    exception; the descriptor then points at /dev/null, so the data still buffered cannot fail again
    at exit."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.error: StdoutWriteError | None = None

    def write(self, text: str) -> int:
        return self._checked(self.stream.write, text)

    def writelines(self, lines: Any) -> None:
        self._checked(self.stream.writelines, lines)

    def flush(self) -> None:
        self._checked(self.stream.flush)

    def _checked(self, call: Callable[..., T], *args: Any) -> T:
        if self.error is not None:
            raise self.error
        try:
            return call(*args)
        except BrokenPipeError:
            raise
        except OSError as exc:
            self.error = StdoutWriteError(exc)
            devnull = os.open(os.devnull, os.O_WRONLY)
            with contextlib.suppress(OSError, ValueError):  # a stream without a descriptor keeps its data
                os.dup2(devnull, self.stream.fileno())
            os.close(devnull)
            raise self.error from exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


class _LogLine(logging.Formatter):
    """A log record (a library's warning, the station's SoC floor, the OCPP outbox) as the CLI's own
    one-line messages are: ``v2gtool: warning: <message>``, the level in lower case. With --debug
    the logger and the source line follow, and the traceback, which is shown only then."""

    def __init__(self, debug: bool) -> None:
        super().__init__()
        self.debug = debug

    def format(self, record: logging.LogRecord) -> str:
        line = f"v2gtool: {record.levelname.lower()}: {record.getMessage()}"
        if not self.debug:
            return line
        lines = [f"{line} [{record.name}, {record.filename}:{record.lineno}]"]
        if record.exc_info:
            lines.append(self.formatException(record.exc_info))
        if record.stack_info:
            lines.append(self.formatStack(record.stack_info))
        return "\n".join(lines)


@contextlib.contextmanager
def _log_lines(debug: bool) -> Iterator[None]:
    """While the command runs, log records go to stderr as :class:`_LogLine`: warnings and errors,
    and with --debug also v2gtool's own debug records. Undone at the end, for a caller in-process."""
    handler = logging.StreamHandler()
    handler.setFormatter(_LogLine(debug))
    handler.setLevel(logging.DEBUG if debug else logging.WARNING)
    root, ours = logging.getLogger(), logging.getLogger("v2gtool")
    level = ours.level
    root.addHandler(handler)
    if debug:
        ours.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.removeHandler(handler)
        ours.setLevel(level)


def main(argv: list[str] | None = None) -> None:
    """Entry point of the console script: run the group, turn our errors into one line + exit code.

    A write error on standard output is reported as such (exit 4) whatever the command made of it on
    its way out (a session that ended because its event listener raised, a callback's exception that
    asyncio logged): it is the cause."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    with _log_lines(debug):
        _main(args, debug)


def _main(args: list[str], debug: bool) -> None:
    """:func:`main` within its log set-up."""
    if sys.stdout is None:  # started with stdout closed: click writes nothing then
        _run(args, debug, None)
        return
    checked = _CheckedStdout(sys.stdout)
    sys.stdout = checked  # a TextIO in all but its class
    try:
        _run(args, debug, checked)
    except BaseException:
        if checked.error is None:
            raise
    finally:
        if sys.stdout is checked:
            sys.stdout = checked.stream
    if checked.error is not None:
        if debug:
            traceback.print_exception(checked.error)
        click.echo(f"v2gtool: error: {checked.error}", err=True)
        sys.exit(checked.error.exit_code)


def _run(args: list[str], debug: bool, stdout: _CheckedStdout | None) -> None:
    try:
        rc = cli.main(args=args, prog_name="v2gtool", standalone_mode=False)
    except (V2GToolError, click.ClickException) as exc:
        if stdout is not None and stdout.error is not None:  # what a write error became: main reports the cause
            raise
        if isinstance(exc, click.ClickException):
            exc.show()
        else:
            if debug:
                traceback.print_exc()
            click.echo(f"v2gtool: error: {exc}", err=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("v2gtool: aborted", err=True)
        sys.exit(130)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except BrokenPipeError:
        # The reader of a pipeline went away (`| head`): not an error of ours.
        sys.stderr.close()
        sys.exit(0)
    except SystemExit:
        # click turns a broken pipe into exit 1 itself (which pcap-decode uses for "the trace shows
        # a protocol error"), after wrapping sys.stdout so the last flush cannot fail: that marks it.
        if sys.stdout is not stdout:
            sys.exit(0)
        raise
    # Without standalone mode click returns the code of `ctx.exit(code)` instead of exiting.
    if isinstance(rc, int) and rc != 0:
        sys.exit(rc)
