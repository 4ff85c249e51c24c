"""The per-invocation context every subcommand receives through ``click.Context.obj``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click
from rich.console import Console

from v2gtool.config import ENV_PREFIX, Config


class PipelineConsole(Console):
    """A rich console for a pipeline's end. Printed to a pipe or a file, a line of text stays one
    line (rich would wrap it at 80 columns there, which breaks ``grep`` and log files); tables and
    panels keep their width. When the reader goes away (``| head``), rich makes stdout /dev/null and
    exits 1, which pcap-decode uses for "the trace shows a protocol error"; here the exit is 0, the
    reader having had all it wanted."""

    def __init__(self, *, stderr: bool = False) -> None:
        super().__init__(stderr=stderr)
        self.soft_wrap = not self.is_terminal

    def on_broken_pipe(self) -> None:
        try:
            super().on_broken_pipe()
        except SystemExit:
            raise SystemExit(0) from None


@dataclass(frozen=True)
class AppContext:
    """Global options after parsing: the merged config and how to render output."""

    config: Config
    json: bool
    debug: bool
    console: Console
    err_console: Console

    def option_or_config(self, ctx: click.Context, param: click.Parameter, value: Any, table: str, key: str) -> Any:
        """*value* of option *param* when given, else ``[table] key`` of the configuration (file or
        ``V2GTOOL_<TABLE>__<KEY>``); a usage error naming both when neither is set. An option callback."""
        if value is not None:
            return value
        configured = self.config.get(table, key)
        if configured is None:
            variable = f"{ENV_PREFIX}{table.upper()}__{key.upper()}"
            raise click.MissingParameter(f"Give it, or set [{table}] {key} in the config file or {variable}.",
                                         ctx=ctx, param=param)
        return configured


def app_context(ctx: click.Context) -> AppContext:
    """The :class:`AppContext` of the running ``v2gtool`` group."""
    app = ctx.find_object(AppContext)
    if app is None:  # a subcommand invoked on its own, e.g. from a test through CliRunner
        from v2gtool.config import load_config

        app = AppContext(load_config(None), False, False, PipelineConsole(), PipelineConsole(stderr=True))
    return app
