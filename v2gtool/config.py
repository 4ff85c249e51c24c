"""Configuration: a TOML file, then ``V2GTOOL_*`` environment variables, then command-line options.

The file is ``/etc/v2g/v2gtool.toml`` unless ``--config`` names another one. It holds one table per
area (``[slac]``, ``[tls]``, ``[hw]``, ...). An environment variable ``V2GTOOL_<TABLE>__<KEY>``
overrides one key of one table (``V2GTOOL_SLAC__IFACE=plc0``); options override both.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from v2gtool.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("/etc/v2g/v2gtool.toml")
ENV_PREFIX = "V2GTOOL_"


@dataclass(frozen=True)
class Config:
    """The merged configuration: ``tables[table][key]`` after file and environment were applied."""

    tables: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    source: Path | None = None

    def get(self, table: str, key: str, default: Any = None) -> Any:
        """Return ``[table] key``, or *default* when neither file nor environment sets it."""
        return self.tables.get(table, {}).get(key, default)


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """Read *path* (or the default file when it exists) and apply ``V2GTOOL_*`` overrides.

    An explicit *path* that is missing or malformed is an error; a missing default file is not.
    """
    env = os.environ if environ is None else environ
    tables: dict[str, dict[str, Any]] = {}
    source: Path | None = None
    candidate = path if path is not None else DEFAULT_CONFIG_PATH
    if path is not None or candidate.is_file():
        try:
            with candidate.open("rb") as fh:
                raw = tomllib.load(fh)
        except OSError as exc:
            raise ConfigError(f"cannot read config file {candidate}: {exc.strerror}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {candidate}: {exc}") from exc
        for name, value in raw.items():
            if not isinstance(value, dict):
                raise ConfigError(f"config file {candidate}: top-level key {name!r} must be a [table]")
            tables[name] = dict(value)
        source = candidate
    for var, value in env.items():
        if not var.startswith(ENV_PREFIX) or "__" not in var[len(ENV_PREFIX) :]:
            continue
        table, _, key = var[len(ENV_PREFIX) :].partition("__")
        tables.setdefault(table.lower(), {})[key.lower()] = value
    return Config(tables=tables, source=source)
