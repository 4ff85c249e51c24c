"""Configuration: a TOML file, then ``V2GTOOL_*`` environment variables, then command-line options.

The file is ``/etc/v2g/v2gtool.toml`` unless ``--config`` names another one. It holds one table per
area (``[slac]``, ``[sdp]``, ``[hw]``, ...). An environment variable ``V2GTOOL_<TABLE>__<KEY>``
overrides one key of one table (``V2GTOOL_SLAC__IFACE=plc0``); options override both.

:data:`SCHEMA` lists every table and key v2gtool reads, each with the kind of value it holds. Both
the file and the environment are checked against it when they are loaded: an unknown table or key,
an empty override or a value of the wrong kind is a :class:`~v2gtool.errors.ConfigError` naming the
key and where it was set, and every value in :attr:`Config.tables` has its kind's Python type
(``V2GTOOL_SDP__TCP_PORT=50000`` becomes the integer 50000).
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from v2gtool.errors import ConfigError
from v2gtool.sdp import dynamic_port
from v2gtool.slac.timers import SlacTimers

DEFAULT_CONFIG_PATH = Path("/etc/v2g/v2gtool.toml")
ENV_PREFIX = "V2GTOOL_"
IFNAMSIZ = 16  # linux/if.h: an interface name and its NUL byte
# Characters Linux refuses in interface names (dev_valid_name: '/', ':', whitespace), and those the
# files the name is written into give a meaning: quotes and backslash (nftables, systemd, shell),
# '$' (systemd, shell) and '*' (an nftables wildcard).
_INTERFACE_REFUSED = frozenset("/:\"'`\\$*")


@dataclass(frozen=True)
class Config:
    """The merged configuration: ``tables[table][key]`` after file and environment were applied."""

    tables: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    source: Path | None = None
    #: Where each ``(table, key)`` was set: ``config file PATH`` or ``environment variable NAME``.
    origins: Mapping[tuple[str, str], str] = field(default_factory=dict)

    def get(self, table: str, key: str, default: Any = None) -> Any:
        """Return ``[table] key``, or *default* when neither file nor environment sets it."""
        return self.tables.get(table, {}).get(key, default)

    def invalid(self, table: str, key: str, problem: str) -> ConfigError:
        """The error for ``[table] key`` that a command finds invalid (``must be ..., got ...``), naming
        where it was set as the checks at load time do; a default has no origin to name."""
        return _invalid(self.origins.get((table, key)), table, key, problem)


# A kind turns a value from the file (a TOML value) or the environment (a string) into its Python
# value, or raises ValueError with what it must be ("must be an integer").
Kind = Callable[[Any], Any]


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a non-empty string")
    return value


def _path(value: Any) -> Path:
    if not isinstance(value, str) or not value:
        raise ValueError("must be a path (a non-empty string)")
    return Path(value)


def _integer(value: Any) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            pass
    raise ValueError("must be an integer")


def _secc_tcp_port(value: Any) -> int:
    """``[sdp] tcp_port``: the port the SECC announces in its SDP response, a Dynamic Port (:func:`dynamic_port`)."""
    return dynamic_port(_integer(value))


def _number(value: Any) -> float:
    if not isinstance(value, bool) and isinstance(value, int | float | str):
        try:
            number = float(value)
        except ValueError:
            pass
        else:
            if math.isfinite(number):
                return number
    raise ValueError("must be a finite number")


def _name_or_number(value: Any) -> int | str:
    if isinstance(value, bool) or not isinstance(value, int | str) or value == "":
        raise ValueError("must be a name or a number")
    return value


def _table(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError("must be a table (set it in the config file)")
    return value


def _slac_timers(value: Any) -> dict[str, Any]:
    """``[slac.timers]``: a table of the SLAC timers and counters of ISO 15118-3 Table A.1, checked
    by :meth:`SlacTimers.from_mapping` (their names and values) when the config is read, so an
    unknown or bad timer is an error naming the file, not a failure of a later ``evse-slac``."""
    table = _table(value)
    where = "[slac.timers]"
    try:
        SlacTimers.from_mapping(table, where=where)
    except ConfigError as exc:
        raise ValueError(f"is not valid: {str(exc).removeprefix(where + ': ')}") from None
    return table


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError("must be a list (set it in the config file)")
    return value


def interface_name(value: Any) -> str:
    """*value* if Linux accepts it as a network interface name (the kernel's ``dev_valid_name``)
    and it can be written into shell, systemd and nftables files as it is; else ValueError."""
    name = _text(value)
    for char in name:
        if char in _INTERFACE_REFUSED or char.isspace() or not char.isprintable():
            raise ValueError(f"must be an interface name without {char!r}")
    if len(name.encode()) >= IFNAMSIZ:
        raise ValueError(f"must be an interface name of at most {IFNAMSIZ - 1} bytes")
    if name in (".", ".."):
        raise ValueError("must be an interface name, not '.' or '..'")
    return name


#: Every table and key v2gtool reads, with the kind of its value.
SCHEMA: Mapping[str, Mapping[str, Kind]] = {
    "hw": {
        "backend": _text,
        "rated_voltage_v": _number,
        "rated_current_a": _number,
        "inlet_limit_c": _number,
        "soc_floor_percent": _number,
        "isolation_edition": _name_or_number,
        "on_fault_exec": _text,
        "serial_port": _text,
        "serial_baud": _integer,
        "gpio_chip": _text,
        "k1_coil": _name_or_number,
        "k2_coil": _name_or_number,
        "k1_feedback": _name_or_number,
        "k2_feedback": _name_or_number,
        "estop": _name_or_number,
        "active_low": _list,
        "debounce_ms": _number,
    },
    "ocpp": {"outbox_dir": _path},
    "pki": {"certs_dir": _path, "trust_dir": _path},
    "sdp": {"iface": interface_name, "tcp_port": _secc_tcp_port},
    "session": {"trace": _path},
    "slac": {"iface": interface_name, "timers": _slac_timers},
    "vpp": {"state_dir": _path},
}


def _unknown(table: str, keys: Iterable[str]) -> list[str]:
    """A description of *table*, or of each of its *keys*, that :data:`SCHEMA` does not know."""
    known = SCHEMA.get(table)
    if known is None:
        return [f"unknown table [{table}] (known: {', '.join(sorted(SCHEMA))})"]
    return [f"unknown key [{table}] {key} (known: {', '.join(sorted(known))})" for key in keys if key not in known]


def _invalid(origin: str | None, table: str, key: str, problem: str) -> ConfigError:
    """``ORIGIN: [table] key PROBLEM``: a bad value, and where it was set when it was set somewhere."""
    return ConfigError(f"{origin + ': ' if origin else ''}[{table}] {key} {problem}")


def _checked(table: str, key: str, value: Any, origin: str) -> Any:
    """*value* of the known ``[table] key`` as its kind's Python value; else a ConfigError naming *origin*."""
    try:
        return SCHEMA[table][key](value)
    except ValueError as exc:
        raise _invalid(origin, table, key, f"{exc}, got {value!r}") from None


def _read_file(path: Path) -> dict[str, Any]:
    """The TOML document of *path*; a ConfigError when it cannot be read or parsed."""
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"config file {path}: not UTF-8 text (byte {exc.start})") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from exc


