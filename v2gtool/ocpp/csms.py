"""``vpp serve``: a CSMS that aggregates the connected vehicles' discharge capacity into one plant.

Stations connect over OCPP-J (websockets, ``ocpp2.1`` preferred, ``ocpp2.0.1`` accepted; security
profile 2 with HTTP Basic passwords or 3 with client certificates when TLS is configured). Each
station's NotifyEVChargingNeeds and TransactionEvent feed the :class:`~v2gtool.ocpp.fleet.Fleet`;
every control period the fleet is re-dispatched and each transaction whose share changed gets a
SetChargingProfile TxProfile (:func:`~v2gtool.ocpp.payloads.dispatch_profile`).

Short profiles, renewed: each share goes out as a TxProfile of :meth:`Vpp.lease` seconds (the
response timeout plus :data:`PROFILE_PERIODS` control periods, rounded up: 13 s with the defaults;
never past the request's end) and, while the request runs, is sent again before it ends
(:meth:`Vpp.due`): once less than the response timeout and one control period of it is left, so a
station that answers within the response timeout has the new one before the old one ends (a renewal
about every ``PROFILE_PERIODS - 1`` control periods). A station that loses its connection keeps
running the profile it has (OCPP 2.0.1 K01), but only until that ends, then goes back to its own plan
rather than running its share to the end of a request that may be long, changed or cancelled
meanwhile. Its vehicle is counted at that share until then, so the others share only the rest and
the fleet does not overshoot, and re-dispatched to the others after
(:meth:`~v2gtool.ocpp.fleet.Fleet.lose`). A station that was killed looks the same from here: its
share is counted for at most one lease after it went silent.

Exactly once: every TransactionEvent is checked, then appended (and flushed to disk) to the state
directory's ``transactions.jsonl``, then applied and answered; one whose (station, transactionId,
seqNo) is already there is answered again but not counted again, and one refused with a CALLERROR is
not written down, so the station's corrected retry counts. A restarted CSMS reads the file back, so
the stations' replays after the restart (OCPP 2.0.1 E04) land exactly once too.

Every frame a station sends that cannot be handled is answered with the OCPP-J RPC framework's
CALLERROR (OCPP 2.0.1/2.1 part 4 4.2.3, error codes 4.3; :mod:`v2gtool.ocpp.rpc_errors`) and
reported as one :class:`~v2gtool.ocpp.rpc_errors.FrameRejected` event rather than a traceback.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import math
import os
import ssl
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

import websockets
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.http11 import Request, Response

from v2gtool.errors import V2GToolError
from v2gtool.ocpp import rpc
from v2gtool.ocpp.fleet import Fleet, Vehicle
from v2gtool.ocpp.payloads import (
    INT32_MAX,
    ImplausibleValue,
    Reading,
    VehicleNeeds,
    check_station_identity,
    dispatch_profile,
    limit_capped,
    read_charging_needs,
    read_datetime,
    read_meter_value,
    read_number,
    timestamp,
    wrap_int32,
)
from v2gtool.ocpp.rpc_errors import AnswersEveryFrame, CallRejected, FrameRejected
from v2gtool.session.events import Event

Listener = Callable[[Event], None]
HEARTBEAT_S = 60
CHANGE_W = 100.0  # a share that moved less than this is not re-sent
PROFILE_PERIODS = 3  # control periods a share's TxProfile lasts beyond the response timeout


class CsmsError(V2GToolError):
    """The aggregator cannot start (state directory, address in use)."""

    exit_code = 4


@dataclass(frozen=True, kw_only=True)
class StationConnected(Event):
    station: str
    subprotocol: str


@dataclass(frozen=True, kw_only=True)
class StationLeft(Event):
    station: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class Dispatched(Event):
    request_w: float | None
    allocated_w: float
    vehicles: int
    changed: int


def station_identity(path: str) -> str:
    """The station identity of a websocket URL path (OCPP 2.0.1 part 4 3.2: the last segment,
    percent-encoded): the whole decoded segment, a decoded ``/`` included. A path that ends in ``/``
    (``/ocpp/``, the CSMS URL alone) names no station. ValueError naming the problem unless
    :func:`~v2gtool.ocpp.payloads.check_station_identity` takes it (the check the bridge makes before
    it connects: an identifierString of at most 48 characters, no ``:``)."""
    segment = path.split("?", 1)[0].rsplit("/", 1)[-1]
    identity = urllib.parse.unquote(segment, errors="replace")  # not UTF-8: U+FFFD, refused below
    if not identity:
        raise ValueError("no station identity at the end of the URL path")
    return check_station_identity(identity)


def _refused(where: str, exc: TypeError | ValueError) -> CallRejected:
    """The CALLERROR (OCPP 2.0.1 part 4 4.3) for a payload field :mod:`~v2gtool.ocpp.payloads` cannot
    read: PropertyConstraintViolation for a value out of range, TypeConstraintViolation for one that
    is not of its type (a number, an integer SoC, a dateTime)."""
    code = "PropertyConstraintViolation" if isinstance(exc, ImplausibleValue) else "TypeConstraintViolation"
    return CallRejected(code, f"{where}: {exc}")


def read_needs(needs: dict[str, Any]) -> VehicleNeeds:
    """A NotifyEVChargingNeeds chargingNeeds (OCPP 2.0.1/2.1 K15) as the fleet uses it, or the
    CALLERROR that refuses it (:func:`_refused`)."""
    try:
        return read_charging_needs(needs)
    except (TypeError, ValueError) as exc:
        raise _refused("chargingNeeds", exc) from None


def read_transaction_event(payload: dict[str, Any]) -> tuple[int, list[Reading]]:
    """The EVSE id (1 without one; an OCPP integer, which the SetChargingProfile of its share carries
    back) and the readings of a TransactionEvent's meterValue list (OCPP 2.0.1 part 2 MeterValueType),
    its timestamp checked too, or the CALLERROR that refuses the event before anything of it is counted."""
    try:
        read_datetime(payload["timestamp"], "timestamp")
        evse_id = int(read_number((payload.get("evse") or {}).get("id", 1), "evse id", 0, INT32_MAX))
        return evse_id, [read_meter_value(meter_value) for meter_value in payload.get("meter_value") or []]
    except (TypeError, ValueError) as exc:
        raise _refused("TransactionEvent", exc) from None


class TransactionLog:
    """The CSMS's durable record of every TransactionEvent, keyed for exactly-once counting."""

    def __init__(self, directory: Path) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self.path = directory / "transactions.jsonl"
            self.seen: set[tuple[str, str, int]] = set()
            if self.path.exists():
                for line in self.path.read_bytes().splitlines():
                    try:
                        raw = json.loads(line)
                        self.seen.add((raw["station"], raw["transaction_id"], int(raw["seq_no"])))
                    except (ValueError, KeyError, TypeError):
                        continue  # a line torn by a crash: that event was not answered, it comes again
            self._file = self.path.open("ab")
        except OSError as exc:
            raise CsmsError(f"state directory {directory}: {exc.strerror}") from None
        self.duplicates = 0

    def is_new(self, station: str, payload: dict[str, Any]) -> bool:
        """Whether the event is not in the log yet (one that is counts as a duplicate)."""
        if self._key(station, payload) in self.seen:
            self.duplicates += 1
            return False
        return True

    def record(self, station: str, payload: dict[str, Any]) -> None:
        """Write a new event down (flushed and synced) before it is applied and answered."""
        key = self._key(station, payload)
        record = {
            "station": station,
            "transaction_id": key[1],
            "seq_no": key[2],
            "event_type": payload["event_type"],
            "trigger_reason": payload["trigger_reason"],
            "timestamp": payload["timestamp"],
            "offline": bool(payload.get("offline", False)),
            "received": timestamp(time.time()),
        }
        self._file.write((json.dumps(record, separators=(",", ":")) + "\n").encode())
        self._file.flush()
        os.fsync(self._file.fileno())
        self.seen.add(key)

    @staticmethod
    def _key(station: str, payload: dict[str, Any]) -> tuple[str, str, int]:
        return (station, str(payload["transaction_info"]["transaction_id"]), int(payload["seq_no"]))

    def close(self) -> None:
        self._file.close()


