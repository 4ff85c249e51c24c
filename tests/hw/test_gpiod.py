"""The gpiod backend: debouncing and the contactor/e-stop mapping on the station's (virtual) clock,
and the real libgpiod path against the kernel's gpio-sim where the kernel has it."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from v2gtool.config import Config
from v2gtool.errors import ConfigError
from v2gtool.hw.cp import CpState
from v2gtool.hw.gpiod import Debouncer, GpioLines, Line, gpiod_hardware
from v2gtool.hw.interfaces import Pole
from v2gtool.hw.interlock import Condition, ContactorPhase
from v2gtool.hw.isolation import Edition, IsolationProfile
from v2gtool.hw.realtime import MonotonicClock
from v2gtool.hw.sim import SimClock
from v2gtool.hw.station import Station, StationConfig

HW = {
    "gpio_chip": "/dev/gpiochip-test",
    "k1_coil": "K1_COIL",
    "k2_coil": "K2_COIL",
    "k1_feedback": "K1_AUX",
    "k2_feedback": "3",
    "estop": "ESTOP",
    "active_low": ["ESTOP"],
    "debounce_ms": 10,
}


class RelayBoard:
    """A test double of the GPIO lines: relays whose auxiliary contacts follow the coils."""

    def __init__(self, clock: SimClock, operate_s: float = 0.02) -> None:
        self.levels: dict[Line, bool] = {
            "K1_COIL": False,
            "K2_COIL": False,
            "K1_AUX": False,
            3: False,
            "ESTOP": False,
        }
        self.welded = False
        self._clock, self._operate_s, self._changed = clock, operate_s, 0.0
        clock.attach(self._step)

    def read(self, line: Line) -> bool:
        return self.levels[line]

    def write(self, line: Line, active: bool) -> None:
        self.levels[line] = active
        self._changed = self._clock.now()

    def _step(self, _dt: float) -> None:
        if self._clock.now() - self._changed >= self._operate_s:
            self.levels["K1_AUX"] = self.levels["K1_COIL"] or self.welded
            self.levels[3] = self.levels["K2_COIL"]


def test_debouncer_needs_a_stable_level() -> None:
    bounce = Debouncer(0.010, initial=False)
    assert not bounce.update(0.000, True)
    assert not bounce.update(0.004, False)  # bounce: restarts the wait
    assert not bounce.update(0.005, True)
    assert not bounce.update(0.014, True)
    assert bounce.update(0.016, True)
    assert bounce.update(0.017, False)  # a single glitch does not count
    assert bounce.update(0.020, True)


def test_config_names_offsets_and_errors() -> None:
    lines = GpioLines.from_config(Config({"hw": HW}))
    assert lines.feedback == {Pole.K1: "K1_AUX", Pole.K2: 3}
    assert lines.inputs == ("K1_AUX", 3, "ESTOP") and lines.debounce_s == pytest.approx(0.01)
    with pytest.raises(ConfigError, match="needs \\[hw\\] k1_coil"):
        GpioLines.from_config(Config({"hw": {k: v for k, v in HW.items() if k != "k1_coil"}}))
    with pytest.raises(ConfigError, match="debounce_ms must not be negative"):
        GpioLines.from_config(Config({"hw": {**HW, "debounce_ms": -1}}))


def station_on(board: RelayBoard, clock: SimClock) -> Station:
    hw = gpiod_hardware(Config({"hw": HW}), clock, lines=board)
    return Station(hw, StationConfig(IsolationProfile(Edition.IEC_61851_23_2023, 920.0)))


def test_contactors_and_estop_through_the_interlock() -> None:
    clock = SimClock()
    board = RelayBoard(clock)
    station = station_on(board, clock)
    # No Control Pilot on this backend: the interlock refuses to close.
    assert station.request_close().condition is Condition.CP_NOT_C_OR_D
    assert not board.levels["K1_COIL"]
    # Fed a CP state (e.g. by the session engine), it closes; debounced feedback lags 10 ms.
    station.interlock.on_cp_state(clock.now(), CpState.C)
    t0 = clock.now()
    assert station.request_close().allowed and board.levels["K1_COIL"] and board.levels["K2_COIL"]
    assert station.wait_for(lambda: station.interlock.phase is ContactorPhase.CLOSED, 1.0)
    assert clock.now() - t0 == pytest.approx(0.020 + 0.010, abs=0.002)
    board.levels["ESTOP"] = True  # pressed (the level as the request reports it)
    station.run(0.2)
    assert not board.levels["K1_COIL"] and station.interlock.phase is ContactorPhase.OPEN
    assert [e.name for e in station.events][-3:] == [
        "InterlockTripped",
        "ContactorsOpening",
        "ContactorsOpened",
    ]


def test_weld_on_gpio_latches() -> None:
    clock = SimClock()
    board = RelayBoard(clock)
    board.welded = True
    board.levels["K1_AUX"] = True  # found closed at start
    station = station_on(board, clock)
    station.run(0.3)
    assert station.interlock.stuck is not None and station.interlock.stuck.pole is Pole.K1


# -- the real libgpiod path, against the kernel's gpio-sim -----------------------------------------------

CONFIGFS = Path("/sys/kernel/config/gpio-sim")
NAMES = ["K1_COIL", "K2_COIL", "K1_AUX", "K2_AUX", "ESTOP"]


@pytest.fixture
def gpio_sim() -> Iterator[tuple[str, Path]]:
    if not CONFIGFS.is_dir():
        pytest.skip(
            "kernel gpio-sim unavailable: /sys/kernel/config/gpio-sim is missing "
            "(needs CONFIG_GPIO_SIM, `modprobe gpio-sim` and configfs mounted on /sys/kernel/config)"
        )
    pytest.importorskip("gpiod", reason="the gpiod package is not installed (pip install 'v2gtool[gpio]')")
    dev = CONFIGFS / f"v2gtool-hw-{os.getpid()}"
    bank = dev / "bank0"
    bank.mkdir(parents=True)
    try:
        (bank / "num_lines").write_text(str(len(NAMES)))
        for offset, name in enumerate(NAMES):
            (bank / f"line{offset}").mkdir()
            (bank / f"line{offset}" / "name").write_text(name)
        (dev / "live").write_text("1")
        chip = (bank / "chip_name").read_text().strip()
        sysfs = Path("/sys/devices/platform") / (dev / "dev_name").read_text().strip() / chip
        yield f"/dev/{chip}", sysfs
    finally:
        if (dev / "live").exists():
            (dev / "live").write_text("0")
        for offset in range(len(NAMES)):
            if (bank / f"line{offset}").exists():
                (bank / f"line{offset}").rmdir()
        bank.rmdir()
        dev.rmdir()


def test_real_gpiod_against_gpio_sim(gpio_sim: tuple[str, Path]) -> None:
    chip, sysfs = gpio_sim
    config = Config({"hw": {**HW, "gpio_chip": chip, "k2_feedback": "K2_AUX", "active_low": []}})
    hw = gpiod_hardware(config, MonotonicClock())
    assert hw.contactors is not None and hw.emergency_stop is not None
    hw.contactors.drive(True)
    assert (sysfs / "sim_gpio0" / "value").read_text().strip() == "1"
    assert (sysfs / "sim_gpio1" / "value").read_text().strip() == "1"
    for offset in (2, 3):
        (sysfs / f"sim_gpio{offset}" / "pull").write_text("pull-up")
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and not all(hw.contactors.feedback().values()):
        time.sleep(0.002)
    assert hw.contactors.feedback() == {Pole.K1: True, Pole.K2: True}
    hw.contactors.drive(False)
    assert (sysfs / "sim_gpio0" / "value").read_text().strip() == "0"
