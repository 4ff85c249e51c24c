"""NotifyEVChargingNeeds sent late (the CSMS was away at ScheduleExchange) says the EV's needs as of
the sending, with the departure it declared (OCPP 2.0.1 / 2.1 K15)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from tests.ocpp.test_interop_csms import Seen, start_csms
from tests.ocpp.wire import until
from v2gtool.iso20.events import EVChargingNeeds, PhaseChanged, PowerFlow
from v2gtool.iso20.ports import PowerLimits
from v2gtool.ocpp.outbox import Outbox
from v2gtool.ocpp.payloads import OCPP21, epoch
from v2gtool.ocpp.profile import ProfileSetpoint
from v2gtool.ocpp.station import BridgeConfig, StationBridge

LIMITS = PowerLimits(
    max_charge_power=11000.0,
    min_charge_power=0.0,
    max_charge_current=30.0,
    min_charge_current=0.0,
    max_voltage=450.0,
    min_voltage=300.0,
    max_discharge_power=11000.0,
    max_discharge_current=30.0,
)


def test_late_needs_count_the_energy_exported_since_and_keep_the_declared_departure(tmp_path: Path) -> None:
    """The EV may give 10 kWh and leaves in an hour; it exports 1 kWh before the CSMS is reached 1.5 s
    later: the CSMS learns 9 kWh, and the departure an hour after the declaration, not the sending."""

    async def scenario() -> tuple[float, Seen]:
        seen = Seen()
        server, port = await start_csms(OCPP21, seen)
        config = BridgeConfig(url=f"ws://127.0.0.1:{port}/ocpp", station_id="NEEDS", subprotocols=(OCPP21,))
        bridge = StationBridge(config, Outbox(tmp_path / "outbox"), ProfileSetpoint())
        bridge.on_event(PhaseChanged(t=0.0, role="SECC", phase="SessionSetup"))
        declared = time.time()
        bridge.on_event(
            EVChargingNeeds(
                t=1.0,
                role="SECC",
                service="DC_BPT",
                control_mode="DYNAMIC",
                limits=LIMITS,
                departure_time=3600,
                min_soc=20,
                max_v2x_energy=20000.0,
                min_v2x_energy=-10000.0,
            )
        )
        for t in (2.0, 102.0):  # 36 kW out of the EV for 100 s: 1 kWh
            bridge.on_event(PowerFlow(t=t, role="SECC", voltage=400.0, current=-90.0, power=-36000.0))
        await asyncio.sleep(1.5)
        link = asyncio.create_task(bridge.run())
        try:
            await until(lambda: bool(seen.needs), 10.0)
        finally:
            link.cancel()
            await asyncio.gather(link, return_exceptions=True)
            server.close()
        return declared, seen

    declared, seen = asyncio.run(scenario())
    needs = seen.needs[0]["charging_needs"]
    v2x = needs["v2x_charging_parameters"]
    assert v2x["ev_min_v2x_energy_request"] == -9000.0
    assert v2x["ev_max_v2x_energy_request"] == 21000.0
    assert abs(epoch(needs["departure_time"]) - (declared + 3600)) < 0.1
