"""What the doctor checks read from the machine, behind one injectable object.

Every check takes an :class:`Environment`: files under :attr:`Environment.root` (so ``/proc``,
``/sys`` and ``/etc`` can be a crafted directory tree in tests), and small callables for what is
not a file (commands, the effective uid, ``adjtimex``, a ``SCHED_FIFO`` probe, the TLS library).
:func:`host_environment` is the real machine.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import ssl
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from v2gtool.realtime import DEFAULT_PRIORITY


@dataclass(frozen=True)
class CommandResult:
    """Exit status and output of a command the doctor ran."""

    returncode: int
    stdout: str
    stderr: str = ""


@dataclass(frozen=True)
class ClockState:
    """The kernel's NTP discipline state (``adjtimex(2)``): return value and ``timex.status``."""

    state: int
    status: int

    TIME_ERROR = 5  # adjtimex return value: the clock is not synchronised
    STA_UNSYNC = 0x0040

    @property
    def synchronised(self) -> bool:
        return self.state != self.TIME_ERROR and not self.status & self.STA_UNSYNC


@dataclass(frozen=True)
class TlsLibrary:
    """What the ``ssl`` module's OpenSSL offers for ISO 15118-20 TLS 1.3."""

    version: str
    version_info: tuple[int, ...]
    tls13: bool
    tls13_suites: frozenset[str]
    groups: frozenset[str]  # of the key-exchange groups -20 peers use, those the library accepts
    ed448: bool  # an Ed448 certificate can be loaded (the -20 alternative to secp521r1)


def run_command(argv: Sequence[str]) -> CommandResult | None:
    """Run *argv* (5 s limit); None when the program is not installed."""
    try:
        done = subprocess.run(list(argv), capture_output=True, text=True, timeout=5, check=False)
    except FileNotFoundError:
        return None
    except subprocess.TimeoutExpired:
        return CommandResult(124, "", f"{argv[0]} did not answer within 5 s")
    return CommandResult(done.returncode, done.stdout, done.stderr)


class _Timex(ctypes.Structure):
    # struct timex of <sys/timex.h> on Linux: 20 longs and the padding; only modes and status are used.
    _fields_ = [("modes", ctypes.c_uint), ("offset", ctypes.c_long), ("freq", ctypes.c_long),
                ("maxerror", ctypes.c_long), ("esterror", ctypes.c_long), ("status", ctypes.c_int),
                ("rest", ctypes.c_long * 40)]


def read_adjtimex() -> ClockState | None:
    """The kernel clock state via a read-only ``adjtimex`` (modes = 0); None where unavailable."""
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name, use_errno=True)
    timex = _Timex()
    state = libc.adjtimex(ctypes.byref(timex))
    if state < 0:
        return None
    return ClockState(state=int(state), status=int(timex.status))


def probe_sched_fifo() -> str | None:
    """Try SCHED_FIFO at ``--rt``'s default priority on a short-lived thread; None on success, else
    the error text (an RLIMIT_RTPRIO below that priority refuses it even when 1 would pass).

    Linux applies ``sched_setscheduler(0, ...)`` to the calling thread only, so the doctor's own
    scheduling is untouched.
    """
    outcome: list[str | None] = []

    def attempt() -> None:
        try:
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(DEFAULT_PRIORITY))
        except OSError as exc:
            outcome.append(exc.strerror or str(exc))
        else:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
            outcome.append(None)

    thread = threading.Thread(target=attempt, name="doctor-sched-probe")
    thread.start()
    thread.join()
    return outcome[0]


def probe_tls() -> TlsLibrary:
    """Inspect the OpenSSL the ``ssl`` module (and so asyncio's TLS) is linked against."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    suites = frozenset(c["name"] for c in context.get_ciphers() if c.get("protocol") == "TLSv1.3")
    groups = set()
    for group in ("secp521r1", "prime256v1"):
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).set_ecdh_curve(group)
        except ValueError:
            continue
        groups.add(group)
    return TlsLibrary(
        version=ssl.OPENSSL_VERSION,
        version_info=tuple(ssl.OPENSSL_VERSION_INFO),
        tls13=ssl.HAS_TLSv1_3,
        tls13_suites=suites,
        groups=frozenset(groups),
        ed448=_ssl_loads_ed448(),
    )


def _ssl_loads_ed448() -> bool:
    """Whether ``ssl`` accepts an Ed448 certificate and key (a throw-away self-signed pair)."""
    import datetime
    import tempfile

    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed448
    from cryptography.x509.oid import NameOID

    try:
        key = ed448.Ed448PrivateKey.generate()
    except UnsupportedAlgorithm:
        return False
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "v2gtool doctor")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now).not_valid_after(now + datetime.timedelta(minutes=5))
            .sign(key, None))
    with tempfile.TemporaryDirectory() as tmp:
        cert_path, key_path = Path(tmp, "c.pem"), Path(tmp, "k.pem")
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        try:
            ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert_path, key_path)
        except ssl.SSLError:
            return False
    return True


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


@dataclass(frozen=True)
class Environment:
    """The machine as the checks see it; every field can be replaced to craft one."""

    root: Path = Path("/")
    run: Callable[[Sequence[str]], CommandResult | None] = run_command
    euid: Callable[[], int] = os.geteuid
    adjtimex: Callable[[], ClockState | None] = read_adjtimex
    sched_fifo: Callable[[], str | None] = probe_sched_fifo
    cpus: Callable[[], int] = _cpus
    tls: Callable[[], TlsLibrary] = field(default=probe_tls)

    def path(self, absolute: str | Path) -> Path:
        """*absolute* (a path on the machine) below :attr:`root`. A relative path (``--certs-dir
        c/certs``, or one in the config file) is the machine's path from the working directory, as
        for every other program: it is made absolute first, then put below :attr:`root`."""
        return self.root / os.path.abspath(absolute).lstrip("/")

    def read(self, absolute: str | Path) -> str | None:
        """The text of a file on the machine, or None when it cannot be read."""
        try:
            return self.path(absolute).read_text(errors="replace")
        except OSError:
            return None


def host_environment() -> Environment:
    """This machine."""
    return Environment()
