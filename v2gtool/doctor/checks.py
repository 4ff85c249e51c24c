"""The checks of ``v2gtool doctor``: what a real SECC needs from its machine, and how to fix it.

Each check is a function of an :class:`~v2gtool.doctor.environment.Environment` and the
:class:`Settings` (paths and names from the configuration) that returns one
:class:`~v2gtool.doctor.findings.Finding`. Checks never change the machine.
"""

from __future__ import annotations

import re
import shlex
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from v2gtool.deploy import lookup
from v2gtool.doctor.environment import Environment
from v2gtool.doctor.findings import Finding, Status
from v2gtool.doctor.firewall import RulesetError, analyse_ruleset
from v2gtool.realtime import DEFAULT_PRIORITY

SDP_UDP_PORT = 15118  # ISO 15118-2/-20 SDP server port (V2G_UDP_SDP_SERVER)
CAP_NET_RAW = 13  # linux/capability.h
# ISO 15118-20 TLS 1.3 cipher suites the EVCC shall support ([V2G20-2459]).
ISO20_TLS13_SUITES = ("TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
ISO20_ECDH_GROUP = "secp521r1"  # -20 leaf certificates: ECDSA P-521, or Ed448
# The in-kernel QCA7000 drivers (drivers/net/ethernet/qualcomm): SPI and UART attachment;
# "qca7000" is the name of vendor out-of-tree builds.
QCA7000_MODULES = ("qcaspi", "qca_uart", "qca7000")
# Module parameters of qcaspi and their accepted ranges (qca_spi.c module_param / MODULE_PARM_DESC).
QCASPI_PARAMETERS = {
    "qcaspi_clkspeed": range(1_000_000, 16_000_001),
    "qcaspi_burst_len": range(1, 5001),
    "qcaspi_pluggable": range(0, 2),
    "wr_verify": range(0, 4),
}


@dataclass(frozen=True)
class Settings:
    """Where the SECC's things are on this machine (from the config and doctor's options)."""

    plc_interface: str
    certs_dir: Path
    trust_dir: Path
    secc_tcp_port: int


def check_plc_driver(env: Environment, settings: Settings) -> Finding:
    """The QCA7000 driver is loaded, and its modprobe options are within the driver's ranges."""
    modules_text = env.read("/proc/modules")
    if modules_text is None and not env.path("/sys/module").is_dir():
        return Finding("plc-driver", Status.WARN, "cannot read /proc/modules or /sys/module",
                       "run doctor on the charger itself, not in a container")
    loaded = {line.split()[0] for line in (modules_text or "").splitlines() if line.strip()}
    drivers = [m for m in QCA7000_MODULES if m in loaded or env.path(f"/sys/module/{m}").is_dir()]
    options, bad = _qcaspi_options(env)
    details = tuple(f"modprobe option {k}={v}" for k, v in options.items())
    if bad:
        return Finding("plc-driver", Status.FAIL, "qcaspi modprobe options out of range: " + ", ".join(bad),
                       "fix the 'options qcaspi ...' line in /etc/modprobe.d/ (clkspeed 1000000-16000000 Hz, "
                       "burst_len 1-5000, pluggable 0/1, wr_verify 0-3), then rmmod qcaspi && modprobe qcaspi",
                       details)
    if not drivers:
        return Finding("plc-driver", Status.WARN, "no QCA7000 driver loaded (qcaspi, qca_uart)",
                       "modprobe qcaspi (SPI-attached QCA7000) and list it in /etc/modules-load.d/; "
                       "nothing to do if the modem is an Ethernet/USB Green PHY adapter", details)
    return Finding("plc-driver", Status.OK, f"{', '.join(drivers)} loaded", None, details)


def _qcaspi_options(env: Environment) -> tuple[dict[str, str], list[str]]:
    """The ``options qcaspi`` of /etc/modprobe.d/*.conf, and those outside the driver's ranges."""
    options: dict[str, str] = {}
    conf_dir = env.path("/etc/modprobe.d")
    for conf in sorted(conf_dir.glob("*.conf")) if conf_dir.is_dir() else []:
        for line in conf.read_text(errors="replace").splitlines():
            words = line.split("#", 1)[0].split()
            if len(words) >= 2 and words[0] == "options" and words[1] == "qcaspi":
                options.update(word.partition("=")[::2] for word in words[2:])
    bad = []
    for key, value in options.items():
        accepted = QCASPI_PARAMETERS.get(key)
        if accepted is None:
            bad.append(f"{key} (unknown)")
        elif not value.isdigit() or int(value) not in accepted:
            bad.append(f"{key}={value}")
    return options, bad


def check_plc_interface(env: Environment, settings: Settings) -> Finding:
    """The PLC interface exists, is up, and has the IPv6 link-local address SDP and TCP run on."""
    name = settings.plc_interface
    sys_dir = f"/sys/class/net/{name}"
    if not env.path(sys_dir).is_dir():
        present = sorted(p.name for p in env.path("/sys/class/net").glob("*"))
        return Finding("plc-interface", Status.FAIL, f"interface {name} does not exist",
                       f"set [slac] iface (or --interface) to the PLC interface; present: {', '.join(present)}")
    flags = int((env.read(f"{sys_dir}/flags") or "0").strip() or "0", 16)
    operstate = (env.read(f"{sys_dir}/operstate") or "unknown").strip()
    if not flags & 0x1:  # IFF_UP
        return Finding("plc-interface", Status.FAIL, f"{name} is down (administratively)", f"ip link set {name} up")
    if operstate not in ("up", "unknown"):  # many PLC drivers report "unknown" while working
        return Finding("plc-interface", Status.FAIL, f"{name} is up but its link is {operstate}",
                       "check the modem's power and SPI wiring (dmesg | grep -i qca)")
    inet6 = env.read("/proc/net/if_inet6") or ""
    link_local = [line for line in inet6.splitlines() if line.split()[-1:] == [name] and line.startswith("fe80")]
    if not link_local:
        return Finding("plc-interface", Status.FAIL, f"{name} has no IPv6 link-local address",
                       f"sysctl -w net.ipv6.conf.{name}.disable_ipv6=0 (ISO 15118 runs over link-local IPv6 only)")
    return Finding("plc-interface", Status.OK, f"{name} is up ({operstate}) with an IPv6 link-local address")


def check_raw_socket(env: Environment, settings: Settings) -> Finding:
    """Raw Ethernet for SLAC (EtherType 0x88E1) needs root or CAP_NET_RAW."""
    if env.euid() == 0:
        return Finding("raw-socket", Status.OK, "running as root")
    status = env.read("/proc/self/status") or ""
    match = re.search(r"^CapEff:\s*([0-9a-fA-F]+)", status, re.MULTILINE)
    if match and int(match.group(1), 16) >> CAP_NET_RAW & 1:
        return Finding("raw-socket", Status.OK, "CAP_NET_RAW is effective")
    return Finding("raw-socket", Status.FAIL, "neither root nor CAP_NET_RAW: SLAC cannot open a raw socket",
                   "run under the shipped evse-v2g.service (AmbientCapabilities=CAP_NET_RAW CAP_NET_ADMIN), "
                   "or for a test: sudo setcap cap_net_raw,cap_net_admin+ep \"$(readlink -f $(which python3))\"")


def check_clock(env: Environment, settings: Settings) -> Finding:
    """The clock is synchronised (NTP/PTP): an unsynchronised clock is the usual "Expired Certificate"."""
    fix = ("timedatectl set-ntp true (systemd-timesyncd), or configure chrony / ptp4l; "
           "a wrong clock makes valid certificates look expired or not yet valid")
    result = env.run(["timedatectl", "show", "--property=NTPSynchronized", "--value"])
    if result is not None and result.returncode == 0 and result.stdout.strip() in ("yes", "no"):
        if result.stdout.strip() == "yes":
            return Finding("clock", Status.OK, "clock synchronised (timedatectl)")
        return Finding("clock", Status.FAIL, "clock not synchronised (timedatectl NTPSynchronized=no)", fix)
    state = env.adjtimex()
    if state is None:
        return Finding("clock", Status.WARN, "cannot tell whether the clock is synchronised", fix)
    if state.synchronised:
        return Finding("clock", Status.OK, "clock synchronised (kernel adjtimex)")
    return Finding("clock", Status.FAIL, "clock not synchronised (kernel adjtimex reports STA_UNSYNC)", fix)


def _is_private_key(path: Path) -> bool:
    if path.suffix == ".key":
        return True
    try:
        with path.open("rb") as fh:
            head = fh.read(4096)
    except OSError:
        return False
    return b"PRIVATE KEY-----" in head


def check_certificates(env: Environment, settings: Settings) -> Finding:
    """Certificate and trust directories exist; keys are 0600 (or 0400); nothing is world-writable."""
    problems: list[str] = []
    missing = [d for d in (settings.certs_dir, settings.trust_dir) if not env.path(d).is_dir()]
    if missing:
        return Finding("certificates", Status.FAIL, "missing: " + ", ".join(map(str, missing)),
                       "install -d -m 0750 " + " ".join(map(str, missing))
                       + " (then provision them: v2gtool pki ...)")
    count = 0
    for directory in (settings.certs_dir, settings.trust_dir):
        top = env.path(directory)
        for path in [top, *sorted(top.rglob("*"))]:
            mode = path.lstat().st_mode
            shown = Path("/", path.relative_to(env.root))
            if stat.S_ISLNK(mode):
                continue
            if mode & stat.S_IWOTH:
                problems.append(f"{shown} is world-writable (chmod o-w {shown})")
            elif stat.S_ISREG(mode) and _is_private_key(path):
                count += 1
                if mode & 0o177:
                    problems.append(f"{shown} is a private key with mode {stat.S_IMODE(mode):04o} "
                                    f"(chmod 0600 {shown})")
    if problems:
        return Finding("certificates", Status.FAIL, f"{len(problems)} unsafe permission(s)",
                       "; ".join(problems), tuple(problems))
    if not any(p.is_file() for p in env.path(settings.trust_dir).rglob("*")):
        return Finding("certificates", Status.WARN, f"no trust anchors in {settings.trust_dir}",
                       "install the V2G root CA (and OEM/MO roots for -20 mutual authentication) there")
    return Finding("certificates", Status.OK, f"{settings.certs_dir} and {settings.trust_dir} safe "
                   f"({count} private key(s), all 0600)")


def check_firewall(env: Environment, settings: Settings) -> Finding:
    """The firewall leaves only UDP 15118 (SDP) and the SECC's TCP port open on the PLC interface."""
    result = env.run(["nft", "--json", "list", "ruleset"])
    install = _firewall_install(settings)
    if result is None:
        return Finding("firewall", Status.WARN, "nft is not installed: cannot verify the firewall",
                       "apt-get install nftables; then " + install)
    if result.returncode != 0:
        return Finding("firewall", Status.WARN, "nft list ruleset failed: " + result.stderr.strip()[:120],
                       "run doctor as root to inspect the firewall")
    try:
        verdict = analyse_ruleset(result.stdout, settings.plc_interface)
    except RulesetError as exc:
        return Finding("firewall", Status.WARN, str(exc), "check the nft installation (nft --json list ruleset)")
    wanted = {("udp", SDP_UDP_PORT), ("tcp", settings.secc_tcp_port)}
    iface = settings.plc_interface
    if not verdict.filtered:
        return Finding("firewall", Status.FAIL, f"traffic on {iface} is not filtered (no drop policy)", install)
    if verdict.accepts_all:
        return Finding("firewall", Status.FAIL, f"a rule accepts all traffic on {iface}: "
                       + verdict.accepts_all, install)
    closed = sorted(wanted - verdict.open_ports)
    if closed:
        return Finding("firewall", Status.FAIL, f"{_ports(closed)} blocked on {iface}: the car cannot "
                       "reach the SECC", install)
    extra = sorted(verdict.open_ports - wanted)
    if extra:
        return Finding("firewall", Status.WARN, f"also open on {iface}: {_ports(extra)}",
                       "open only UDP 15118 and the SECC TCP port on the PLC interface: " + install)
    return Finding("firewall", Status.OK, f"only {_ports(sorted(wanted))} open on {iface}")


def _firewall_install(settings: Settings) -> str:
    """The shell commands that install and load the shipped v2g.nft for the interface and TCP port
    checked: both are given to ``deploy-files``, whose own defaults (the configuration it reads,
    else eth0 and the default port) need not be the ones doctor was told to check."""
    snippet = lookup("v2g.nft")
    target = shlex.quote("/" + snippet.target)
    render = shlex.join(["v2gtool", "deploy-files", "--print", snippet.name, "--interface", settings.plc_interface,
                         "--tcp-port", str(settings.secc_tcp_port)])
    return f"{render} > {target} && nft -f {target}"


def _ports(ports: list[tuple[str, int]]) -> str:
    """``TCP 22, TCP 49152-65535, UDP 15118``: sorted pairs with consecutive ports as ranges."""
    spans: list[tuple[str, int, int]] = []
    for proto, port in ports:
        if spans and spans[-1][0] == proto and spans[-1][2] == port - 1:
            spans[-1] = (proto, spans[-1][1], port)
        else:
            spans.append((proto, port, port))
    return ", ".join(f"{p.upper()} {lo}" + (f"-{hi}" if hi != lo else "") for p, lo, hi in spans)


def check_realtime(env: Environment, settings: Settings) -> Finding:
    """``--rt`` (SCHED_FIFO at its default priority) is permitted, and there is a core to spare for ``--cpu``."""
    wanted = f"SCHED_FIFO priority {DEFAULT_PRIORITY}"
    error = env.sched_fifo()
    if error is not None:
        return Finding("realtime", Status.FAIL, f"--rt: {wanted} not permitted ({error})",
                       f"the shipped unit sets LimitRTPRIO=50; elsewhere: ulimit -r {DEFAULT_PRIORITY} "
                       "(limits.conf rtprio) or grant CAP_SYS_NICE; or run without --rt")
    cpus = env.cpus()
    if cpus < 2:
        return Finding("realtime", Status.WARN, f"--rt: {wanted} permitted, but only one CPU",
                       "--cpu cannot keep certificate validation off the communication core on one CPU")
    return Finding("realtime", Status.OK, f"--rt: {wanted} permitted; {cpus} CPUs, so --cpu can pin it to one")


def check_openssl(env: Environment, settings: Settings) -> Finding:
    """OpenSSL has TLS 1.3, the -20 suites and key types (the usual "cipher suite mismatch" causes)."""
    tls = env.tls()
    details = (tls.version, "TLS 1.3 suites: " + ", ".join(sorted(tls.tls13_suites)))
    if tls.version_info[:3] < (1, 1, 1) or not tls.tls13:
        return Finding("openssl", Status.FAIL, f"{tls.version} has no TLS 1.3 (ISO 15118-20 requires it)",
                       "use a Python linked against OpenSSL >= 1.1.1", details)
    missing = [s for s in ISO20_TLS13_SUITES if s not in tls.tls13_suites]
    if missing or ISO20_ECDH_GROUP not in tls.groups:
        what = missing + ([] if ISO20_ECDH_GROUP in tls.groups else [ISO20_ECDH_GROUP])
        return Finding("openssl", Status.FAIL, f"{tls.version} lacks {', '.join(what)}",
                       "check /etc/ssl/openssl.cnf (system-wide CipherSuites / Groups / crypto policy) "
                       "restricting TLS 1.3", details)
    if not tls.ed448:
        return Finding("openssl", Status.WARN, f"{tls.version} cannot use Ed448 certificates",
                       "only secp521r1 leaf certificates will work; Ed448 needs OpenSSL >= 1.1.1 "
                       "without a policy disabling it", details)
    return Finding("openssl", Status.OK, f"{tls.version}: TLS 1.3 with the -20 suites, secp521r1, Ed448",
                   None, details)


@dataclass(frozen=True)
class Check:
    """A named check; the name is what ``--skip`` takes."""

    name: str
    run: Callable[[Environment, Settings], Finding]


CHECKS: tuple[Check, ...] = (
    Check("plc-driver", check_plc_driver),
    Check("plc-interface", check_plc_interface),
    Check("raw-socket", check_raw_socket),
    Check("clock", check_clock),
    Check("certificates", check_certificates),
    Check("firewall", check_firewall),
    Check("realtime", check_realtime),
    Check("openssl", check_openssl),
)
CHECK_NAMES = tuple(check.name for check in CHECKS)


def run_checks(env: Environment, settings: Settings, skip: frozenset[str] = frozenset()) -> list[Finding]:
    """Run every check not in *skip*, in order; skipped checks are reported as SKIPPED."""
    return [
        Finding(check.name, Status.SKIPPED, "skipped (--skip)") if check.name in skip else check.run(env, settings)
        for check in CHECKS
    ]
