"""The trust store: a directory of root CA certificates with OpenSSL-style subject-hash links.

``/etc/v2g/trust/certs/`` holds one PEM file per root and, for each, a link ``<hash>.<n>`` where
``<hash>`` is OpenSSL's ``X509_NAME_hash`` of the subject (what ``openssl rehash`` creates). TLS
libraries look roots up by that link (``SSL_CTX_load_verify_locations(capath)``), so updating the
directory is enough for new handshakes; a service that caches its context is told to reload by
SIGHUP to the pid in each of its pid files (``/run/v2g/*.pid`` by default), when that process is
v2gtool and catches SIGHUP (``tls-verify --serve`` does). Any other process is left alone: SIGHUP's
default action would end it (``serve``, ``connect`` and ``session run`` read the trust directory at
start; restart them).
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import logging
import os
import re
import signal
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from v2gtool.pki.profiles import (
    CertificateError,
    Finding,
    PkiError,
    Severity,
    check_root,
    der_items,
    first_error,
    subject_of,
    verify_issued_by,
)

log = logging.getLogger(__name__)
DEFAULT_TRUST_DIR = Path("/etc/v2g/trust/certs")
DEFAULT_PID_DIR = Path("/run/v2g")
_HASH_LINK = re.compile(r"^[0-9a-f]{8}\.\d+$")
_PID = re.compile(r"[1-9][0-9]{0,6}")  # Linux pid_max is at most 2**22

# DER tags of the name encoding. OpenSSL canonicalises these string types (ASN1_MASK_CANON in
# crypto/x509/x_name.c) and copies any other value unchanged; the text codec of each:
_SEQUENCE, _SET, _UTF8STRING = 0x30, 0x31, 0x0C
_CANON_CODECS = {
    0x0C: "utf-8",  # UTF8String
    0x13: "ascii",  # PrintableString
    0x14: "latin-1",  # T61String (OpenSSL treats it as Latin-1)
    0x16: "ascii",  # IA5String
    0x1A: "ascii",  # VisibleString
    0x1C: "utf-32-be",  # UniversalString
    0x1E: "utf-16-be",  # BMPString
}
_WHITESPACE = " \t\n\v\f\r"


def _der(tag: int, content: bytes) -> bytes:
    n = len(content)
    if n < 0x80:
        return bytes((tag, n)) + content
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(size))) + size + content


def _canonical_value(tag: int, content: bytes, whole: bytes) -> bytes:
    codec = _CANON_CODECS.get(tag)
    if codec is None:
        return whole
    text = content.decode(codec, errors="replace")
    collapsed = " ".join(re.split(f"[{_WHITESPACE}]+", text.strip(_WHITESPACE)))
    lowered = "".join(ch.lower() if ch < "\x80" else ch for ch in collapsed)
    return _der(_UTF8STRING, lowered.encode())


def subject_hash(name: x509.Name) -> str:
    """OpenSSL's ``X509_NAME_hash``: SHA-1 of the canonical name encoding, first 4 bytes little-endian.

    The canonical encoding is each RDN's SET with every string value trimmed, whitespace-collapsed,
    ASCII-lower-cased and re-encoded as UTF8String, concatenated without the outer SEQUENCE.
    """
    (_, rdn_sequence, _), *_ = der_items(name.public_bytes())
    canonical = bytearray()
    for _, rdn, _ in der_items(rdn_sequence):
        entries = []
        for _, ava, _ in der_items(rdn):
            (_, _, oid), (tag, content, whole) = der_items(ava)
            entries.append(_der(_SEQUENCE, oid + _canonical_value(tag, content, whole)))
        canonical += _der(_SET, b"".join(sorted(entries)))
    digest = hashlib.sha1(canonical).digest()
    return f"{int.from_bytes(digest[:4], 'little'):08x}"


def load_pem_chain(path: Path) -> list[x509.Certificate]:
    """Every certificate of the PEM file *path*, in file order; a file that is missing, unreadable
    or holds no certificate is a :class:`CertificateError` (exit 5) naming it."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CertificateError(f"cannot read {path}: {exc.strerror}") from None
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise CertificateError(f"{path}: no PEM certificate found") from None
    return certs


def require_trust_dir(directory: Path) -> None:
    """Refuse a trust directory that is not there (:class:`CertificateError`, exit 5)."""
    if not directory.is_dir():
        raise CertificateError(f"trust directory {directory} does not exist")


def _is_root(cert: x509.Certificate) -> bool:
    try:
        ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False
    return ca and cert.issuer == cert.subject and verify_issued_by(cert, cert)


@dataclass(frozen=True)
class TrustStore:
    """The roots of one trust directory."""

    directory: Path
    roots: tuple[x509.Certificate, ...]

    @classmethod
    def load(cls, directory: Path = DEFAULT_TRUST_DIR) -> TrustStore:
        require_trust_dir(directory)
        roots: dict[bytes, x509.Certificate] = {}
        for path in sorted(directory.iterdir()):
            if path.is_symlink() or path.suffix not in (".pem", ".crt"):
                continue
            for cert in load_pem_chain(path):
                roots[cert.fingerprint(SHA256())] = cert
        return cls(directory, tuple(roots.values()))


