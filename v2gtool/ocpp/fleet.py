"""The virtual power plant's core (sans-IO): the fleet's live discharge capacity and the dispatch.

Each connected vehicle says what it allows in NotifyEVChargingNeeds (maximum discharge power,
the energy it may give before its minimum SoC — ISO 15118-20's EVMinimumV2XEnergyRequest — and
its departure) and reports its meter in TransactionEvent (standards.md 8.3). Its capacity for a
request of *duration* seconds starting now is what it can sustain for the whole request::

    remaining_Wh = dischargeable_Wh_at_notification - (exported - imported since then)
    horizon      = min(duration, max(departure - now, control period))
    capacity_W   = min(max_discharge_power, remaining_Wh * 3600 / horizon)   (0 at or below its floor)

A share holds until the next re-dispatch, so a vehicle that departs sooner than that is still
asked for no more than its energy over one control period.

A grid request ("deliver 200 kW for 15 minutes") is shared in proportion to capacity: each
vehicle gets ``request * capacity / sum(capacities)``, which never exceeds its capacity and so
never takes it under its floor before the request ends; with too little capacity every vehicle
runs at its capacity and the shortfall is reported. The dispatch is recomputed every control
period, so a vehicle that leaves (TransactionEvent Ended, or the end of the profile a station that
lost its connection runs) or reaches its floor is re-dispatched to the others within one period.

A vehicle whose station refused its share (SetChargingProfile Rejected, a CALLERROR or no answer;
OCPP 2.0.1 use case K01) is not offered another for :data:`REFUSAL_HOLD_S` s, or until it sends new
needs. It does not stop, though: a rejected SetChargingProfile leaves the TxProfile installed before
it in force (use case K01: the station keeps the profiles it has when it rejects a new one), and one
that was never answered may have been installed after all. So while refused it counts at what it really
runs (:meth:`Vehicle.held_power`): its metered power once a reading taken since the refusal arrived,
its last accepted share until then; and only the rest of the request is shared among the others::

    rest = request - sum(held_power of the refused vehicles)

shared by discharge capacity when the rest discharges, by charge capacity when it charges (a
refused vehicle still running a larger discharge than the new request wants is offset by the others
charging), so the fleet's total stays at the request instead of overshooting it by the refused
vehicle's old share.

A vehicle whose station's connection dropped (:meth:`Fleet.lose`) is held the same way: a station
without its CSMS goes on running the TxProfile it accepted (OCPP 2.0.1 K01: a profile stays
installed until it ends or is replaced), so it is counted at that share (:attr:`Vehicle.accepted`,
no readings come any more) until that profile ends (:attr:`Vehicle.accepted_until`), and only then
leaves and is re-dispatched to the others. A station that comes back before then (:meth:`Fleet.rejoin`)
is dispatched again.

A station that accepts a share but caps it at its charger's own maximum (the SetChargingProfile
answer's statusInfo reasonCode LimitCapped, :func:`~v2gtool.ocpp.payloads.limit_capped`) runs at that
cap, so the cap bounds its capacity in that direction from then on (:meth:`Fleet.cap`) and the
others share the rest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from v2gtool.ocpp.payloads import Reading, VehicleNeeds

MET_TOLERANCE = 0.05  # a request counts as met within 5 %
REFUSAL_HOLD_S = 60.0  # how long a vehicle whose station refused its share is offered none


def _since(at_needs: float | None, now: float | None) -> float:
    """Wh a register moved since the vehicle's needs (0 before it was read after them)."""
    return 0.0 if at_needs is None or now is None else now - at_needs


