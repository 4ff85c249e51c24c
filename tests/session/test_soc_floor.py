"""The station's SoC floor ends a discharge session: the SECC's EVSEStatus carries EVSENotification Terminate."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from v2gtool import v2gtp
from v2gtool.hw.backends import sim_station
from v2gtool.hw.control import EVSE_SHUTDOWN_REJECTED
from v2gtool.hw.events import DischargeRefused
from v2gtool.hw.isolation import Edition, IsolationProfile
from v2gtool.hw.station import StationConfig
from v2gtool.iso20.evcc import Direction, Evcc, EvccConfig
from v2gtool.iso20.events import MessageSent
from v2gtool.iso20.secc import Secc, SeccConfig
from v2gtool.session import scenario as scenarios
from v2gtool.session.plant import SimVehiclePort, StationCharger
from v2gtool.session.runner import run_sim


def test_the_station_floor_ends_a_discharge_session(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The EV's own floor (10 %) is below the station's (20 %): the station's applies. At it the SECC
    asks the EV to terminate, and the EV stops with PowerDelivery Stop and SessionStop Terminate,
    instead of idling at 0 A (with a warning per loop) until its duration ends."""
    path = tmp_path / "floor.toml"
    path.write_text("[plant]\nsoc = 0.205\nbattery_capacity_ah = 5\n")
    scenario = scenarios.load(path, direction=Direction.DISCHARGE, min_soc=10.0, duration=600.0)
    setup = sim_station(StationConfig(IsolationProfile(Edition.IEC_61851_23_2023, 920.0)), scenario.plant)
    setup.station.run(0.01)
    charger = StationCharger(setup, scenario.charger)
    station = setup.station
    secc = Secc(SeccConfig(discharge_refused=lambda: station.discharge_refused), charger, charger.now())
    evcc = Evcc(EvccConfig(direction=Direction.DISCHARGE, min_soc=10.0, duration=600.0),
                SimVehiclePort(setup, scenario.vehicle))
    caplog.set_level(logging.WARNING)
    sent: list[str] = []
    outputs = evcc.start(charger.now())
    while not evcc.ended:
        request = next(o for o in outputs if isinstance(o, bytes))
        charger.advance(charger.now() + evcc.pace)
        evcc.sent(charger.now())
        answers = secc.receive(v2gtp.decode_frame(request), charger.now())
        sent += [o.message for o in answers if isinstance(o, MessageSent)]
        answer = next(o for o in answers if isinstance(o, bytes))
        outputs = evcc.receive(v2gtp.decode_frame(answer), charger.now() + 0.01)
    refused = [e for e in station.events if isinstance(e, DischargeRefused)]
    assert len(refused) == 1 and refused[0].floor_percent == 20.0
    assert len([r for r in caplog.records if EVSE_SHUTDOWN_REJECTED in r.getMessage()]) == 1
    assert evcc.ok and evcc.end_reason == "SessionStop Terminate" and secc.ended
    assert charger.now() - refused[0].t < 5.0  # ended at the floor, not after the 600 s duration
    stop = sent.index("PowerDeliveryRes", sent.index("DC_ChargeLoopRes"))
    assert set(sent[stop + 1 : -1]) == {"DC_WeldingDetectionRes"} and sent[-1] == "SessionStopRes"
    assert setup.vehicle.soc_percent() >= 19.99


def test_session_run_sim_ends_at_the_station_floor(tmp_path: Path) -> None:
    """The chain `session run --sim` runs: the station's floor reaches the SECC through run_sim."""
    path = tmp_path / "floor.toml"
    path.write_text("[plant]\nsoc = 0.205\nbattery_capacity_ah = 5\n")
    scenario = scenarios.load(path, direction=Direction.DISCHARGE, min_soc=10.0, duration=600.0)
    result = asyncio.run(run_sim(scenario))
    assert result.ok and result.reason == "SessionStop Terminate"
    refused = [e for e in result.events if isinstance(e, DischargeRefused)]
    assert len(refused) == 1 and result.duration < refused[0].t + 5.0 < 600.0
    assert 19.9 <= result.soc_end < 20.5
