"""Network membership key (NMK) generation and network identifier (NID) derivation.

HomePlug AV 1.1 (as ISO 15118-3 uses it): the EVSE
generates a random NMK per matching, derives the NID from it (PBKDF1 with SHA-256) and hands both
to the EV in CM_SLAC_MATCH.CNF.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable

NMK_LEN = 16
NID_LEN = 7
#: Security level "simple connect", the one SLAC uses.
SECURITY_LEVEL_SIMPLE_CONNECT = 0


def _pbkdf1_sha256(secret: bytes, salt: bytes, iterations: int, length: int) -> bytes:
    digest = secret + salt
    for _ in range(iterations):
        digest = hashlib.sha256(digest).digest()
    return digest[:length]


def generate_nmk(random_bytes: Callable[[int], bytes] = secrets.token_bytes) -> bytes:
    """A fresh random 128-bit NMK, from the operating system's CSPRNG unless a test seeds one."""
    return random_bytes(NMK_LEN)


def derive_nid(nmk: bytes, security_level: int = SECURITY_LEVEL_SIMPLE_CONNECT) -> bytes:
    """The 54-bit NID of *nmk*: PBKDF1-SHA256 without salt, 5 rounds, first 7 octets; the last
    octet keeps its 4 most significant bits shifted down and carries the security level in bits
    4-5."""
    if len(nmk) != NMK_LEN:
        raise ValueError(f"an NMK has {NMK_LEN} octets, got {len(nmk)}")
    if not 0 <= security_level <= 3:
        raise ValueError(f"security level is 2 bits, got {security_level}")
    nid = bytearray(_pbkdf1_sha256(nmk, b"", 5, NID_LEN))
    nid[-1] = (nid[-1] >> 4) | (security_level << 4)
    return bytes(nid)