@dataclass
class Vehicle:
    """One EVSE with a vehicle in a transaction, as the CSMS sees it."""

    station: str
    evse_id: int
    transaction_id: str
    needs: VehicleNeeds | None = None
    power: float = 0.0  # last metered, signed W (+ into the EV)
    soc: float | None = None
    imported_wh: float | None = None  # the registers' last readings (lifetime counters); None: none yet
    exported_wh: float | None = None
    measured_at: float = 0.0
    allocation: float = 0.0  # signed W the VPP counts on it for (asked for, or held: refused or lost)
    accepted: float = 0.0  # signed W of the last TxProfile its station accepted: what it runs (K01)
    accepted_until: float = 0.0  # when that TxProfile ends (0: none accepted yet)
    profile_id: int = 0  # the id of its TxProfile, which every new share replaces (0: none sent yet)
    link_lost: bool = False  # its station's connection dropped: it runs its accepted TxProfile, unheard
    charger_max_charge: float = math.inf  # W its station capped a share at (LimitCapped), each direction
    charger_max_discharge: float = math.inf
    refused_at: float = 0.0  # when its station last refused a share
    refused_until: float = 0.0  # its station refused a share: none offered before this
    # The registers (lifetime counters, OCPP 2.0.1 Energy.Active.*.Register) when the needs arrived, or
    # at their first reading after that: the energy moved since the needs is counted from there.
    _import_at_needs: float | None = None
    _export_at_needs: float | None = None

    @property
    def key(self) -> tuple[str, int]:
        return (self.station, self.evse_id)

    def update_needs(self, needs: VehicleNeeds) -> None:
        """New needs (K15); they make a vehicle whose station refused its share dispatchable again."""
        self.needs = needs
        self.refused_until = 0.0
        self._import_at_needs, self._export_at_needs = self.imported_wh, self.exported_wh

    def meter(self, reading: Reading) -> None:
        if reading.imported_wh is not None:
            self.imported_wh = reading.imported_wh
            if self.needs is not None and self._import_at_needs is None:
                self._import_at_needs = reading.imported_wh
        if reading.exported_wh is not None:
            self.exported_wh = reading.exported_wh
            if self.needs is not None and self._export_at_needs is None:
                self._export_at_needs = reading.exported_wh
        if reading.power is not None:
            self.power = reading.power
        if reading.soc is not None:
            self.soc = reading.soc
        self.measured_at = reading.at

    def refused(self, now: float) -> bool:
        """Whether its station refused a share less than :data:`REFUSAL_HOLD_S` s ago (and it sent no
        new needs since): it is offered none now."""
        return now < self.refused_until

    def held(self, now: float) -> bool:
        """Whether it is counted at :meth:`held_power` instead of being offered a share: its station
        refused one lately, or its connection dropped."""
        return self.link_lost or self.refused(now)

    def held_power(self) -> float:
        """The signed W a held vehicle is counted at: after a lost connection its last accepted share,
        after a refusal its metered power when a reading taken since the refusal arrived, else its last
        accepted share; neither a lost CSMS nor a rejected SetChargingProfile stops the TxProfile in
        force (OCPP 2.0.1 K01)."""
        if self.link_lost or self.measured_at <= self.refused_at:
            return self.accepted
        return self.power

    def remaining_wh(self) -> float:
        """Energy it may still give before its minimum SoC (>= 0)."""
        if self.needs is None or not self.needs.bpt:
            return 0.0
        if self.soc is not None and self.needs.min_soc is not None and self.soc <= self.needs.min_soc:
            return 0.0
        imported = _since(self._import_at_needs, self.imported_wh)
        exported = _since(self._export_at_needs, self.exported_wh)
        return max(0.0, self.needs.dischargeable_wh + imported - exported)

    def discharge_capacity(self, now: float, duration: float, period: float = 0.0) -> float:
        """W it can deliver for all of *duration* (or until it departs, but at least for the control
        *period* its share holds), staying above its floor and within its charger's cap; 0 while it is
        held."""
        needs = self.needs
        if needs is None or not needs.bpt or needs.max_discharge_power <= 0 or self.held(now):
            return 0.0
        horizon = duration
        if needs.departure is not None:
            if needs.departure <= now:
                return 0.0
            horizon = min(horizon, max(needs.departure - now, period))
        if horizon <= 0:
            return 0.0
        return min(needs.max_discharge_power, self.charger_max_discharge, self.remaining_wh() * 3600.0 / horizon)

    def charge_capacity(self, now: float) -> float:
        """W it can take (its maximum charge power, within its charger's cap); 0 while it is held."""
        if self.needs is None or self.held(now):
            return 0.0
        return min(self.needs.max_charge_power, self.charger_max_charge)


@dataclass
class GridRequest:
    """What the grid operator asked for: signed W (- delivers into the grid) until ``until``."""

    power: float
    start: float
    until: float


