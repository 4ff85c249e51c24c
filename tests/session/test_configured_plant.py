"""The SECC on a real link (``serve``, ``ocpp-bridge --iface``) and the EV of ``connect`` run with
the machine's ``[hw]`` station settings, as ``session run`` and the hardware commands do."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from v2gtool.cli.context import AppContext
from v2gtool.cli.live import configured_plant
from v2gtool.config import Config
from v2gtool.hw.isolation import Edition


def test_hw_settings_reach_the_station_of_a_real_link(tmp_path: Path) -> None:
    scenario = tmp_path / "s.toml"
    scenario.write_text("[charger]\nmax_voltage = 920\n")
    config = Config({"hw": {"soc_floor_percent": 45.0, "isolation_edition": "2014", "inlet_limit_c": 70.0}})
    console = Console(file=None)
    app = AppContext(config, False, False, console, console)
    for remote_ev in (True, False):
        _scenario, charger, _vehicle = configured_plant(app, scenario, remote_ev=remote_ev)
        station = charger.station.config
        assert station.soc_floor.floor_percent == 45.0
        assert station.isolation.edition is Edition.IEC_61851_23_2014
        assert station.isolation.rated_voltage_v == 920.0  # the scenario's charger, as session run takes it
        assert station.derating is not None and station.derating.limit_c == 70.0