class _CsmsHandlers(AnswersEveryFrame):
    """What the CSMS answers (mixed into the ``ocpp`` ChargePoint of each station); every frame it
    cannot handle gets its CALLERROR (:class:`~v2gtool.ocpp.rpc_errors.AnswersEveryFrame`)."""

    vpp: Vpp

    def frame_rejected(self, event: FrameRejected) -> None:
        """A refused frame is one event of the aggregator's (one line in ``vpp serve``)."""
        self.vpp.emit(event)

    @rpc.handles("BootNotification")
    def on_boot_notification(self, **_: Any) -> Any:
        return rpc.result(
            self, "BootNotification", current_time=timestamp(time.time()), interval=HEARTBEAT_S, status="Accepted"
        )

    @rpc.handles("Heartbeat")
    def on_heartbeat(self, **_: Any) -> Any:
        return rpc.result(self, "Heartbeat", current_time=timestamp(time.time()))

    @rpc.handles("StatusNotification")
    def on_status_notification(self, **_: Any) -> Any:
        return rpc.result(self, "StatusNotification")

    @rpc.handles("NotifyEVChargingNeeds")
    def on_notify_ev_charging_needs(self, evse_id: int, charging_needs: dict[str, Any], **_: Any) -> Any:
        self.vpp.charging_needs(self.id, evse_id, charging_needs)
        return rpc.result(self, "NotifyEVChargingNeeds", status="Accepted")

    @rpc.handles("TransactionEvent")
    def on_transaction_event(self, **payload: Any) -> Any:
        self.vpp.transaction_event(self.id, payload)
        return rpc.result(self, "TransactionEvent")

    @rpc.handles("Get15118EVCertificate")
    def on_get_15118_ev_certificate(self, **_: Any) -> Any:
        # No mobility operator behind this aggregator: say so (M02.FR.02) rather than invent one.
        return rpc.result(self, "Get15118EVCertificate", status="Failed", exi_response="")

    @rpc.handles("GetCertificateStatus")
    def on_get_certificate_status(self, **_: Any) -> Any:
        return rpc.result(self, "GetCertificateStatus", status="Failed")


