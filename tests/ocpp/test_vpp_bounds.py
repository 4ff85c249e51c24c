"""Grid requests within bounds (a usage error naming the option, exit 2; HTTP 400 in one line),
SetChargingProfile integers within OCPP's 32 bits whatever the request, and ``vpp`` lines that stay
one line each into a pipe, however long."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from tests.ocpp.test_vpp_dispatch import plant, until
from tests.ocpp.wire import over_the_wire
from v2gtool.cli import vpp as vpp_cli
from v2gtool.cli.context import AppContext
from v2gtool.cli.main import cli
from v2gtool.cli.vpp import _printer
from v2gtool.cli.vpp import _serve as vpp_serve
from v2gtool.config import Config
from v2gtool.ocpp.control_api import _HttpError, parse_dispatch
from v2gtool.ocpp.csms import CsmsError, Dispatched, StationConnected, StationLeft, Vpp, VppConfig
from v2gtool.ocpp.payloads import INT32_MAX, OCPP21, OCPP201, dispatch_profile, wrap_int32
from v2gtool.ocpp.rpc_errors import CallRejected


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b'{"power_kw": 1e300}', "power_kw must be finite, within ±1000000, not 1e+300"),
        (b'{"power_kw": -1000000.5}', "power_kw must be finite, within ±1000000, not -1e+06"),
        (b'{"power_kw": 5, "duration_s": 1e300}', "duration_s must be over 0 and at most 604800, not 1e+300"),
        (b'{"power_kw": 5, "duration_s": 604801}', "duration_s must be over 0 and at most 604800, not 604801"),
    ],
)
def test_an_absurd_request_is_refused_in_one_line(body: bytes, error: str) -> None:
    with pytest.raises(_HttpError) as refused:
        parse_dispatch(body)
    assert refused.value.status == 400 and str(refused.value) == error


def test_the_largest_request_is_taken() -> None:
    assert parse_dispatch(b'{"power_kw": -1000000, "duration_s": 604800}') == (1e9, 604800.0)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["dispatch", "--power-kw", "1e300"], "--power-kw"),
        (["dispatch", "--power-kw", "-1000001"], "--power-kw"),
        (["dispatch", "--power-kw", "5", "--duration", "1e300"], "--duration"),
        (["serve", "--dispatch-kw", "1e300"], "--dispatch-kw"),
        (["serve", "--dispatch-kw", "5", "--dispatch-duration", "604801"], "--dispatch-duration"),
    ],
)
def test_the_commands_refuse_an_absurd_request_as_a_usage_error(
    args: list[str], option: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def reached(*_: object) -> None:
        raise AssertionError("the request went out")

    monkeypatch.setattr(vpp_cli, "_request", reached)  # refused before anything is sent or served
    monkeypatch.setattr(vpp_cli, "_serve", reached)
    result = CliRunner().invoke(cli, ["vpp", *args])
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert result.exit_code == 2 and len(errors) == 1 and f"'{option}'" in errors[0] and "range" in errors[0]


@pytest.mark.parametrize("subprotocol", [OCPP201, OCPP21])
def test_a_profile_never_carries_an_integer_beyond_32_bits(subprotocol: str) -> None:
    profile = dispatch_profile(subprotocol, wrap_int32(INT32_MAX + 1), "tx", -5000.0, 1.9e9, 1e300)
    assert profile["id"] == 1 and profile["charging_schedule"][0]["duration"] == INT32_MAX
    over_the_wire("SetChargingProfile", {"evse_id": 1, "charging_profile": profile}, subprotocol)


def test_profile_ids_start_again_at_one_past_the_top(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with plant(tmp_path, {"a": "Accepted"}) as (vpp, stations):
            vpp._profile_ids["a"] = INT32_MAX
            vpp.dispatch(-5000.0, 600.0)
            await until(lambda: stations["a"].profiles, 10.0)
            assert vpp._profile_ids["a"] == 1

    asyncio.run(scenario())


def test_the_aggregators_lines_stay_whole_in_a_narrow_pipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    out, err = io.StringIO(), io.StringIO()
    app = AppContext(Config(), False, False, Console(file=out, width=40), Console(file=err, width=40))
    show = _printer(app, as_json=False)
    station = "SIM-PARK-WITH-A-RATHER-LONG-NAME-0001"
    show(StationConnected(t=0.0, station=station, subprotocol="ocpp2.0.1"))
    show(StationLeft(t=1.0, station=station, reason="connection closed (no close frame)"))
    show(Dispatched(t=2.0, request_w=-200_000.0, allocated_w=-199_999.9, vehicles=100, changed=100))

    async def broken(self: Vpp) -> None:
        raise CsmsError("stop")

    monkeypatch.setattr(Vpp, "control_loop", broken)
    serving = vpp_serve(VppConfig(state_dir=tmp_path), "127.0.0.1", 0, "127.0.0.1", 0, None, 900, show, app, False)
    with pytest.raises(CsmsError):
        asyncio.run(asyncio.wait_for(serving, 30))
    lines = out.getvalue().splitlines()
    assert [line.split(" ", 1)[0] for line in lines] == ["+", "-", "dispatch:", "OCPP"], lines
    assert lines[:3] == [
        f"+ {station} (ocpp2.0.1)",
        f"- {station}: connection closed (no close frame)",
        "dispatch: -200.0 kW over 100 vehicles (100 changed)",
    ]


@pytest.mark.parametrize("evse_id", [INT32_MAX + 1, -1])
def test_a_transaction_on_an_evse_id_beyond_32_bits_is_refused_before_it_counts(tmp_path: Path, evse_id: int) -> None:
    """Its share's SetChargingProfile would carry that id back to the station."""
    vpp = Vpp(VppConfig(tmp_path / "state"))
    started = {"event_type": "Started", "timestamp": "2027-01-01T00:00:00Z", "trigger_reason": "CablePluggedIn",
               "seq_no": 0, "transaction_info": {"transaction_id": "tx"}, "evse": {"id": evse_id}}  # fmt: skip
    try:
        with pytest.raises(CallRejected) as refused:
            vpp.transaction_event("cs", started)
        assert refused.value.code == "PropertyConstraintViolation" and "evse id" in refused.value.reason
        assert not vpp.log.seen and not vpp.fleet.vehicles
        vpp.transaction_event("cs", {**started, "evse": {"id": INT32_MAX}})
        assert list(vpp.fleet.vehicles) == [("cs", INT32_MAX)]
    finally:
        vpp.log.close()