@dataclass
class Fleet:
    """The connected vehicles, the grid request and its dispatch."""

    vehicles: dict[tuple[str, int], Vehicle] = field(default_factory=dict)
    request: GridRequest | None = None
    dispatched_at: float | None = None  # the last (re-)dispatch: a request, or a vehicle lost from it
    period: float = 1.0  # the control period: how long a share holds before the next allocation
    met_at: float | None = None

    def arrive(self, vehicle: Vehicle) -> None:
        self.vehicles[vehicle.key] = vehicle

    def leave(self, now: float, station: str, evse_id: int | None = None) -> list[Vehicle]:
        """A transaction ended (or a new one replaced it); the vehicles that went."""
        gone = [v for k, v in self.vehicles.items() if k[0] == station and evse_id in (None, k[1])]
        self._remove(now, gone)
        return gone

    def lose(self, now: float, station: str) -> None:
        """A station's connection dropped: its vehicles are held at the share they accepted until
        that TxProfile ends (see the module docstring); the ones with none in force leave now."""
        for v in self.vehicles.values():
            if v.station == station:
                v.link_lost = True
        self._expire(now)

    def rejoin(self, station: str) -> None:
        """A station connected (again): its vehicles that were held for a lost connection are
        dispatched again."""
        for v in self.vehicles.values():
            if v.station == station:
                v.link_lost = False

    def _expire(self, now: float) -> None:
        """The vehicles of lost connections whose accepted TxProfile ended leave: what they run now
        is unknown to the CSMS."""
        self._remove(now, [v for v in self.vehicles.values() if v.link_lost and v.accepted_until <= now])

    def _remove(self, now: float, gone: list[Vehicle]) -> None:
        for v in gone:
            del self.vehicles[v.key]
        if any(v.allocation != 0.0 for v in gone):
            self._redispatch(now)

    def _redispatch(self, now: float) -> None:
        if self.request is not None:
            self.dispatched_at = now
            self.met_at = None

    def refuse(self, now: float, key: tuple[str, int]) -> None:
        """The vehicle's station refused its share or did not answer (K01): for :data:`REFUSAL_HOLD_S`
        s it is offered none and counts at :meth:`Vehicle.held_power`; the others share the rest."""
        vehicle = self.vehicles.get(key)
        if vehicle is not None:
            vehicle.refused_at = now
            vehicle.refused_until = now + REFUSAL_HOLD_S
            self._redispatch(now)

    def cap(self, now: float, key: tuple[str, int], watts: float, limit: float) -> None:
        """The vehicle's station accepted *watts* (signed) but runs it capped at *limit* W (LimitCapped):
        the cap bounds its capacity in that direction from now on, it runs at the cap, and the others
        are re-dispatched the rest."""
        vehicle = self.vehicles.get(key)
        if vehicle is None:
            return
        if watts < 0:
            vehicle.charger_max_discharge = limit
        else:
            vehicle.charger_max_charge = limit
        vehicle.accepted = math.copysign(limit, watts)
        self._redispatch(now)

    def find(self, station: str, transaction_id: str) -> Vehicle | None:
        for v in self.vehicles.values():
            if v.station == station and v.transaction_id == transaction_id:
                return v
        return None

    def dispatch(self, power: float, duration: float, now: float) -> None:
        """A new grid request (signed W; negative discharges the fleet into the grid)."""
        self.request = GridRequest(power, now, now + duration)
        self._redispatch(now)

    def cancel(self) -> None:
        self.request = None
        self.dispatched_at = self.met_at = None

    def allocate(self, now: float) -> dict[tuple[str, int], float]:
        """The signed W each vehicle should run at now (see the module docstring)."""
        self._expire(now)
        request = self.request
        if request is not None and now >= request.until:
            self.cancel()
            request = None
        held = {k: v.held_power() for k, v in self.vehicles.items() if v.held(now)}
        allocation = {key: held.get(key, 0.0) for key in self.vehicles}
        free = [v for v in self.vehicles.values() if v.key not in held]
        rest = 0.0 if request is None else request.power - sum(held.values())
        if request is not None and rest < 0:
            caps = {v.key: v.discharge_capacity(now, request.until - now, self.period) for v in free}
            total = sum(caps.values())
            for key, cap in caps.items():
                allocation[key] = -(cap if total <= -rest else -rest * cap / total)
        elif rest > 0:
            caps = {v.key: v.charge_capacity(now) for v in free}
            total = sum(caps.values())
            for key, cap in caps.items():
                allocation[key] = cap if total <= rest else rest * cap / total
        for key, watts in allocation.items():
            vehicle = self.vehicles[key]
            if vehicle.allocation != 0.0 and watts == 0.0:  # it reached its floor or departs
                self._redispatch(now)
            vehicle.allocation = watts
        return allocation

    def capacity(self, now: float, duration: float) -> float:
        """The fleet's discharge capacity (W) for a request of *duration* seconds from now."""
        return sum(v.discharge_capacity(now, duration, self.period) for v in self.vehicles.values())

    def delivered(self, since: float) -> float | None:
        """The fleet's metered power from readings taken at or after *since* (None until every
        vehicle with an allocation has reported one); a vehicle of a lost connection, which reports
        nothing, at the share it runs (:meth:`Vehicle.held_power`)."""
        total = 0.0
        for v in self.vehicles.values():
            if v.link_lost:
                total += v.held_power()
            elif v.allocation != 0.0 and v.measured_at < since:
                return None
            total += v.power if v.measured_at >= since else 0.0
        return total

    def check_met(self, now: float) -> bool:
        """Record when the metered fleet power first came within :data:`MET_TOLERANCE` of the
        request after the last (re-)dispatch."""
        request = self.request
        if request is None or self.dispatched_at is None:
            return False
        if self.met_at is None:
            delivered = self.delivered(self.dispatched_at)
            if delivered is not None and abs(delivered - request.power) <= MET_TOLERANCE * abs(request.power):
                self.met_at = now
        return self.met_at is not None
