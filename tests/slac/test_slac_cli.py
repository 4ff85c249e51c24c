"""`v2gtool evse-slac` end to end over the in-process simulated cable (no root)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from scapy.utils import rdpcap

from v2gtool.slac import mme


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "v2gtool", "evse-slac", *args], capture_output=True, text=True, timeout=60
    )


def test_sim_match_as_ev_with_json_and_cross_talk() -> None:
    proc = run("--role", "ev", "--sim-adjacent", "33", "--json")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    result = records[-1]
    assert result["event"] == "SlacResult" and result["matched"] is True
    assert result["peer_mac"] == "02:00:00:00:0e:01" and result["nmk"] is None
    assert len(result["attenuation_db"]) == 2
    assert any(r["event"] == "EvseChosen" for r in records)
    assert all(r.get("nmk") is None for r in records if r["event"] == "SlacMatched")


def test_show_key_reveals_the_nmk() -> None:
    proc = run("--show-key", "--json")
    assert proc.returncode == 0
    assert len(json.loads(proc.stdout.splitlines()[-1])["nmk"]) == 32


def test_attenuation_above_threshold_exit_code_and_one_line_diagnosis() -> None:
    proc = run("--role", "ev", "--sim-attenuation", "52")
    assert proc.returncode == 12
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "PE connection" in proc.stderr and "shield" in proc.stderr


def test_threshold_option_changes_the_decision() -> None:
    assert run("--role", "ev", "--sim-attenuation", "52", "--threshold", "60").returncode == 0


def test_evse_reports_cross_talk_when_its_ev_chose_the_other_charger() -> None:
    # Seen from the adjacent charger: our EVSE is the far one, so the EV never sends MATCH.REQ.
    proc = run(
        "--sim-attenuation",
        "35",
        "--sim-adjacent",
        "20",
        "--timer",
        "TT_EVSE_match_session=1",
        "--timer",
        "C_sequ_retry=0",
    )
    assert proc.returncode == 14, proc.stderr
    assert "cross-talk" in proc.stderr


def test_pcap_holds_every_frame_and_opens(tmp_path: Path) -> None:
    pcap = tmp_path / "slac.pcap"
    proc = run("--role", "ev", "--pcap", str(pcap))
    assert proc.returncode == 0
    packets = rdpcap(str(pcap))
    names = [mme.decode_frame(bytes(p)).name for p in packets]
    assert names[0] == "CM_SLAC_PARM.REQ"
    assert names.count("CM_MNBC_SOUND.IND") == 10 and "CM_SLAC_MATCH.CNF" in names
    assert "Matched ev" in proc.stdout
    assert f"{len(packets)} frames written to {pcap}" in proc.stdout


def test_bad_timer_is_a_one_line_config_error() -> None:
    proc = run("--timer", "TT_bogus=1")
    assert proc.returncode == 2
    assert "unknown SLAC timer 'TT_bogus'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("timer", "message"),
    [
        ("TT_match_response=nan", "must be a finite number"),  # once waited for ever
        ("TT_EVSE_match_MNBC=30", "outside 0.1 .. 25.5 (TIME_OUT is one octet in units of 100 ms)"),
        ("C_EV_match_MNBC=300", "outside 1 .. 255"),  # scapy refused the frame with a traceback
        ("C_EV_match_MNBC=0", "at least one sound is needed"),
    ],
)
def test_timer_values_the_wire_cannot_carry_are_config_errors(timer: str, message: str) -> None:
    proc = run("--timer", timer)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # Named the option and the key the user did not use ("[slac.timers] / --timer: attenuation_threshold_db").
        (("--threshold=-5",), "v2gtool: error: --threshold: -5 must be a finite number, not negative\n"),
        # Was "is not a number": it is one, but a count is whole.
        (("--timer", "C_sequ_retry=1.5"),
         "v2gtool: error: --timer 'C_sequ_retry=1.5': 1.5 must be a whole number: C_sequ_retry is a count\n"),
        (("--timer", "TT_match_response=x"), "v2gtool: error: --timer 'TT_match_response=x': x is not a number\n"),
    ],
)
def test_an_option_error_names_what_the_user_wrote(args: tuple[str, ...], message: str) -> None:
    proc = run(*args)
    assert proc.returncode == 2 and proc.stderr == message


def test_a_count_in_the_config_file_must_be_whole(tmp_path: Path) -> None:
    config = tmp_path / "v2gtool.toml"
    config.write_text("[slac.timers]\nC_sequ_retry = 1.5\n")  # was read as 1
    proc = subprocess.run([sys.executable, "-m", "v2gtool", "--config", str(config), "evse-slac"],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert proc.returncode == 2
    assert "[slac] timers is not valid: C_sequ_retry = 1.5 must be a whole number: C_sequ_retry is a count" \
        in proc.stderr


def test_timers_from_the_config_file(tmp_path: Path) -> None:
    config = tmp_path / "v2gtool.toml"
    config.write_text("[slac.timers]\nTT_match_response = 0.1\n")
    proc = subprocess.run(
        [sys.executable, "-m", "v2gtool", "--config", str(config), "evse-slac", "--role", "ev", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    first_start = next(
        r for r in records if r["event"] == "MmeSent" and r["mme"] == "CM_START_ATTEN_CHAR.IND"
    )
    assert first_start["t"] == 0.1  # CM_SLAC_PARM.CNF collected for TT_match_response only


def test_validate_finds_our_charger_when_the_neighbour_looks_closer() -> None:
    proc = run("--role", "ev", "--validate", "--sim-attenuation", "30", "--sim-adjacent", "18", "--json")
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    chosen = [r["evse_mac"] for r in records if r["event"] == "EvseChosen"]
    assert chosen == ["02:00:00:00:0e:03", "02:00:00:00:0e:01"]
    assert records[-1]["peer_mac"] == "02:00:00:00:0e:01"
    assert any(r["event"] == "BcToggleRequest" for r in records)


def test_unknown_interface_is_a_one_line_error() -> None:
    proc = run("--iface", "v2gsnone0")
    assert proc.returncode == 4
    assert "no network interface 'v2gsnone0'" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize(("args", "message"), [
    (("--link", "sim", "--iface", "eth9", "--backend", "hw"), "--iface, --backend do not apply to --link sim"),
    (("--modem-mac", "00:b0:52:00:00:02"), "--modem-mac does not apply to --link sim"),
    (("--iface", "lo", "--sim-adjacent", "30"), "--sim-adjacent does not apply to --link raw"),
])
def test_options_of_the_other_link_are_usage_errors(args: tuple[str, ...], message: str) -> None:
    proc = run(*args)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr


def test_evse_keeps_the_cross_talk_diagnosis_through_its_sequence_retries() -> None:
    # ISO 15118-3 C_sequ_retry (default 2): the EV that chose the adjacent charger does not come
    # back after E/F; the silent later attempts must not turn PEER_CHOSE_OTHER into NO_SLAC_PARM_REQ.
    proc = run("--role", "evse", "--sim-adjacent", "15", "--json")
    assert proc.returncode == 14, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert sum(r.get("cp") == "E/F" for r in records) == 2  # both retries were made
    result = records[-1]
    assert result["diagnosis"] == "PEER_CHOSE_OTHER" and result["peer_mac"] == "02:00:00:00:0e:02"
    assert "cross-talk" in proc.stderr and proc.stderr.count("\n") == 1


@pytest.mark.parametrize(
    ("mac", "why"),
    [
        ("ff:ff:ff:ff:ff:ff", "broadcast or multicast"),
        ("01:00:5e:00:00:01", "broadcast or multicast"),
        ("00:00:00:00:00:00", "all zeros"),
    ],
)
def test_modem_mac_must_be_one_station(mac: str, why: str) -> None:
    # The own modem gets CM_SET_KEY.REQ with the NMK: never send it to a group or a null address.
    proc = run("--iface", "lo", "--modem-mac", mac)
    assert proc.returncode == 2, proc.stderr
    assert "Invalid value for '--modem-mac'" in proc.stderr and why in proc.stderr
    assert "Traceback" not in proc.stderr
