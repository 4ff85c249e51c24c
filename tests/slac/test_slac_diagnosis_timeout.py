"""Which SLAC diagnoses are a silent peer: ``session run`` exits 3 (README "Exit status") for them,
while ``evse-slac`` keeps each diagnosis' own code (10-21)."""

from __future__ import annotations

import pytest

from v2gtool.slac.diagnosis import Diagnosis

SILENT_PEER = {
    Diagnosis.NO_SLAC_PARM_REQ,
    Diagnosis.NO_SLAC_PARM_CNF,
    Diagnosis.NO_START_ATTEN_CHAR,
    Diagnosis.NO_ATTEN_CHAR_IND,
    Diagnosis.NO_ATTEN_CHAR_RSP,
    Diagnosis.NO_SLAC_MATCH_CNF,
}


@pytest.mark.parametrize("diagnosis", list(Diagnosis), ids=lambda d: d.name)
def test_a_diagnosis_is_a_timeout_exactly_when_the_peer_stayed_silent(diagnosis: Diagnosis) -> None:
    assert diagnosis.is_timeout is (diagnosis in SILENT_PEER)


def test_evse_slac_keeps_its_own_codes() -> None:
    assert sorted(d.exit_code for d in Diagnosis) == list(range(10, 22))
