"""Deployment files of an SECC shipped with the package: systemd unit, environment, AppArmor, nftables.

The files are templates with four placeholders, filled in for the machine at install time:
``@V2GTOOL@`` (absolute path of the ``v2gtool`` executable), ``@V2GTOOL_PREFIX@`` (the directory
above its ``bin/``, the virtual environment the package is installed in; the profile quotes it
itself), ``@PLC_INTERFACE@`` (the HomePlug Green PHY interface, ``[slac] iface``) and
``@SECC_TCP_PORT@`` (the TCP port the SECC announces in its SDP response, ``[sdp] tcp_port``;
ISO 15118 wants a Dynamic Port, 49152-65535).
:class:`Placeholders` refuses values that would change the meaning of a file instead of filling in
one value: an interface name Linux would not accept, or an executable path with characters that
systemd or AppArmor interpret even inside double quotes.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from v2gtool.config import interface_name
from v2gtool.sdp import DEFAULT_TCP_PORT, dynamic_port

DEFAULT_PLC_INTERFACE = "eth0"
# Characters an executable path cannot hold: systemd expands $VAR and %-specifiers and AppArmor
# globs (* ? [ ] { } ^, @{var}) even inside double quotes, and '"' and '\' would need escapes.
# (Control characters, newlines included, are refused as unprintable.)
_EXECUTABLE_REFUSED = frozenset('"\\$%*?[]{}^')
# Characters a path may hold without double quotes in the unit and the profile.
_UNQUOTED_EXTRA = frozenset("/._+-~")


@dataclass(frozen=True)
class DeployFile:
    """One shipped file: its resource name, where it is installed, its mode, what it is for."""

    name: str
    target: str
    mode: int
    purpose: str


FILES: tuple[DeployFile, ...] = (
    DeployFile("evse-v2g.service", "etc/systemd/system/evse-v2g.service", 0o644,
               "hardened systemd unit: user v2g, CAP_NET_RAW/CAP_NET_ADMIN, ProtectSystem=strict"),
    DeployFile("evse-v2g.env", "etc/default/evse-v2g", 0o644,
               "environment file of the unit: daemon arguments, config path, PLC interface, SECC TCP port"),
    DeployFile("apparmor.v2gtool", "etc/apparmor.d/v2gtool", 0o644,
               "AppArmor profile: write /var/log/v2g/, read /etc/v2g/certs/"),
    DeployFile("v2g.nft", "etc/nftables.d/v2g.nft", 0o644,
               "nftables rules: only UDP 15118 (SDP) and the SECC TCP port on the PLC interface"),
)


def executable_path(path: Path) -> Path:
    """*path* if it can be the executable of the unit and the profile; else ValueError saying why."""
    if not path.is_absolute():
        raise ValueError("must be an absolute path")
    for char in str(path):
        if char in _EXECUTABLE_REFUSED or not char.isprintable():
            raise ValueError(f"must not contain {char!r}: systemd or AppArmor would interpret it")
    return path


def quoted_executable(path: Path) -> str:
    """*path* as systemd's ExecStart= and an AppArmor rule read it: in double quotes when it has
    a space or another character outside letters, digits and ``/._+-~``."""
    text = str(path)
    plain = all(char.isalnum() or char in _UNQUOTED_EXTRA for char in text)
    return text if plain else f'"{text}"'


def _check(what: str, check: Callable[[Any], object], value: Any) -> None:
    """Run *check* on *value*; its ValueError, prefixed with *what* and the value."""
    try:
        check(value)
    except ValueError as exc:
        raise ValueError(f"{what} {str(value)!r} {exc}") from None


@dataclass(frozen=True)
class Placeholders:
    """The machine-specific values substituted into the templates; ValueError for unusable ones."""

    executable: Path
    plc_interface: str = DEFAULT_PLC_INTERFACE
    secc_tcp_port: int = DEFAULT_TCP_PORT

    def __post_init__(self) -> None:
        _check("executable", executable_path, self.executable)
        _check("PLC interface", interface_name, self.plc_interface)
        try:
            dynamic_port(self.secc_tcp_port)
        except ValueError as exc:
            raise ValueError(f"SECC TCP port {self.secc_tcp_port} {exc}") from None

    def apply(self, text: str) -> str:
        """*text* with the placeholders replaced by these values."""
        return (
            text.replace("@V2GTOOL@", quoted_executable(self.executable))
            .replace("@V2GTOOL_PREFIX@", str(self.executable.parent.parent))
            .replace("@PLC_INTERFACE@", self.plc_interface)
            .replace("@SECC_TCP_PORT@", str(self.secc_tcp_port))
        )


def lookup(name: str) -> DeployFile:
    """The shipped file called *name* (resource name or installed base name)."""
    for item in FILES:
        if name in (item.name, Path(item.target).name):
            return item
    raise KeyError(name)


def render(item: DeployFile, values: Placeholders) -> str:
    """The text of *item* with the placeholders filled in."""
    return values.apply(resources.files(__name__).joinpath(item.name).read_text(encoding="utf-8"))


def install(root: Path, values: Placeholders, *, force: bool = False) -> list[Path]:
    """Write every file below *root* (``/`` for the running system); return the paths written.

    Every target is checked before anything is written, so a refusal leaves *root* as it was.
    Existing files are kept unless *force*: an engineer's local edits are not silently replaced.
    Raises :class:`FileExistsError` naming the first existing file, :class:`NotADirectoryError`
    naming a path that is in the place of a directory a file goes in, and
    :class:`IsADirectoryError` naming a directory in the place of a file (even *force* does not
    remove a directory).
    """
    targets = [(item, root / item.target) for item in FILES]
    for _, path in targets:
        _check_target(path, force=force)
    written = []
    for item, path in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(item, values), encoding="utf-8")
        path.chmod(item.mode)
        written.append(path)
    return written


def _check_target(path: Path, *, force: bool) -> None:
    """Raise if *path* cannot be written by :func:`install` (see there), without changing anything."""
    for parent in reversed(path.parents):  # from the top down: the first one missing is made with the rest
        if not parent.is_dir():
            if os.path.lexists(parent):  # a file, or a symlink to nothing, where a directory goes
                raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(parent))
            break
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(path))
    if not force and os.path.lexists(path):
        raise FileExistsError(str(path))