@dataclass
class VppConfig:
    state_dir: Path
    period: float = 1.0
    ssl: ssl.SSLContext | None = None
    passwords: dict[str, str] | None = None  # security profile 2: station id -> password
    response_timeout: float = 10.0
    debug: bool = False  # log the traceback of an InternalError answered to a station


@dataclass
class Vpp:
    """The aggregator: connections, the fleet and the control loop."""

    config: VppConfig
    listener: Listener | None = None
    fleet: Fleet = field(default_factory=Fleet)
    peers: dict[str, Any] = field(default_factory=dict)
    log: TransactionLog = field(init=False)
    _profile_ids: dict[str, int] = field(default_factory=dict)
    _sending: dict[tuple[str, int], asyncio.Task[None]] = field(default_factory=dict)  # unanswered profiles
    _early_needs: dict[tuple[str, int], VehicleNeeds] = field(default_factory=dict)
    _wake: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.fleet.period = self.config.period
        self.log = TransactionLog(self.config.state_dir)
        self._request_path = self.config.state_dir / "request.json"
        self._resume_request()

    def _resume_request(self) -> None:
        """A restarted aggregator carries on with the grid request it had (the state directory's
        ``request.json``) rather than leaving the stations on stale shares."""
        try:
            raw = json.loads(self._request_path.read_text())
            power, until = float(raw["power_w"]), float(raw["until"])
        except (OSError, ValueError, KeyError, TypeError):
            return
        now = time.time()
        if until > now:
            self.fleet.dispatch(power, until - now, now)

    # -- from the stations ---------------------------------------------------------------------------
    def charging_needs(self, station: str, evse_id: int, needs: dict[str, Any]) -> None:
        """NotifyEVChargingNeeds (K15); :class:`CallRejected` when the needs cannot be read, and then
        nothing changes."""
        read = read_needs(needs)
        vehicle = self.fleet.vehicles.get((station, evse_id))
        if vehicle is None:  # before its TransactionEvent Started: kept for the transaction
            self._early_needs[(station, evse_id)] = read
            return
        vehicle.update_needs(read)
        self._wake.set()

    def transaction_event(self, station: str, payload: dict[str, Any]) -> None:
        """TransactionEvent (E01-E15): checked, written down, then applied; :class:`CallRejected`
        when it cannot be read, and then it is neither counted nor applied (its retry is new)."""
        if not self.log.is_new(station, payload):
            return
        evse_id, readings = read_transaction_event(payload)
        self.log.record(station, payload)
        now = time.time()
        tx_id = str(payload["transaction_info"]["transaction_id"])
        vehicle = self.fleet.find(station, tx_id)
        if payload["event_type"] == "Started" or vehicle is None:
            if payload["event_type"] == "Ended":
                return
            vehicle = Vehicle(station, evse_id, tx_id)
            self.fleet.leave(now, station, evse_id)
            self.fleet.arrive(vehicle)
            early = self._early_needs.pop(vehicle.key, None)
            if early is not None:
                vehicle.update_needs(early)
        for reading in readings:
            vehicle.meter(reading)
        if payload["event_type"] == "Ended":
            self._early_needs.pop(vehicle.key, None)
            self.fleet.leave(now, station, vehicle.evse_id)
            self._wake.set()
        self.fleet.check_met(now)

    # -- to the stations -----------------------------------------------------------------------------
    def dispatch(self, power: float, duration: float) -> None:
        """A grid request: signed W (negative: the fleet delivers into the grid) for *duration* s.
        Saved first (a restart resumes it), applied only once saved: :class:`CsmsError` otherwise."""
        now = time.time()
        tmp = self._request_path.with_suffix(".tmp")
        try:
            tmp.write_text(json.dumps({"power_w": power, "start": now, "until": now + duration}))
            tmp.replace(self._request_path)
        except OSError as exc:
            raise CsmsError(f"cannot save the grid request in {self._request_path.parent}: {exc.strerror}") from None
        self.fleet.dispatch(power, duration, now)
        self._wake.set()

    def cancel(self) -> None:
        """End the grid request; its saved copy goes first (:class:`CsmsError` when it cannot)."""
        try:
            self._request_path.unlink(missing_ok=True)
        except OSError as exc:
            raise CsmsError(f"cannot remove the grid request {self._request_path}: {exc.strerror}") from None
        self.fleet.cancel()
        self._wake.set()

    async def control_loop(self) -> None:
        """Re-dispatch every period, and at once when a request arrives or a vehicle leaves or refuses
        its share. The shares go out without waiting for the answers (:meth:`_send_shares`), so a slow
        or silent station delays neither the next period nor any other station."""
        try:
            while True:
                self._send_shares()
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.config.period)
        finally:
            for task in self._sending.values():
                task.cancel()

    async def redispatch(self) -> None:
        """Re-dispatch now and wait for the stations' answers to the shares that went out."""
        await asyncio.gather(*self._send_shares())

    def lease(self) -> float:
        """Seconds a share's TxProfile lasts (see the module docstring), whole: the profile's duration
        is an integer."""
        return float(math.ceil(self.config.response_timeout + PROFILE_PERIODS * self.config.period))

    def due(self, vehicle: Vehicle, watts: float, now: float) -> bool:
        """Whether *vehicle*'s share of *watts* goes out now: it moved from the one its station accepted,
        or, while a request runs, the TxProfile it runs ends before the request does and within the
        response timeout and one control period. An idle (0 W) share is renewed only while its profile is
        in force: a vehicle that never had one, or whose idle profile ended, is not sent one."""
        if abs(watts - vehicle.accepted) >= CHANGE_W:
            return True
        request = self.fleet.request
        renew_by = now + self.config.response_timeout + self.config.period
        return (
            request is not None
            and vehicle.accepted_until < min(request.until, renew_by)
            and (watts != 0.0 or vehicle.accepted_until > now)
        )

    def _send_shares(self) -> list[asyncio.Task[None]]:
        """Allocate the fleet and start a SetChargingProfile for every connected vehicle whose share
        is :meth:`due`, unless the one before is still unanswered (one profile in flight per vehicle:
        it goes out once that one is answered or has timed out) or the vehicle is held
        (:meth:`~v2gtool.ocpp.fleet.Vehicle.held`: it is counted at what it runs, K01). The sends
        started."""
        now = time.time()
        allocation = self.fleet.allocate(now)
        self._sending = {key: task for key, task in self._sending.items() if not task.done()}
        vehicles = self.fleet.vehicles
        changed = [
            key
            for key, watts in allocation.items()
            if key[0] in self.peers
            and key not in self._sending
            and not vehicles[key].held(now)
            and self.due(vehicles[key], watts, now)
        ]
        request = self.fleet.request
        until = request.until if request is not None else now + self.config.period
        duration = min(until - now, self.lease())
        for key in changed:
            self._sending[key] = asyncio.create_task(self._send_share(key, allocation[key], now, duration))
        if changed:
            self.emit(
                Dispatched(
                    t=now,
                    request_w=request.power if request else None,
                    allocated_w=sum(allocation.values()),
                    vehicles=len(allocation),
                    changed=len(changed),
                )
            )
        self.fleet.check_met(now)
        return [self._sending[key] for key in changed]

    async def _send_share(self, key: tuple[str, int], watts: float, now: float, duration: float) -> None:
        """One vehicle's share as its TxProfile. Accepted, it is what the vehicle runs until the
        profile ends (:attr:`~v2gtool.ocpp.fleet.Vehicle.accepted`, ``accepted_until``); accepted but
        capped at the charger's maximum (statusInfo reasonCode LimitCapped,
        :func:`~v2gtool.ocpp.payloads.limit_capped`), it runs at that cap, which bounds its capacity
        from then on (:meth:`~v2gtool.ocpp.fleet.Fleet.cap`), and the others share the rest at once.
        Rejected, a CALLERROR or no answer within the response timeout, the vehicle is refused
        (:meth:`~v2gtool.ocpp.fleet.Fleet.refuse`): it keeps running its previous TxProfile (OCPP
        2.0.1 K01), so it is counted at that (or at its metered power) and the others share only the
        rest of the request, at once; so is a capped one whose answer does not say at what."""
        peer = self.peers.get(key[0])
        vehicle = self.fleet.vehicles.get(key)
        if peer is None or vehicle is None:
            return
        if not vehicle.profile_id:  # one id per transaction: a TxProfile with the same id replaces it (K01)
            vehicle.profile_id = self._profile_ids[key[0]] = wrap_int32(self._profile_ids.get(key[0], 0) + 1)
        profile = dispatch_profile(peer.subprotocol, vehicle.profile_id, vehicle.transaction_id, watts, now, duration)
        payload = {"evse_id": key[1], "charging_profile": profile}
        cap: float | None = math.inf
        try:
            res = await peer.call(rpc.make_call(peer, "SetChargingProfile", payload), suppress=False)
            accepted = res.status == "Accepted"
            cap = limit_capped(res.status_info)
        except (TimeoutError, rpc.OCPPError):
            accepted = False
        except (websockets.WebSocketException, OSError):
            return  # the station is going away: held at what it accepted (Fleet.lose)
        if self.fleet.vehicles.get(key) is not vehicle:
            return  # its transaction ended meanwhile
        if accepted:
            vehicle.accepted = watts
            vehicle.accepted_until = now + profile["charging_schedule"][0]["duration"]
            if cap is not None and cap >= abs(watts):
                return  # it runs what it was asked
        if accepted and cap is not None:
            self.fleet.cap(time.time(), key, watts, cap)
        else:
            self.fleet.refuse(time.time(), key)
        self._wake.set()

    # -- connections ---------------------------------------------------------------------------------
    async def serve(self, host: str, port: int) -> Server:
        try:
            return await serve(
                self._connection,
                host,
                port,
                subprotocols=[websockets.Subprotocol(p) for p in rpc.SUBPROTOCOLS],
                process_request=self._admit,
                ssl=self.config.ssl,
            )
        except OSError as exc:
            raise CsmsError(f"cannot listen on {host}:{port}: {exc.strerror}") from None

    def _admit(self, connection: ServerConnection, request: Request) -> Response | None:
        """The websocket handshake: 400 for a URL whose last segment is no station identity
        (:func:`station_identity`); with passwords, security profile 2's HTTP Basic with the decoded
        station id as user (OCPP 2.0.1 part 2 A00.FR.2xx), 401 when it does not match."""
        try:
            station = station_identity(request.path)
        except ValueError as exc:
            return connection.respond(HTTPStatus.BAD_REQUEST, f"{exc}\n")
        if self.config.passwords is None:
            return None
        expected = self.config.passwords.get(station)
        header = request.headers.get("Authorization", "")
        given = ""
        if header.startswith("Basic "):
            try:
                user, _, given = base64.b64decode(header[6:]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                user = ""
            if user != station:
                given = ""
        if expected is None or not hmac.compare_digest(given.encode(), expected.encode()):
            return connection.respond(HTTPStatus.UNAUTHORIZED, "station id or password not accepted\n")
        return None

    async def _connection(self, ws: ServerConnection) -> None:
        station = station_identity(ws.request.path) if ws.request is not None else ""
        try:
            cls = rpc.for_version(ws.subprotocol, _CsmsHandlers)
        except ValueError:
            await ws.close(1002, "no OCPP 2.x subprotocol")
            return
        peer = cls(station, ws, response_timeout=self.config.response_timeout)
        peer.vpp = self
        peer.debug = self.config.debug
        peer.subprotocol = ws.subprotocol
        self.peers[station] = peer
        self.fleet.rejoin(station)
        self.emit(StationConnected(t=time.time(), station=station, subprotocol=str(ws.subprotocol)))
        reason = "closed"
        try:
            await peer.start()
        except websockets.ConnectionClosed as exc:
            reason = f"connection closed ({exc.rcvd.code if exc.rcvd else 'no close frame'})"
        finally:
            if self.peers.get(station) is peer:
                del self.peers[station]
                self.fleet.lose(time.time(), station)
                self._wake.set()
                self.emit(StationLeft(t=time.time(), station=station, reason=reason))

    def emit(self, event: Event) -> None:
        if self.listener is not None:
            self.listener(event)

    # -- the view ------------------------------------------------------------------------------------
    def snapshot(self, horizon: float = 900.0) -> dict[str, Any]:
        """The fleet as JSON: the request, what is delivered, and every vehicle's capacity."""
        now = time.time()
        fleet = self.fleet
        request = fleet.request
        duration = (request.until - now) if request is not None else horizon
        vehicles = sorted(fleet.vehicles.values(), key=lambda v: v.key)
        return {
            "time": now,
            "stations": len(self.peers),
            "request": None
            if request is None
            else {"power_w": request.power, "start": request.start, "until": request.until},
            "dispatched_at": fleet.dispatched_at,
            "met_at": fleet.met_at,
            "power_w": round(sum(v.power for v in vehicles), 1),
            "allocated_w": round(sum(v.allocation for v in vehicles), 1),
            "discharge_capacity_w": round(fleet.capacity(now, max(duration, 1.0)), 1),
            "transaction_events": len(self.log.seen),
            "duplicates": self.log.duplicates,
            "vehicles": [
                {
                    "station": v.station,
                    "evse_id": v.evse_id,
                    "transaction_id": v.transaction_id,
                    "soc": v.soc,
                    "min_soc": v.needs.min_soc if v.needs else None,
                    "power_w": round(v.power, 1),
                    "allocation_w": round(v.allocation, 1),
                    "capacity_w": round(v.discharge_capacity(now, max(duration, 1.0), fleet.period), 1),
                    "remaining_wh": round(v.remaining_wh(), 1),
                    "departure": v.needs.departure if v.needs else None,
                    "measured_at": v.measured_at,
                    "refused": v.refused(now),  # its allocation is what it runs, not a share (K01)
                    "link_lost": v.link_lost,  # held too: what it was last told, until that ends
                }
                for v in vehicles
            ],
        }
