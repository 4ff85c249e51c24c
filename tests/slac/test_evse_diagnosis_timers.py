"""Round 3 of `evse-slac`: the EVSE's own attenuation in its diagnosis, TIME_OUT as announced,
and --link raw's interface from the option or the configuration."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from v2gtool.errors import ConfigError
from v2gtool.slac.cable import SimCable
from v2gtool.slac.diagnosis import Diagnosis
from v2gtool.slac.ev import EvSlac
from v2gtool.slac.evse import EvseSlac
from v2gtool.slac.machine import SlacResult
from v2gtool.slac.modem_sim import AttenuationModel, SimModem
from v2gtool.slac.timers import SlacTimers

EV_MAC = "02:00:00:00:0e:02"
EVSE_MAC = "02:00:00:00:0e:01"
ADJACENT_MAC = "02:00:00:00:0e:03"
TIMERS = SlacTimers(TT_EVSE_SLAC_init=5.0, C_sequ_retry=0, TT_EVSE_match_session=1.0)


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "v2gtool", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def _evse(mac: str, base_db: float, timers: SlacTimers = TIMERS) -> tuple[EvseSlac, SimModem]:
    modem = SimModem(mac, modem_mac="00:b0:52:00:00:" + mac[-2:], attenuation=AttenuationModel(base_db=base_db))
    return EvseSlac(mac, timers), modem


def _run(*evses: tuple[EvseSlac, SimModem], timers: SlacTimers = TIMERS) -> list[SlacResult]:
    cable = SimCable()
    cable.add(EvSlac(EV_MAC, timers), SimModem(EV_MAC, modem_mac="00:b0:52:00:00:e2"))
    for machine, modem in evses:
        cable.add(machine, modem)
    return list(cable.run())


def test_evse_names_its_own_attenuation_above_the_threshold_not_a_neighbour() -> None:
    ev_result, evse_result = _run(_evse(EVSE_MAC, 45.0))
    assert ev_result.diagnosis is Diagnosis.ATTENUATION_TOO_HIGH
    assert evse_result.diagnosis is Diagnosis.ATTENUATION_TOO_HIGH
    assert evse_result.diagnosis.exit_code == 12
    assert "> 40 dB at 02:00:00:00:0e:01" in evse_result.detail
    assert "sent no CM_SLAC_MATCH.REQ" in evse_result.detail


def test_evse_below_the_threshold_still_diagnoses_the_other_charger() -> None:
    _ev, adjacent, evse = _run(_evse(ADJACENT_MAC, 35.0), _evse(EVSE_MAC, 20.0))
    assert evse.matched
    assert adjacent.diagnosis is Diagnosis.PEER_CHOSE_OTHER


def test_the_evse_threshold_is_the_configured_one() -> None:
    timers = dataclasses.replace(TIMERS, attenuation_threshold_db=50.0)
    _ev, adjacent, _evse_result = _run(_evse(ADJACENT_MAC, 45.0, timers), _evse(EVSE_MAC, 20.0, timers),
                                       timers=timers)
    assert adjacent.diagnosis is Diagnosis.PEER_CHOSE_OTHER


def test_cli_evse_at_high_attenuation_exits_12_naming_the_attenuation() -> None:
    proc = run("evse-slac", "--sim-attenuation", "45", "--timer", "TT_EVSE_match_session=1",
               "--timer", "C_sequ_retry=0")
    assert proc.returncode == 12, proc.stderr
    assert "attenuation above the threshold (45.0 dB > 40 dB" in proc.stderr
    assert "cross-talk" not in proc.stderr and proc.stderr.count("\n") == 1


@given(st.integers(1, 255))
def test_every_whole_time_out_is_accepted_as_announced(units: int) -> None:
    """CM_SLAC_PARM.CNF TIME_OUT is in units of 100 ms: what is accepted is what is announced."""
    seconds = SlacTimers.setting("TT_EVSE_match_MNBC", f"{units / 10:g}")
    assert round(seconds * 10) == units and abs(seconds - units / 10) < 1e-9


@pytest.mark.parametrize("value", ["0.15", "0.61", "1.25"])
def test_a_window_the_time_out_field_cannot_announce_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match=r"is not a multiple of 0.1 \(TIME_OUT is one octet in units of 100 ms\)"):
        SlacTimers.setting("TT_EVSE_match_MNBC", value)
    with pytest.raises(ConfigError, match=r"\[slac.timers\]: TT_EVSE_match_MNBC"):
        SlacTimers.from_mapping({"TT_EVSE_match_MNBC": float(value)}, where="[slac.timers]")


def test_cli_refuses_a_window_it_would_announce_rounded() -> None:
    proc = run("evse-slac", "--timer", "TT_EVSE_match_MNBC=0.15")
    assert proc.returncode == 2
    assert proc.stderr == ("v2gtool: error: --timer 'TT_EVSE_match_MNBC=0.15': 0.15 is not a multiple of 0.1 "
                           "(TIME_OUT is one octet in units of 100 ms)\n")


def test_link_raw_needs_an_interface_from_the_option_or_the_config(tmp_path: Path) -> None:
    config = tmp_path / "v2gtool.toml"
    config.touch()
    missing = run("--config", str(config), "evse-slac", "--link", "raw")
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert "Missing option '--iface'" in missing.stderr
    assert "set [slac] iface in the config file or V2GTOOL_SLAC__IFACE" in missing.stderr
    configured = run("--config", str(config), "evse-slac", "--link", "raw", env={"V2GTOOL_SLAC__IFACE": "v2gnone3"})
    assert configured.returncode == 4
    assert configured.stderr == "v2gtool: error: no network interface 'v2gnone3' (see `ip link`)\n"


def test_help_shows_where_the_interface_comes_from() -> None:
    proc = run("evse-slac", "--help")
    assert "[default: [slac] iface]" in " ".join(proc.stdout.split())
