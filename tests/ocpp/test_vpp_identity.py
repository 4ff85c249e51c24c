"""The station identity in the websocket URL (OCPP 2.0.1 part 4 3.2): the last path segment,
percent-decoded as a whole, an identifierString of at most 48 characters; anything else is refused
at the handshake with one clear line, and the passwords of security profile 2 match the decoded id."""

from __future__ import annotations

import asyncio
import base64
import urllib.parse
from pathlib import Path

import pytest
import websockets
from websockets.asyncio.client import connect

from v2gtool.ocpp.csms import StationConnected, Vpp, VppConfig, station_identity
from v2gtool.ocpp.payloads import check_station_identity
from v2gtool.ocpp.station import PATH_SAFE
from v2gtool.session.events import Event


@pytest.mark.parametrize(
    ("path", "identity"),
    [
        ("/ocpp/CS-01", "CS-01"),
        ("/ocpp/CS%7C01", "CS|01"),
        ("/ocpp/fleet%40depot.A*1", "fleet@depot.A*1"),
        ("/ocpp/CS01?x=1", "CS01"),
        ("/" + "x" * 48, "x" * 48),
    ],
)
def test_the_identity_is_the_whole_decoded_last_segment(path: str, identity: str) -> None:
    assert station_identity(path) == identity


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/ocpp/a%2Fb", "'/'"),  # decoded, not split: the id would be "b" otherwise
        ("/ocpp/a%3Ab", "':'"),
        ("/ocpp/%E2%82%AC1", "'€'"),
        ("/ocpp/%FF", "'\ufffd'"),
        ("/ocpp/a%20b", "' '"),
        ("/" + "x" * 49, "49 characters: at most 48"),
        ("/", "no station identity"),
        ("/ocpp/", "no station identity"),  # the CSMS URL alone, not a station named "ocpp"
        ("/ocpp/CS01/", "no station identity"),
    ],
)
def test_an_identity_that_is_no_identifier_string_is_refused(path: str, error: str) -> None:
    with pytest.raises(ValueError, match="station identity") as refused:
        station_identity(path)
    assert error in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize(
    "identity", ["CS-01", "CS|01", "fleet@depot.A*1", "a=b+c_d", "x" * 48, "CS:1", "a:", "x" * 49, "a b", "é", "a/b"]
)
def test_the_bridge_and_the_csms_take_the_same_identities(identity: str) -> None:
    """One validator on both sides: an identity the bridge accepts (``ocpp-bridge --station-id``) is
    the one the CSMS reads from the URL the bridge builds, and one it refuses the CSMS refuses too; a
    ``:`` (the HTTP Basic separator, RFC 7617) is refused by both, with or without passwords."""
    path = "/ocpp/" + urllib.parse.quote(identity, safe=PATH_SAFE)
    try:
        bridge: str | None = check_station_identity(identity)
    except ValueError as exc:
        assert "is not an OCPP station identity" in str(exc) and "\n" not in str(exc)
        bridge = None
    try:
        csms: str | None = station_identity(path)
    except ValueError:
        csms = None
    assert bridge == csms
    assert (bridge is None) == (":" in identity or identity in ("x" * 49, "a b", "é", "a/b"))


def test_the_handshake_refuses_a_bad_identity_and_passwords_match_the_decoded_one(tmp_path: Path) -> None:
    events: list[Event] = []

    async def scenario() -> None:
        vpp = Vpp(VppConfig(tmp_path / "state", passwords={"CS|01": "secret"}), listener=events.append)
        server = await vpp.serve("127.0.0.1", 0)
        base = f"ws://127.0.0.1:{next(iter(server.sockets)).getsockname()[1]}/ocpp"
        ocpp = [websockets.Subprotocol("ocpp2.0.1")]
        basic = {"Authorization": "Basic " + base64.b64encode(b"CS|01:secret").decode()}
        try:
            with pytest.raises(websockets.InvalidStatus) as refused:
                await connect(f"{base}/a%2Fb", subprotocols=ocpp, additional_headers=basic, proxy=None)
            assert refused.value.response.status_code == 400
            assert b"'/'" in refused.value.response.body
            ws = await connect(f"{base}/CS%7C01", subprotocols=ocpp, additional_headers=basic, proxy=None)
            await asyncio.sleep(0.1)
            assert list(vpp.peers) == ["CS|01"]
            await ws.close()
        finally:
            server.close()
            await server.wait_closed()
            vpp.log.close()

    asyncio.run(scenario())
    assert [e.station for e in events if isinstance(e, StationConnected)] == ["CS|01"]
