"""NMK / NID (HomePlug AV 1.1)."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from v2gtool.slac.keys import NID_LEN, derive_nid, generate_nmk


def test_published_homeplugav_default_network_identifier() -> None:
    # The NMK of the default network password "HomePlugAV" and the NID every HomePlug AV tool
    # (open-plc-utils `hpavkey`, vendor utilities) derives from it.
    nmk = bytes.fromhex("50d3e4933f855b7040784df815aa8db7")
    assert derive_nid(nmk).hex() == "b0f2e695666b03"


@given(st.binary(min_size=16, max_size=16), st.integers(0, 3))
def test_nid_carries_the_security_level_in_bits_4_and_5(nmk: bytes, level: int) -> None:
    nid = derive_nid(nmk, level)
    assert len(nid) == NID_LEN
    assert nid[-1] >> 4 == level
    assert nid[:6] == derive_nid(nmk, 0)[:6]


def test_generated_nmks_are_fresh() -> None:
    keys = {generate_nmk() for _ in range(32)}
    assert len(keys) == 32 and all(len(k) == 16 for k in keys)


@pytest.mark.parametrize(("nmk", "level"), [(b"short", 0), (b"x" * 16, 4)])
def test_bad_arguments_are_rejected(nmk: bytes, level: int) -> None:
    with pytest.raises(ValueError):
        derive_nid(nmk, level)


@pytest.mark.interop
@pytest.mark.parametrize("tool", ["evse", "pev"])
def test_nid_matches_open_plc_utils_default_profiles(tool: str) -> None:
    """open-plc-utils' template profiles pair an NMK with the NID its own HPAVKeyNID derives."""
    if shutil.which(tool) is None:
        pytest.skip("open-plc-utils not installed (apt-get install -y plc-utils-extra)")
    profile = subprocess.run([tool, "-c"], capture_output=True, text=True, check=True, timeout=10).stdout
    values = {k.strip(): v.strip() for k, _, v in (line.partition("=") for line in profile.splitlines()) if v}
    nmk = bytes.fromhex(values["network membership key"])
    assert derive_nid(nmk).hex().upper() == values["network identifier"]
