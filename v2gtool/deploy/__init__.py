"""Deployment files of an SECC shipped with the package: systemd unit, environment, AppArmor, nftables.

The files are templates with three placeholders, filled in for the machine at install time:
``@V2GTOOL@`` (absolute path of the ``v2gtool`` executable), ``@PLC_INTERFACE@`` (the HomePlug
Green PHY interface, ``[slac] iface``) and ``@SECC_TCP_PORT@`` (the TCP port the SECC announces in
its SDP response, ``[sdp] tcp_port``; ISO 15118 wants a Dynamic Port, 49152-65535).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

DEFAULT_PLC_INTERFACE = "eth0"
DEFAULT_SECC_TCP_PORT = 64109  # the default of sdp-discovery --port and tls-verify --port
DYNAMIC_PORTS = range(49152, 65536)  # IETF RFC 6335 Dynamic Ports, as ISO 15118 requires for the SECC


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
               "environment file of the unit: daemon arguments, config path, PLC interface"),
    DeployFile("apparmor.v2gtool", "etc/apparmor.d/v2gtool", 0o644,
               "AppArmor profile: write /var/log/v2g/, read /etc/v2g/certs/"),
    DeployFile("v2g.nft", "etc/nftables.d/v2g.nft", 0o644,
               "nftables rules: only UDP 15118 (SDP) and the SECC TCP port on the PLC interface"),
)


@dataclass(frozen=True)
class Placeholders:
    """The machine-specific values substituted into the templates."""

    executable: Path
    plc_interface: str = DEFAULT_PLC_INTERFACE
    secc_tcp_port: int = DEFAULT_SECC_TCP_PORT

    def apply(self, text: str) -> str:
        return (
            text.replace("@V2GTOOL@", str(self.executable))
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

    Existing files are kept unless *force*: an engineer's local edits are not silently replaced.
    Raises :class:`FileExistsError` naming the first existing file.
    """
    targets = [(item, root / item.target) for item in FILES]
    if not force:
        for _, path in targets:
            if path.exists():
                raise FileExistsError(str(path))
    written = []
    for item, path in targets:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render(item, values), encoding="utf-8")
        path.chmod(item.mode)
        written.append(path)
    return written