def rehash(directory: Path) -> list[Path]:
    """Bring the ``<hash>.<n>`` links of *directory* up to date (like ``openssl rehash``); return them.

    Each link is replaced atomically and stale ones are removed last, so a handshake running
    meanwhile always finds the roots that were there before or after.
    """
    wanted: dict[str, str] = {}
    seen: dict[str, int] = {}
    for path in sorted(directory.iterdir()):
        if path.is_symlink() or path.suffix not in (".pem", ".crt"):
            continue
        for cert in load_pem_chain(path)[:1]:
            digest = subject_hash(cert.subject)
            n = seen.get(digest, 0)
            seen[digest] = n + 1
            wanted[f"{digest}.{n}"] = path.name
    for name, target in wanted.items():
        tmp = directory / f".{name}.tmp"
        tmp.unlink(missing_ok=True)
        try:
            tmp.symlink_to(target)
            os.replace(tmp, directory / name)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
    for path in directory.iterdir():
        if path.is_symlink() and _HASH_LINK.match(path.name) and path.name not in wanted:
            path.unlink()
    return [directory / name for name in wanted]


def _file_name(cert: x509.Certificate) -> str:
    """``<CN>_<fingerprint prefix>.pem``: a renewed root with the same name lands beside the old one."""
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    base = str(cns[0].value) if cns else subject_hash(cert.subject)
    return f"{re.sub(r'[^A-Za-z0-9.-]+', '_', base)}_{cert.fingerprint(SHA256()).hex()[:8]}.pem"


def staged_name(path: Path) -> Path:
    """``.<name>.tmp`` beside *path*: where :func:`stage` writes its next content."""
    return path.with_name(f".{path.name}.tmp")


def stage(path: Path, data: bytes, mode: int) -> Path:
    """Write *data* to :func:`staged_name` of *path* with *mode* (from creation on, also over a
    leftover), on disk (fsync) before it returns it: renamed over *path*, it replaces the old
    content whole. A failed write removes the partial file and names *path*."""
    tmp = staged_name(path)
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, mode)
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fd, mode)
            fh.write(data)
            fh.flush()
            os.fsync(fd)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise PkiError(f"cannot write {path}: {exc.strerror}") from None
    return tmp


