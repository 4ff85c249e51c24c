"""Two clocks in the engines: Unix time on the wire (Header TimeStamp, TimeAnchor, MeterTimestamp,
ISO 15118-20 8.3.5.3.1) and the engines' own clock for the timers (V2G_SECC_Sequence_Timeout,
Table 215), which a simulated plant advances in jumps."""

from __future__ import annotations

import time

from tests.iso20.harness import Plant, run
from tests.iso20.test_power_limits import CHARGER, VEHICLE
from v2gtool.iso20.evcc import Evcc, EvccConfig
from v2gtool.iso20.events import SessionEnded
from v2gtool.iso20.secc import Secc, SeccConfig

EPOCH = 1_750_000_000.0


def test_timestamps_and_time_anchors_are_unix_seconds_on_the_epoch() -> None:
    plant = Plant(CHARGER, VEHICLE)
    evcc = Evcc(EvccConfig(duration=2.0, epoch=EPOCH), plant.vehicle)
    exchange = run(evcc, Secc(SeccConfig(epoch=EPOCH, metering_confirmation_interval=1.0), plant, 0.0))
    stamped = [(t, name, body) for t, name, body in exchange.messages if getattr(body, "Header", None)]
    assert len(stamped) > 20
    assert all(body.Header.TimeStamp == int(EPOCH + t) for t, _, body in stamped)
    (schedule,) = [(t, b) for t, name, b in exchange.messages if name == "ScheduleExchangeRes"]
    t, body = schedule
    (tuple_,) = body.Scheduled_SEResControlMode.ScheduleTuple
    assert tuple_.ChargingSchedule.PowerSchedule.TimeAnchor == int(EPOCH + t)
    (start, *_) = [(t, b) for t, name, b in exchange.messages if name == "PowerDeliveryReq"]
    assert start[1].EVPowerProfile.TimeAnchor == int(EPOCH + start[0])
    meters = [(t, b.MeterInfo) for t, name, b in exchange.messages if name == "DC_ChargeLoopRes" and b.MeterInfo]
    assert meters and all(info.MeterTimestamp == int(EPOCH + t) for t, info in meters)


def test_without_an_epoch_every_message_carries_the_wall_clock_now() -> None:
    # A real link (serve, connect): the engines' clock starts far from 0 and runs faster than real
    # time (serve --speed, a cable check's simulated seconds), here 30 s of it in a few milliseconds;
    # each message goes out when it is made, so its TimeStamp is the wall clock's present time.
    plant = Plant(CHARGER, VEHICLE)
    before = int(time.time())
    secc = Secc(SeccConfig(), plant, 5_000.0)
    evcc = Evcc(EvccConfig(duration=30.0), plant.vehicle)
    exchange = run(evcc, secc, start=5_000.0)
    after = int(time.time())
    assert exchange.messages[-1][0] > 5_030.0
    stamps = [body.Header.TimeStamp for _, _, body in exchange.messages if getattr(body, "Header", None)]
    assert stamps and all(before <= s <= after for s in stamps)


def test_the_secc_sequence_timeout_runs_in_standby() -> None:
    # The EV stays silent in Standby 3000 s on the plant's clock: the SECC's next request must come
    # within V2G_SECC_Sequence_Timeout (60 s), so the late PowerDelivery Start ends the session.
    plant = Plant(CHARGER, VEHICLE)
    evcc = Evcc(EvccConfig(duration=10.0, standby_at=1.0, standby_for=3_000.0), plant.vehicle)
    secc = Secc(SeccConfig(), plant, 0.0)
    exchange = run(evcc, secc)
    (ended,) = [e for e in exchange.events if isinstance(e, SessionEnded) and e.role == "SECC"]
    assert not ended.ok and "V2G_SECC_Sequence_Timeout" in ended.reason
    assert [name for _, name, _ in exchange.messages][-1] == "PowerDeliveryReq"  # left unanswered
    assert plant.current == 0.0  # the charger was stopped


def test_a_standby_within_the_sequence_timeout_resumes() -> None:
    plant = Plant(CHARGER, VEHICLE)
    evcc = Evcc(EvccConfig(duration=10.0, standby_at=1.0, standby_for=59.0), plant.vehicle)
    run(evcc, Secc(SeccConfig(), plant, 0.0))
    assert evcc.ok, evcc.end_reason
