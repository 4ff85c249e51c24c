"""A value the configuration's schema accepts but a command refuses (``[hw] isolation_edition = 2015``)
is an error naming where it was set, as the checks made when the configuration is read name it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from v2gtool.cli.context import AppContext
from v2gtool.cli.hw_common import station_config
from v2gtool.config import Config, load_config
from v2gtool.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def app(config: Config) -> AppContext:
    return AppContext(config, False, False, Console(), Console(stderr=True))


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "v2gtool.toml"
    path.write_text("[hw]\nisolation_edition = 2015\nrated_voltage_v = -3\n")
    return path


def test_a_value_from_the_file_names_the_file(config_file: Path) -> None:
    config = load_config(config_file, environ={"V2GTOOL_HW__ISOLATION_EDITION": "2023"})
    with pytest.raises(ConfigError) as error:
        station_config(app(config))
    assert str(error.value) == f"config file {config_file}: [hw] rated_voltage_v must be positive, got -3.0"


def test_an_override_names_its_environment_variable(config_file: Path) -> None:
    config = load_config(config_file, environ={"V2GTOOL_HW__ISOLATION_EDITION": "2016"})
    with pytest.raises(ConfigError) as error:
        station_config(app(config))
    assert str(error.value) == (
        "environment variable V2GTOOL_HW__ISOLATION_EDITION: [hw] isolation_edition must be 2014 or 2023, "
        "got '2016'"
    )


def test_a_value_set_nowhere_has_no_origin_to_name() -> None:
    error = Config({"hw": {"isolation_edition": "2015"}}).invalid("hw", "isolation_edition", "must be 2014 or 2023")
    assert str(error) == "[hw] isolation_edition must be 2014 or 2023"


def test_isolation_check_names_the_variable_in_one_line_exit_2(tmp_path: Path) -> None:
    empty = tmp_path / "v2gtool.toml"
    empty.write_text("")
    result = subprocess.run(
        [sys.executable, "-m", "v2gtool", "--config", str(empty), "isolation-check"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
        env={**os.environ, "V2GTOOL_HW__ISOLATION_EDITION": "2015"},
    )
    assert result.returncode == 2
    assert result.stderr == (
        "v2gtool: error: environment variable V2GTOOL_HW__ISOLATION_EDITION: [hw] isolation_edition must be "
        "2014 or 2023, got '2015'\n"
    )


def test_a_backend_from_the_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "v2gtool.toml"
    path.write_text('[hw]\nbackend = "gpio"\n')
    result = subprocess.run(
        [sys.executable, "-m", "v2gtool", "--config", str(path), "cp-duty", "read"],
        capture_output=True, text=True, timeout=60, cwd=ROOT,
    )
    assert result.returncode == 2
    assert result.stderr == (
        f"v2gtool: error: config file {path}: [hw] backend must be one of sim, serial, gpiod, got 'gpio'\n"
    )


@pytest.mark.parametrize(
    ("variable", "value", "refused"),
    [
        ("V2GTOOL_HW__SOC_FLOOR_PERCENT", "150", "discharge floor 150.0 % is outside 0..100 %"),
        ("V2GTOOL_HW__INLET_LIMIT_C", "3", "thermal derating needs rated current > minimum >= 0, limit > margin"),
    ],
)
def test_a_value_the_station_refuses_names_its_key_and_origin(
    tmp_path: Path, variable: str, value: str, refused: str
) -> None:
    empty = tmp_path / "v2gtool.toml"
    empty.write_text("")
    config = load_config(empty, environ={variable: value})
    key = variable.removeprefix("V2GTOOL_HW__").lower()
    with pytest.raises(ConfigError) as error:
        station_config(app(config))
    assert str(error.value).startswith(f"environment variable {variable}: [hw] {key} is not valid: {refused}")