def fsync_dir(directory: Path) -> None:
    """Make the renames into *directory* durable (rename(2) changes the directory, not the file)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def install_roots(
    certs: Sequence[x509.Certificate], directory: Path, replaces: Sequence[x509.Certificate] = ()
) -> list[Path]:
    """Write each root of *certs* into *directory* (a root already there is rewritten), remove the
    files of the roots in *replaces* (named as this function names them) and rehash: all or nothing.

    Every certificate must be a self-signed CA certificate that some V2G chain can be valid under
    (:func:`~v2gtool.pki.profiles.check_root`: key type, signature, CA:TRUE, keyUsage, DC=V2G/OEM/MO,
    not expired): a bundle carrying anything else is refused as a whole (:class:`CertificateError`,
    exit 5), as every chain under such a root would fail. A root not yet valid or expiring within
    14 days is installed, and logged as a warning once it is. The update itself is staged
    (:func:`_swap_in`), so an error on the way leaves *directory* as it was: a half-installed update
    cannot happen. Other files of *directory* are left alone.
    """
    if not certs:
        raise CertificateError("the bundle contains no certificate")
    notes: list[Finding] = []
    for cert in certs:
        if not _is_root(cert):
            raise CertificateError(f"not a self-signed root CA certificate: {subject_of(cert)}")
        findings = check_root(cert)
        problem = first_error(findings)
        if problem is not None:
            raise CertificateError(f"not a usable V2G root CA: {problem}")
        notes += [f for f in findings if f.severity is Severity.WARNING]
    files = {directory / _file_name(cert): cert.public_bytes(Encoding.PEM) for cert in certs}
    removed = [path for path in (directory / _file_name(old) for old in replaces) if path not in files]
    try:
        directory.mkdir(parents=True, exist_ok=True)
        _swap_in(directory, files, removed)
    except OSError as exc:
        raise PkiError(f"cannot update the trust directory: {exc.filename or directory}: {exc.strerror}") from None
    for finding in notes:
        log.warning("root CA installed, but %s", finding.detail)
    return list(files)


def _swap_in(directory: Path, files: dict[Path, bytes], removed: Sequence[Path]) -> None:
    """Write *files* (path -> content, mode 0644) and remove *removed* in *directory*, then rehash.

    Every new file is written under a temporary name first and is on disk (:func:`stage`), and every
    file the update replaces or removes keeps a second (hard-linked) name until the end; only then do
    the new files take their names (each atomically) and the old ones go, and the directory is
    synced (:func:`fsync_dir`), so a power loss leaves the old roots or the new ones, not empty
    files. An error on the way puts the kept files back, removes the new and temporary ones and
    rebuilds the links for what is there again.
    """
    staged: list[tuple[Path, Path]] = []  # (temporary, final)
    kept: list[tuple[Path, Path]] = []  # (second name, original)
    try:
        for path, content in files.items():
            staged.append((staged_name(path), path))
            stage(path, content, 0o644)
        for original in [*files, *removed]:
            if original.exists():
                keep = original.with_name(f".{original.name}.old")
                keep.unlink(missing_ok=True)
                os.link(original, keep)
                kept.append((keep, original))
        for tmp, path in staged:
            os.replace(tmp, path)
        for path in removed:
            path.unlink(missing_ok=True)
        rehash(directory)
        fsync_dir(directory)
    except (OSError, PkiError):
        _roll_back(directory, staged, kept)
        raise
    for keep, _ in kept:
        keep.unlink(missing_ok=True)


def _roll_back(directory: Path, staged: Sequence[tuple[Path, Path]], kept: Sequence[tuple[Path, Path]]) -> None:
    """Undo what :func:`_swap_in` did so far, as far as the directory lets us (each step on its own)."""
    existed = {original for _, original in kept}
    for keep, original in kept:
        with contextlib.suppress(OSError):
            os.replace(keep, original)  # does nothing while both still name the same file (rename(2))
            keep.unlink(missing_ok=True)
    for tmp, path in staged:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if path not in existed:
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)
    with contextlib.suppress(OSError, PkiError):
        rehash(directory)


@dataclass(frozen=True)
class Service:
    """A process to tell to reload: its pid and the pid file that named it."""

    pid_file: Path
    pid: int


def read_pid_files(pid_files: Iterable[Path]) -> list[Service]:
    """Read every pid file; one that is unreadable or holds no positive pid is an error.

    Called before the trust store changes, so a bad pid file leaves everything as it was.
    """
    services: list[Service] = []
    for pid_file in pid_files:
        try:
            text = pid_file.read_text().strip()
        except (OSError, UnicodeDecodeError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not text"
            raise PkiError(f"pid file {pid_file}: {reason}") from None
        if not _PID.fullmatch(text):
            raise PkiError(f"pid file {pid_file}: {text[:20]!r} is not a process id")
        services.append(Service(pid_file, int(text)))
    return services


def is_v2gtool(argv: Sequence[bytes]) -> bool:
    """Whether the command line *argv* (``/proc/PID/cmdline`` split at NUL) runs v2gtool.

    The console script runs as ``python .../bin/v2gtool ...`` (or as ``v2gtool`` itself when its
    first line is not a ``#!`` interpreter), the module as ``python [options] -m v2gtool ...``.
    """
    if any(os.path.basename(arg) == b"v2gtool" for arg in argv[:2]):
        return True
    return any(flag == b"-m" and module == b"v2gtool" for flag, module in itertools.pairwise(argv))


def catches_sighup(status: str) -> bool:
    """Whether the process whose ``/proc/PID/status`` is *status* has a SIGHUP handler (its SigCgt
    mask, proc(5)): one without would be ended by SIGHUP, its default action."""
    for line in status.splitlines():
        name, _, mask = line.partition(":")
        if name == "SigCgt":
            return bool((int(mask.strip() or "0", 16) >> (signal.SIGHUP - 1)) & 1)
    return False


def _reload(pid: int) -> str | None:
    """SIGHUP to *pid* if it runs v2gtool and catches SIGHUP (reloads on it); else why not.

    A pid file outlives its process when that was killed; the kernel then hands the pid to
    another process, which must not be hung up. A v2gtool command that does not reload on SIGHUP
    would end instead. The pidfd pins the process checked: if it ends and its pid is reused
    between the check and the signal, the signal fails instead of reaching the newcomer.
    """
    try:
        pidfd = os.pidfd_open(pid)
        try:
            try:
                argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                status = Path(f"/proc/{pid}/status").read_text(errors="replace")
            except OSError:  # gone meanwhile, or hidden (hidepid)
                argv, status = [b""], ""
            if not is_v2gtool(argv):
                command = os.path.basename(argv[0]).decode(errors="replace") or "unknown"
                return f"stale pid file: the process is {command!r}, not v2gtool"
            if not catches_sighup(status):
                return "the process does not reload on SIGHUP (SIGHUP would end it): restart it to use the new roots"
            signal.pidfd_send_signal(pidfd, signal.SIGHUP)
        finally:
            os.close(pidfd)
    except OSError as exc:
        return "no such process" if isinstance(exc, ProcessLookupError) else exc.strerror
    return None


def notify_reload(services: Iterable[Service]) -> tuple[list[int], list[str]]:
    """Send SIGHUP to every service that is a v2gtool process reloading on SIGHUP; return the pids
    signalled and one line per service that was not.

    A service that is gone, a pid file whose pid now belongs to another program (stale), a v2gtool
    command without a SIGHUP handler (it would end) or a process not ours to signal does not stop
    the others.
    """
    signalled: list[int] = []
    missed: list[str] = []
    for service in services:
        reason = _reload(service.pid)
        if reason is None:
            signalled.append(service.pid)
        else:
            missed.append(f"pid {service.pid} (pid file {service.pid_file}): {reason}")
    return signalled, missed
