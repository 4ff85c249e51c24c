"""The SECC's DC energy meter: both registers, integrated from the charge loop's measurements.

ISO 15118-20 MeterInfoType (V2G_CI_CommonTypes.xsd) carries ChargedEnergyReadingWh and, for BPT,
BPT_DischargedEnergyReadingWh; OCPP reports the same registers as Energy.Active.Import.Register
and Energy.Active.Export.Register. The power of a reading holds until the next one (the loop's
values are what the power module was told and reported at that moment).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class EnergyMeter:
    """Registers both ways (Wh) and the latest reading (signed W, + into the EV)."""

    imported_wh: float = 0.0
    exported_wh: float = 0.0
    power: float = 0.0
    voltage: float = 0.0
    soc: float | None = None
    _last_t: float | None = None

    def sample(self, t: float, voltage: float, power: float, soc: float | None) -> None:
        """One DC_ChargeLoop reading at session time *t*."""
        if self._last_t is not None and t > self._last_t:
            energy = self.power * (t - self._last_t) / 3600.0
            if energy >= 0:
                self.imported_wh += energy
            else:
                self.exported_wh -= energy
        self._last_t = t
        self.power, self.voltage = power, voltage
        if soc is not None:
            self.soc = soc

    def idle(self) -> None:
        """Energy transfer stopped: no power from here on."""
        self.power = 0.0
        self._last_t = None