def _file_origin(path: Path) -> str:
    """How errors and :attr:`Config.origins` name the config file *path*."""
    return f"config file {path}"


def _file_tables(path: Path) -> dict[str, dict[str, Any]]:
    """The checked tables of the config file *path*."""
    origin = _file_origin(path)
    raw = _read_file(path)
    for name, value in raw.items():
        if not isinstance(value, dict):
            raise ConfigError(f"{origin}: top-level key {name!r} must be a [table]")
    unknown = [item for name, value in raw.items() for item in _unknown(name, value)]
    if unknown:
        raise ConfigError(f"{origin}: {'; '.join(unknown)}")
    return {name: {key: _checked(name, key, item, origin) for key, item in value.items()}
            for name, value in raw.items()}


def _apply_environment(
    tables: dict[str, dict[str, Any]], origins: dict[tuple[str, str], str], environ: Mapping[str, str]
) -> None:
    """Override keys of *tables* by the ``V2GTOOL_<TABLE>__<KEY>`` variables of *environ*, checked,
    and record each variable as its key's origin in *origins*."""
    for var, value in environ.items():
        if not var.startswith(ENV_PREFIX) or "__" not in var[len(ENV_PREFIX) :]:
            continue
        table, _, key = var[len(ENV_PREFIX) :].lower().partition("__")
        origin = f"environment variable {var}"
        if not value:
            raise ConfigError(f"{origin} is empty: unset it to use the config file or the default")
        unknown = _unknown(table, [key])
        if unknown:
            raise ConfigError(f"{origin}: {unknown[0]}")
        tables.setdefault(table, {})[key] = _checked(table, key, value, origin)
        origins[table, key] = origin


def load_config(path: Path | None, environ: Mapping[str, str] | None = None) -> Config:
    """Read *path* (or the default file when it exists) and apply ``V2GTOOL_*`` overrides.

    An explicit *path* that is missing or malformed is an error; a missing default file is not.
    Unknown tables and keys, empty overrides and values of the wrong kind are errors (see :data:`SCHEMA`).
    """
    candidate = path if path is not None else DEFAULT_CONFIG_PATH
    source = candidate if path is not None or candidate.is_file() else None
    tables: dict[str, dict[str, Any]] = {}
    origins: dict[tuple[str, str], str] = {}
    if source is not None:
        tables = _file_tables(source)
        origins = {(table, key): _file_origin(source) for table, keys in tables.items() for key in keys}
    _apply_environment(tables, origins, os.environ if environ is None else environ)
    return Config(tables=tables, source=source, origins=origins)
