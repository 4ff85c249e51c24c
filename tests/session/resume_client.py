"""A scripted EV for the pause/resume test, run inside the EV's network namespace:
``python -m tests.session.resume_client IFACE``.

Our EVCC (``connect --pause`` / ``--resume``) pauses only after energy transfer and goes through the
whole session again when resumed; this client writes the requests itself to pause before any energy
transfer and to stop a resumed session right after AuthorizationSetup. It finds the SECC by SDP and
makes two TCP connections: (1) a session up to ServiceSelection, then SessionStop Pause;
(2) SessionSetup with that SessionID, then AuthorizationSetup and SessionStop Terminate. It prints
one JSON line per response: connection, message, ResponseCode and SessionID (hex).
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from v2gtool.iso20 import messages
from v2gtool.iso20.values import header
from v2gtool.messages import apphand
from v2gtool.messages import iso20_cm as cm
from v2gtool.net.sdp_transport import discover
from v2gtool.net.v2g_tcp import FrameStream
from v2gtool.sdp import Security

DC_PROTOCOL = apphand.AppProtocolType(ProtocolNamespace="urn:iso:std:iso:15118:-20:DC", VersionNumberMajor=1,
                                      VersionNumberMinor=0, SchemaID=1, Priority=1)


class Connection:
    def __init__(self, number: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.number, self.stream, self.writer = number, FrameStream(reader), writer
        self.session_id = bytes(8)

    async def request(self, name: str, body: Any) -> Any:
        self.writer.write(messages.encode(name, body))
        await self.writer.drain()
        frame = await asyncio.wait_for(self.stream.next(), timeout=10)
        assert frame is not None, f"the SECC closed the connection after {name}"
        res = messages.decode(frame)
        code = getattr(res.body, "ResponseCode", None)
        session = getattr(res.body, "Header", None)
        if session is not None:
            self.session_id = session.SessionID
        print(json.dumps({"connection": self.number, "message": res.name,
                          "code": None if code is None else code.value, "session_id": self.session_id.hex()}),
              flush=True)
        return res.body

    async def set_up(self, session_id: bytes) -> None:
        await self.request("supportedAppProtocolReq", apphand.supportedAppProtocolReqType(AppProtocol=(DC_PROTOCOL,)))
        await self.request("SessionSetupReq", cm.SessionSetupReqType(Header=header(session_id), EVCCID="WMI"))

    async def stop(self, how: cm.chargingSessionType) -> None:
        await self.request("SessionStopReq", cm.SessionStopReqType(Header=header(self.session_id), ChargingSession=how))
        self.writer.close()
        await self.writer.wait_closed()


async def main(iface: str) -> None:
    found = await discover(iface, Security.NO_TLS)
    where = {"host": f"{found.response.address}%{iface}", "port": found.response.port}

    first = Connection(1, *await asyncio.open_connection(**where))
    await first.set_up(bytes(8))
    h = header(first.session_id)
    await first.request("AuthorizationSetupReq", cm.AuthorizationSetupReqType(Header=h))
    await first.request("AuthorizationReq", cm.AuthorizationReqType(
        Header=h, SelectedAuthorizationService=cm.authorizationType.EIM,
        EIM_AReqAuthorizationMode=cm.EIM_AReqAuthorizationModeType()))
    await first.request("ServiceDiscoveryReq", cm.ServiceDiscoveryReqType(Header=h))
    await first.request("ServiceDetailReq", cm.ServiceDetailReqType(Header=h, ServiceID=6))
    await first.request("ServiceSelectionReq", cm.ServiceSelectionReqType(
        Header=h, SelectedEnergyTransferService=cm.SelectedServiceType(ServiceID=6, ParameterSetID=2)))
    await first.stop(cm.chargingSessionType.Pause)
    paused = first.session_id

    second = Connection(2, *await asyncio.open_connection(**where))
    await second.set_up(paused)
    await second.request("AuthorizationSetupReq", cm.AuthorizationSetupReqType(Header=header(second.session_id)))
    await second.stop(cm.chargingSessionType.Terminate)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
