"""The per-invocation context every subcommand receives through ``click.Context.obj``."""

from __future__ import annotations

from dataclasses import dataclass

import click
from rich.console import Console

from v2gtool.config import Config


@dataclass(frozen=True)
class AppContext:
    """Global options after parsing: the merged config and how to render output."""

    config: Config
    json: bool
    debug: bool
    console: Console
    err_console: Console


def app_context(ctx: click.Context) -> AppContext:
    """The :class:`AppContext` of the running ``v2gtool`` group."""
    app = ctx.find_object(AppContext)
    if app is None:  # a subcommand invoked on its own, e.g. from a test through CliRunner
        from v2gtool.config import load_config

        app = AppContext(load_config(None), False, False, Console(), Console(stderr=True))
    return app
