"""Our own certificate and key: every problem is one TlsError (exit 5) naming the file and what is
wrong, where OpenSSL says "[SSL] PEM lib"; a key-log file that refuses appends is one line too."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from v2gtool.errors import ConfigError
from v2gtool.exit_codes import ExitCode
from v2gtool.pki.create import generate_key
from v2gtool.pki.profiles import KeyType
from v2gtool.pki.tls import Credentials, TlsError, check_credentials, client_context, server_context


def files(pki_dir: Path, tmp_path: Path) -> dict[str, Path]:
    certs = pki_dir / "certs"
    encrypted = generate_key(KeyType.SECP521R1).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.BestAvailableEncryption(b"pw")
    )
    made = {"empty": b"", "blank": b"\n \n", "garbage": b"garbage\n", "encrypted": encrypted}
    for name, data in made.items():
        (tmp_path / name).write_bytes(data)
    return {
        **{name: tmp_path / name for name in made},
        "pem": certs / "secc_iso20.pem",
        "key": certs / "secc_iso20.key",
        "other_key": certs / "vehicle.key",
    }


@pytest.mark.parametrize(
    ("chain", "key", "message"),
    [
        ("key", "key", "own certificate {key}: not a PEM certificate (it holds a private key: give the chain, the "
                       ".pem beside it)"),
        ("empty", "key", "own certificate {empty}: empty file"),
        ("garbage", "key", "own certificate {garbage}: not a PEM certificate"),
        ("pem", "empty", "private key {empty}: empty file"),
        ("pem", "blank", "private key {blank}: empty file"),
        ("pem", "garbage", "private key {garbage}: not a private key"),
        ("pem", "pem", "private key {pem}: not a private key (it holds a certificate: give its key, the .key "
                       "beside it)"),
        ("pem", "other_key", "private key {other_key} does not match the certificate {pem} (the file's first, its "
                             "leaf)"),
        ("pem", "encrypted", "private key {encrypted} is encrypted: v2gtool reads unencrypted keys only"),
    ],
)
def test_an_unusable_own_certificate_or_key_is_a_tls_error_naming_the_file(
    pki_dir: Path, tmp_path: Path, chain: str, key: str, message: str
) -> None:
    paths = files(pki_dir, tmp_path)
    for build in (server_context, client_context):
        with pytest.raises(TlsError) as info:
            build(trust_dir=pki_dir / "trust" / "certs", credentials=Credentials(paths[chain], paths[key]))
        assert str(info.value).startswith(message.format(**paths)) and info.value.exit_code == ExitCode.SECURITY


def test_a_chain_file_holding_its_key_too_is_read_whole(pki_dir: Path, tmp_path: Path) -> None:
    both = tmp_path / "both.pem"
    both.write_bytes((pki_dir / "certs" / "secc_iso20.key").read_bytes() + (pki_dir / "certs" / "secc_iso20.pem")
                     .read_bytes())  # fmt: skip
    assert check_credentials(both).subject.rfc4514_string().startswith("CN=SECC")


def test_a_key_log_file_that_refuses_appends_is_one_line(pki_dir: Path) -> None:
    version = Path("/proc/version")
    if not version.exists():
        pytest.skip("needs /proc/version")
    with pytest.raises(ConfigError, match=r"^cannot open key-log file /proc/version: ") as info:
        server_context(pki_dir / "certs", pki_dir / "trust" / "certs", keylog=version)
    assert "\n" not in str(info.value)
