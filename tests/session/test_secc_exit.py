"""How ``serve`` and ``session run --role evse`` end (one check_served for both), and the EV's
``--pnc`` contract of either -20 key type."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ed448, rsa
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat

from v2gtool.cli.live import ContractUnusable, Served, SessionFailed, check_served, contract_roots, load_contract
from v2gtool.errors import V2GToolError
from v2gtool.exit_codes import ExitCode
from v2gtool.iso20.events import SessionEnded
from v2gtool.net.v2g_tcp import Ending, Outcome
from v2gtool.pki.create import init_pki
from v2gtool.pki.profiles import KeyType
from v2gtool.session import scenario as scenarios
from v2gtool.session.runner import run_sim

FAILED = Outcome(Ending.ENGINE, SessionEnded(t=1.0, role="SECC", ok=False, reason="DC_CableCheckRes FAILED"))
OK = Outcome(Ending.ENGINE, SessionEnded(t=1.0, role="SECC", ok=True, reason="SessionStop Terminate"))


def exit_of(served: list[Served], sessions: int) -> int:
    try:
        check_served(served, sessions)
    except V2GToolError as exc:  # the error the CLI turns into its exit status
        return exc.exit_code
    return ExitCode.OK


@pytest.mark.parametrize(("served", "sessions", "expected"), [
    ([Served(OK, None)], 1, ExitCode.OK),
    ([Served(FAILED, None)], 1, ExitCode.FAILURE),
    ([Served(FAILED, "interlock tripped: ISOLATION_FAULT (isolation fault)")], 1, ExitCode.SAFETY),
    ([Served(OK, None), Served(FAILED, "Contactor Stuck: K1")], 2, ExitCode.SAFETY),
    ([Served(OK, "interlock tripped: EMERGENCY_STOP (emergency stop)")], 1, ExitCode.OK),  # it ended well first
    ([], 1, ExitCode.INTERRUPTED),
    ([Served(OK, None)], 2, ExitCode.INTERRUPTED),
])
def test_a_safety_trip_decides_the_secc_exit(served: list[Served], sessions: int, expected: ExitCode) -> None:
    assert exit_of(served, sessions) == expected


def test_the_safety_trip_names_the_rule() -> None:
    with pytest.raises(SessionFailed, match=r"^SECC session failed: Contactor Stuck: K1$"):
        check_served([Served(FAILED, "Contactor Stuck: K1")], 1)


@pytest.fixture(scope="module")
def ed448_certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("pki")
    init_pki(base / "certs", base / "trust", KeyType.ED448)
    return base


def test_an_ed448_contract_is_accepted_and_signs_the_challenge(ed448_certs: Path) -> None:
    contract = load_contract(ed448_certs / "certs")
    assert isinstance(contract.key, ed448.Ed448PrivateKey)
    roots = contract_roots(ed448_certs / "trust")
    result = asyncio.run(run_sim(scenarios.load(None, duration=2.0), contract=contract, pnc_roots=roots))
    assert result.ok, result.reason


def test_a_contract_key_of_another_type_is_a_certificate_error(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "contract.key").write_bytes(key.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption()))
    with pytest.raises(ContractUnusable, match=r"contract\.key is neither an ECDSA nor an Ed448 key") as raised:
        load_contract(tmp_path)
    assert raised.value.exit_code == ExitCode.SECURITY


@pytest.mark.parametrize("missing", ["contract.key", "contract.pem"])
def test_a_missing_contract_file_exits_5_in_one_line(ed448_certs: Path, tmp_path: Path, missing: str) -> None:
    for name in ("contract.key", "contract.pem"):
        if name != missing:
            (tmp_path / name).write_bytes((ed448_certs / "certs" / name).read_bytes())
    proc = subprocess.run([sys.executable, "-m", "v2gtool", "session", "run", "--sim", "--no-trace", "--pnc",
                           "--certs-dir", str(tmp_path), "--trust-dir", str(ed448_certs / "trust")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == ExitCode.SECURITY, proc.stderr
    assert proc.stderr.startswith("v2gtool: error: --pnc: ") and missing in proc.stderr
    assert proc.stderr.count("\n") == 1
