"""Click groups whose subcommands are imported on first use."""

from __future__ import annotations

import importlib
import inspect
import io
import sys
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table


class LazyGroup(click.Group):
    """A click group that imports a subcommand's module on first use, with help rendered by rich.

    *lazy_subcommands* maps a command name to ``"module:attribute"``; commands added the usual way
    (``@group.command``) stand beside them. Loading on first use keeps ``--help`` and pipelines fast.
    """

    def __init__(self, *args: Any, lazy_subcommands: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_subcommands = lazy_subcommands or {}

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        buffer = io.StringIO()
        console = Console(
            file=buffer, force_terminal=sys.stdout.isatty(), width=formatter.width or 100, highlight=False
        )
        console.print(f"[bold]Usage:[/bold] {ctx.command_path} [OPTIONS] COMMAND [ARGS]...\n")
        # "\b" lines only tell click's own formatter not to rewrap the paragraph after them
        text = "\n".join(line for line in inspect.cleandoc(self.help or "").splitlines() if line != "\b")
        console.print(escape(text) + "\n")
        options = Table(
            box=None, show_header=False, padding=(0, 2), title="Options", title_justify="left", title_style="bold"
        )
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is not None:
                options.add_row(f"[cyan]{escape(record[0])}[/cyan]", escape(record[1]))
        console.print(options)
        commands = Table(
            box=None, show_header=False, padding=(0, 2), title="\nCommands", title_justify="left", title_style="bold"
        )
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None:
                commands.add_row(f"[green]{name}[/green]", escape(command.get_short_help_str(limit=90)))
        console.print(commands)
        formatter.write(buffer.getvalue())

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy_subcommands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        target = self.lazy_subcommands.get(cmd_name)
        if target is None:
            return None
        module_name, _, attr = target.partition(":")
        command = getattr(importlib.import_module(module_name), attr)
        assert isinstance(command, click.Command)
        return command
