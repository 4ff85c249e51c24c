"""Dissection of V2G captures: SLAC MMEs, SDP, TCP, TLS, V2GTP and EXI, into typed records.

:class:`Dissector` is sans-IO: :meth:`Dissector.packet` takes one captured packet and returns the
records it yields; :meth:`Dissector.finish` reports what the end of the capture leaves open. The EXI
schema set of a message comes from the supportedAppProtocol exchange of its TCP connection (the
SchemaID of the Res names an AppProtocol entry of the Req; ISO 15118-2 clause 8.2.2.4.3) and, in
ISO 15118-20, from the V2GTP payload type (Table 12). Decoding uses the project's own codec.

Nearly every packet of a V2G capture is the next in-order segment of a known TCP direction, in an
untagged Ethernet II / IPv6 frame (ISO 15118 and DIN 70121 communicate over IPv6 only). Those take
a shortcut: one unpack of the frame, a lookup by the endpoints' wire bytes and the V2GTP frames cut
straight from the segment. Every other packet takes the general path through the layer parsers and
the TCP reassembler, which stays the reference: both yield the same records (tests/pcap/test_in_order.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from v2gtool import v2gtp
from v2gtool.errors import V2GToolError
from v2gtool.exi import api
from v2gtool.pcap import homeplug
from v2gtool.pcap.link import (
    ETHERTYPE_HOMEPLUG_AV,
    ETHERTYPE_IPV4,
    ETHERTYPE_IPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    LINKTYPE_ETHERNET,
    PlainTCPFrame,
    ip_packet,
    link_frame,
    plain_tcp_frame,
    tcp_segment,
    udp_datagram,
)
from v2gtool.pcap.reader import CapturedPacket
from v2gtool.pcap.records import (
    EVCC,
    SECC,
    ConnectionEnd,
    Frame,
    KeyDisclosed,
    ProtocolError,
    SdpMessage,
    SlacMessage,
    TLSSession,
    TraceRecord,
    V2GMessage,
)
from v2gtool.pcap.sdp import SDP_PORT, sdp_fields
from v2gtool.pcap.tcp import (
    CLIENT_TO_SERVER,
    Endpoint,
    Flow,
    StreamClosed,
    StreamData,
    StreamEvent,
    StreamGap,
    StreamOpened,
    StreamShutdown,
    TCPReassembler,
)
from v2gtool.pcap.tls import ALERT_DESCRIPTIONS, Alert, HandshakeSeen, KeyLog, Plaintext, TLSError, TLSOutput, TLSStream

# The schema set of a negotiated AppProtocol namespace (ISO 15118-2 Table 107 ff.; -20 clause 8.3).
PROTOCOL_OF_NAMESPACE: dict[str, str] = {
    "urn:din:70121:2012:MsgDef": "din",
    "urn:iso:15118:2:2013:MsgDef": "iso2",
    "urn:iso:std:iso:15118:-20:DC": "iso20",
    "urn:iso:std:iso:15118:-20:AC": "iso20",
    "urn:iso:std:iso:15118:-20:WPT": "iso20",
    "urn:iso:std:iso:15118:-20:ACDP": "iso20",
}
_TLS_RECORD_TYPES = (20, 21, 22, 23)
_ALERT_CLOSE_NOTIFY = 0
# Directions remembered for the in-order path; beyond this, those of closed connections are forgotten.
_MAX_FLOWS = 4096


@dataclass(slots=True)
class _V2GTPStream:
    """V2GTP framing of one direction that can resynchronise after a gap or a bad header.

    ``v2gtp.FrameReader`` stops at the first bad header; a capture must go on, so this keeps the
    buffer itself and, after an error, looks for the next plausible header.
    """

    buffer: bytes = b""  # the start of a frame still incomplete
    lost: bool = False

    def feed(self, data: bytes) -> tuple[list[tuple[int, bytes]], str | None]:
        """The ``(payload type, payload)`` of every frame *data* completes, and the first header error.

        Frames are cut from the bytes at hand; only an incomplete tail is kept for the next segment,
        so the usual segment of whole frames is never copied into a buffer.
        """
        if self.buffer:
            data = self.buffer + data
        frames: list[tuple[int, bytes]] = []
        error: str | None = None
        pos = 0
        while len(data) - pos >= v2gtp.HEADER_LENGTH:
            if self.lost:
                pos = self._resync(data, pos)
                if self.lost:
                    break
                continue
            try:
                payload_type, length = v2gtp.parse_header(data, offset=pos)
            except v2gtp.V2GTPError as exc:
                error = error or str(exc)
                self.lost = True
                pos += 1
                continue
            end = pos + v2gtp.HEADER_LENGTH + length
            if len(data) < end:
                break
            frames.append((payload_type, data[pos + v2gtp.HEADER_LENGTH:end]))
            pos = end
        self.buffer = data[pos:]
        return frames, error

    def _resync(self, data: bytes, pos: int) -> int:
        """Where the next version/inverse pair starts (no longer lost), or the last byte (still lost)."""
        start = data.find(b"\x01\xfe", pos)
        if start < 0:
            return max(pos, len(data) - 1)
        self.lost = False
        return start

    def gap(self) -> None:
        self.buffer = b""
        self.lost = True

    def incomplete(self) -> str | None:
        """What an end of the stream leaves unframed: the start of a frame its bytes never completed.

        Bytes skipped while resynchronising are not a frame; the header of a buffered start was
        checked when it was read (:meth:`feed` keeps a tail only before a valid header or a short one).
        """
        if self.lost or not self.buffer:
            return None
        if len(self.buffer) < v2gtp.HEADER_LENGTH:
            return f"incomplete V2GTP header: {len(self.buffer)} of {v2gtp.HEADER_LENGTH} bytes"
        length = int.from_bytes(self.buffer[4:8], "big")
        return f"incomplete V2GTP frame: {len(self.buffer)} of {v2gtp.HEADER_LENGTH + length} bytes"


@dataclass(slots=True)
class _Connection:
    """What the dissector knows of one TCP connection."""

    index: int
    client: Endpoint
    server: Endpoint
    kind: str | None = None  # "tls", "v2gtp", "other" (not V2G) or "broken" once its first bytes are seen
    tls: TLSStream | None = None
    framing: tuple[_V2GTPStream, _V2GTPStream] = field(default_factory=lambda: (_V2GTPStream(), _V2GTPStream()))
    app_protocols: dict[int, str] = field(default_factory=dict)  # SchemaID -> ProtocolNamespace of the Req
    protocol: str | None = None  # "iso2", "din" or "iso20" once the Res selected one (or guessed without it)
    handshake_done: bool = False
    alerted: bool = False  # a TLS alert (not close_notify) was reported
    session: TLSSession | None = None  # held from the ServerHello until whether it was decrypted is known
    session_reported: bool = False
    ended: bool = False  # its ConnectionEnd was reported


@dataclass(slots=True)
class _InOrderFlow:
    """A direction of a connection whose in-order segments take the shortcut of :meth:`Dissector._in_order`."""

    tcp: Flow
    connection: _Connection
    frame_fields: dict[str, Any]  # of the Frame the general path built; t, frame and length are per packet


class Dissector:
    """Turns captured packets into :mod:`v2gtool.pcap.records`, in constant memory per connection."""

    def __init__(self, keylog: KeyLog | None = None) -> None:
        self.keylog = keylog if keylog is not None else KeyLog()
        self._tcp = TCPReassembler()
        self._connections: dict[int, _Connection] = {}
        self.last_frame = 0
        self.last_time = 0.0
        self._keylog_generation = self.keylog.generation
        self._secc_ports: set[int] = set()  # TCP ports SDP responses announced
        self._flows: dict[bytes, _InOrderFlow] = {}  # by PlainTCPFrame.endpoints
        self._flow_limit = _MAX_FLOWS

    def packet(self, pkt: CapturedPacket) -> list[TraceRecord]:
        """Dissect one packet: its Frame record first, then the messages it completes."""
        number, t, linktype, data, _ = pkt
        self.last_frame, self.last_time = number, t
        out: list[TraceRecord] = []
        plain = plain_tcp_frame(data) if linktype == LINKTYPE_ETHERNET else None
        try:
            frame = self._in_order(number, t, data, plain, out) if plain is not None else None
            if frame is None:
                frame = self._dissect(pkt, plain, out)
        except V2GToolError as exc:
            out.append(ProtocolError(t=t, frame=number, layer="frame", message=str(exc)))
            frame = Frame(t=t, frame=number, length=len(data), protocols="", source=None, destination=None, info="")
        if self.keylog.generation != self._keylog_generation:
            self._keylog_generation = self.keylog.generation
            self._retry_tls(pkt, out)
        return [frame, *out]

    def finish(self) -> list[TraceRecord]:
        """End of capture: close every TCP stream and report records still waiting for a TLS secret."""
        out: list[TraceRecord] = []
        for event in self._tcp.close(self.last_frame, self.last_time):
            self._stream_event(event, out)
        return out

    def _in_order(self, number: int, t: float, data: bytes, plain: PlainTCPFrame,
                  out: list[TraceRecord]) -> Frame | None:
        """The shortcut for the common packet: a plain TCP frame (:func:`plain_tcp_frame`) continuing a
        known direction in order (:meth:`TCPReassembler.in_order`). It yields what :meth:`_dissect`
        would, without text addresses, stream events or intermediate payload copies; None when the
        packet is anything else, before any state changed."""
        endpoints, seq, flags, start, end = plain
        flow = self._flows.get(endpoints)
        if flow is None or not TCPReassembler.in_order(flow.tcp, seq, flags, end - start):
            return None
        if end > start:
            self._stream_bytes(flow.connection, flow.tcp.direction, data[start:end], number, t, out)
        fields = flow.frame_fields.copy()
        fields["t"], fields["frame"], fields["length"] = t, number, len(data)
        return Frame.of_fields(fields)

    def _remember_flow(self, plain: PlainTCPFrame, source: Endpoint, destination: Endpoint, frame: Frame) -> None:
        """Let the next in-order segments of this direction take :meth:`_in_order`; *frame* is the Frame
        record of this segment, whose fields theirs share."""
        tcp = self._tcp.flow(source, destination)
        conn = self._connections.get(tcp.connection.index) if tcp is not None else None
        if tcp is None or conn is None:
            return
        if len(self._flows) >= self._flow_limit:  # forget closed connections; grow only with open ones
            self._flows = {key: flow for key, flow in self._flows.items() if not flow.tcp.connection.closed}
            self._flow_limit = max(_MAX_FLOWS, 2 * len(self._flows))
        self._flows[plain.endpoints] = _InOrderFlow(tcp, conn, vars(frame).copy())

    def _dissect(self, pkt: CapturedPacket, plain: PlainTCPFrame | None, out: list[TraceRecord]) -> Frame:
        link = link_frame(pkt.linktype, pkt.data)
        t, number = pkt.timestamp, pkt.number
        vlan = link.vlan[-1] if link.vlan else None
        if link.ethertype == ETHERTYPE_HOMEPLUG_AV:
            mme = homeplug.dissect_mme(link.payload, link.destination, link.source)
            out.append(SlacMessage(t=t, frame=number, source=link.source, destination=link.destination, mme=mme,
                                   vlan=vlan))
            return Frame(t=t, frame=number, length=len(pkt.data), protocols="eth:homeplug-av", source=link.source,
                         destination=link.destination, info=mme["name"], vlan=vlan)
        if link.ethertype not in (ETHERTYPE_IPV6, ETHERTYPE_IPV4):
            return Frame(t=t, frame=number, length=len(pkt.data), protocols=f"eth:0x{link.ethertype:04x}",
                         source=link.source, destination=link.destination, info="")
        ip = ip_packet(link.ethertype, link.payload, pkt.original_length - len(pkt.data))
        ip_name = "ipv6" if link.ethertype == ETHERTYPE_IPV6 else "ip"
        if ip.protocol == IPPROTO_UDP:
            udp = udp_datagram(ip.payload)
            info = self._udp(pkt, ip.source, ip.destination, udp.source_port, udp.destination_port, udp.payload,
                             out)
            return Frame(t=t, frame=number, length=len(pkt.data), protocols=f"eth:{ip_name}:udp", source=ip.source,
                         destination=ip.destination, info=info)
        if ip.protocol == IPPROTO_TCP:
            seg = tcp_segment(ip.payload)
            src, dst = Endpoint(ip.source, seg.source_port), Endpoint(ip.destination, seg.destination_port)
            stream, events = self._tcp.segment(number, t, src, dst, seg, ip.missing)
            for event in events:
                self._stream_event(event, out)
            frame = Frame(t=t, frame=number, length=len(pkt.data), protocols=f"eth:{ip_name}:tcp", source=ip.source,
                          destination=ip.destination, info=f"{seg.source_port} → {seg.destination_port}",
                          tcp_stream=stream)
            if plain is not None:
                self._remember_flow(plain, src, dst, frame)
            return frame
        return Frame(t=t, frame=number, length=len(pkt.data), protocols=f"eth:{ip_name}", source=ip.source,
                     destination=ip.destination, info=f"IP protocol {ip.protocol}")

    def _udp(self, pkt: CapturedPacket, source: str, destination: str, sport: int, dport: int, payload: bytes,
             out: list[TraceRecord]) -> str:
        if SDP_PORT in (sport, dport) and v2gtp.looks_like_frame(payload):
            frame = v2gtp.decode_frame(payload)
            name, fields = sdp_fields(frame)
            if "secc_port" in fields:
                self._secc_ports.add(fields["secc_port"])
            out.append(SdpMessage(t=pkt.timestamp, frame=pkt.number, message=name, source=f"[{source}]:{sport}",
                                  destination=f"[{destination}]:{dport}", fields=fields))
            return name
        disclosed = self._disclosed_keys(payload)
        for label, random in disclosed:
            out.append(KeyDisclosed(t=pkt.timestamp, frame=pkt.number, label=label, client_random=random.hex()))
        return f"{sport} → {dport}" + (" key disclosure" if disclosed else "")

    def _disclosed_keys(self, payload: bytes) -> list[tuple[str, bytes]]:
        """Key-log lines a tester sends in a UDP datagram (dsV2Gshark convention; ASCII NSS lines)."""
        if not payload[:1].isalpha() or not payload.isascii():
            return []
        return self.keylog.add_text(payload.decode("ascii"))

    def _retry_tls(self, pkt: CapturedPacket, out: list[TraceRecord]) -> None:
        for conn in self._connections.values():
            if conn.tls is not None and conn.tls.waiting_for_keys:
                self._tls_outputs(conn, pkt.number, pkt.timestamp, self._guard_tls(conn, conn.tls.retry), out)

    @staticmethod
    def _guard_tls(conn: _Connection, step: Callable[[], list[TLSOutput]]) -> list[TLSOutput] | TLSError:
        """Run a TLS step; a TLS error ends decryption of this connection and is returned, not raised."""
        try:
            return step()
        except TLSError as exc:
            conn.kind = "broken"
            return exc

    def _stream_event(self, event: StreamEvent, out: list[TraceRecord]) -> None:
        if isinstance(event, StreamData):
            conn = self._connections.get(event.stream)
            if conn is not None:
                self._stream_bytes(conn, event.direction, event.data, event.frame, event.timestamp, out)
        elif isinstance(event, StreamGap):
            conn = self._connections.get(event.stream)
            if conn is not None and conn.kind == "other":
                return  # not a V2G connection: its holes are not ours to report
            path = "EVCC→SECC" if event.direction == CLIENT_TO_SERVER else "SECC→EVCC"
            if conn is not None and conn.kind == "v2gtp":
                conn.framing[event.direction].gap()
            elif conn is not None and conn.kind == "tls":
                conn.kind = "broken"  # records cannot be realigned after lost ciphertext
            out.append(ProtocolError(t=event.timestamp, frame=event.frame, layer="tcp", tcp_stream=event.stream,
                                     message=f"TCP stream {event.stream} {path}: {event.length} bytes missing at "
                                             f"relative offset {event.offset} (segment not captured)"))
        elif isinstance(event, StreamShutdown):
            conn = self._connections.get(event.stream)
            if conn is not None:
                sender = EVCC if event.direction == CLIENT_TO_SERVER else SECC
                self._end(conn, sender, event.how, event.frame, event.timestamp, out)
        elif isinstance(event, StreamClosed):
            conn = self._connections.pop(event.stream, None)
            if conn is not None:
                if conn.session is not None and conn.tls is not None:  # its records will not decrypt any more
                    self._report_session(conn, out, conn.tls.decrypted and not conn.tls.waiting_for_keys)
                self._end(conn, None, event.reason, event.frame, event.timestamp, out)
            if conn is not None and conn.tls is not None and conn.tls.waiting_for_keys and conn.kind == "tls":
                out.append(ProtocolError(t=event.timestamp, frame=event.frame, layer="tls", tcp_stream=event.stream,
                                         message=f"TCP stream {event.stream}: {conn.tls.missing_secret_message()}"))
            if conn is not None and conn.kind in ("v2gtp", "tls"):
                for direction, framing in enumerate(conn.framing):  # a frame cut short by the close (or capture end)
                    leftover = framing.incomplete()
                    if leftover is not None:
                        sender = EVCC if direction == CLIENT_TO_SERVER else SECC
                        message = f"TCP stream {event.stream} {sender}: {leftover} at the end of the stream " \
                                  f"({event.reason})"
                        out.append(ProtocolError(t=event.timestamp, frame=event.frame, layer="v2gtp",
                                                 tcp_stream=event.stream, message=message))
        elif isinstance(event, StreamOpened):
            self._connections[event.stream] = _Connection(event.stream, event.client, event.server)

    @staticmethod
    def _end(conn: _Connection, sender: str | None, how: str, frame: int, t: float, out: list[TraceRecord]) -> None:
        """Report the end of a V2G connection once (ConnectionEnd), and a TLS handshake it cut short: one
        closed (FIN or RST, *sender* given) before any ServerHello never completed (RFC 8446 clause 4.1),
        unless a TLS alert already said why."""
        if conn.ended or conn.kind in (None, "other"):
            return
        conn.ended = True
        tls = conn.tls
        if sender is not None and conn.kind == "tls" and tls is not None and not tls.version and not conn.alerted:
            hello = "after the EVCC's ClientHello" if tls.client_random is not None else "before any ClientHello"
            out.append(ProtocolError(t=t, frame=frame, layer="tls", tcp_stream=conn.index,
                                     message=f"TCP stream {conn.index}: TLS handshake never completed: the {sender} "
                                             f"closed the connection ({how}) {hello}, with no ServerHello"))
        out.append(ConnectionEnd(t=t, frame=frame, tcp_stream=conn.index, sender=sender, how=how))

    def _stream_bytes(self, conn: _Connection, direction: int, data: bytes, frame: int, t: float,
                      out: list[TraceRecord]) -> None:
        """The next in-order bytes of one direction of *conn*, as the packet number *frame* completed them."""
        if conn.kind is None:
            if self._secc_ports and conn.server.port not in self._secc_ports:
                conn.kind = "other"  # SDP named the SECC's port and this is not it (e.g. a backend connection)
            elif data[0] in _TLS_RECORD_TYPES and data[1:2] == b"\x03":
                conn.kind = "tls"
                conn.tls = TLSStream(self.keylog)
            elif v2gtp.looks_like_frame(data) or conn.server.port in self._secc_ports:
                conn.kind = "v2gtp"
            else:
                conn.kind = "other"  # e.g. a value-added service on a port of its own: not ours to judge
        if conn.kind == "v2gtp":
            self._v2gtp_bytes(conn, direction, data, frame, t, False, out)
        elif conn.kind == "tls" and conn.tls is not None:
            tls = conn.tls
            result = self._guard_tls(conn, lambda: tls.feed(direction, data, frame, t))
            self._tls_outputs(conn, frame, t, result, out)

    def _tls_outputs(self, conn: _Connection, frame: int, t: float, result: list[TLSOutput] | TLSError,
                     out: list[TraceRecord]) -> None:
        if isinstance(result, TLSError):  # decryption of this connection ends here
            if conn.session is None and not conn.session_reported and conn.tls is not None and conn.tls.version:
                self._hold_session(conn, frame, t)  # its ServerHello came in the bytes that failed
            if conn.session is not None:
                self._report_session(conn, out, False)
            out.append(ProtocolError(t=t, frame=frame, layer="tls", tcp_stream=conn.index,
                                     message=f"TCP stream {conn.index}: {result}"))
            return
        for item in result:
            if isinstance(item, Plaintext):  # with the frame and time its record arrived in
                if conn.session is not None:
                    self._report_session(conn, out, True)
                self._v2gtp_bytes(conn, item.direction, item.data, item.frame, item.t, True, out)
            elif isinstance(item, HandshakeSeen):
                self._hold_session(conn, frame, t)
            elif isinstance(item, Alert) and item.description != _ALERT_CLOSE_NOTIFY:
                conn.alerted = True
                sender = EVCC if item.direction == CLIENT_TO_SERVER else SECC
                name = ALERT_DESCRIPTIONS.get(item.description, str(item.description))
                level = "fatal" if item.level == 2 else "warning"
                out.append(ProtocolError(t=item.t, frame=item.frame, layer="tls", tcp_stream=conn.index,
                                         message=f"TCP stream {conn.index}: {sender} sent {level} TLS alert {name}"))

    @staticmethod
    def _hold_session(conn: _Connection, frame: int, t: float) -> None:
        """The TLSSession of the ServerHello *conn*'s TLS stream read in *frame* at *t*, held until
        :meth:`_report_session`."""
        tls = conn.tls
        assert tls is not None
        version = "TLS 1.3" if tls.version == 0x0304 else f"TLS 1.{(tls.version & 0xFF) - 1}"
        conn.session = TLSSession(t=t, frame=frame, tcp_stream=conn.index, version=version, cipher_suite=tls.suite,
                                  client_random=(tls.client_random or b"").hex(), decrypted=False)

    @staticmethod
    def _report_session(conn: _Connection, out: list[TraceRecord], decrypted: bool) -> None:
        """Report the TLSSession held since its ServerHello once whether its records were decrypted is
        known: at its first application data (True), or when decryption failed or the stream ended."""
        assert conn.session is not None
        out.append(replace(conn.session, decrypted=decrypted))
        conn.session, conn.session_reported = None, True

    def _v2gtp_bytes(self, conn: _Connection, direction: int, data: bytes, frame: int, t: float, tls: bool,
                     out: list[TraceRecord]) -> None:
        frames, error = conn.framing[direction].feed(data)
        sender = EVCC if direction == CLIENT_TO_SERVER else SECC
        if error is not None:
            out.append(ProtocolError(t=t, frame=frame, layer="v2gtp", tcp_stream=conn.index,
                                     message=f"TCP stream {conn.index} {sender}: {error}"))
        for payload_type, payload in frames:
            out.append(self._message(conn, sender, payload_type, payload, frame, t, tls))

    def _message(self, conn: _Connection, sender: str, payload_type: int, payload: bytes, frame: int, t: float,
                 tls: bool) -> TraceRecord:
        namespace, source = self._namespace(conn, payload_type)
        if namespace is None:
            return ProtocolError(t=t, frame=frame, layer="exi", tcp_stream=conn.index,
                                 message=f"{self._where(conn, sender, payload_type)}: no schema set for this "
                                         f"payload type after the handshake")
        try:
            schema_set, document = api.decode_json(payload, namespace)
        except V2GToolError as exc:
            guess = None if conn.handshake_done or source == "payload_type" else self._guess(conn, payload, namespace)
            if guess is None:
                return ProtocolError(t=t, frame=frame, layer="exi", tcp_stream=conn.index,
                                     message=f"{self._where(conn, sender, payload_type)}, {namespace}: {exc}")
            source, (schema_set, document) = guess
        ((name, root),) = document.items()
        if isinstance(root, dict) and isinstance(root.get("Body"), dict) and root["Body"]:
            name = next(iter(root["Body"]))
        self._follow_handshake(conn, name, root)
        return V2GMessage.of_fields({"t": t, "frame": frame, "tcp_stream": conn.index, "sender": sender,
                                     "namespace": schema_set.short, "payload_type": payload_type, "message": name,
                                     "document": document, "namespace_source": source, "tls": tls})

    @staticmethod
    def _guess(conn: _Connection, payload: bytes, failed: str) -> tuple[str, tuple[Any, dict[str, Any]]] | None:
        """Decode a 0x8001 payload of a connection whose supportedAppProtocol handshake the capture lacks
        (it started later): a handshake message, else an ISO 15118-2 or DIN SPEC 70121 V2G_Message (the
        two differ in their schema, not in the V2GTP header). ``(namespace source, decoded)`` or None.

        A schema set that alone decodes the payload is kept for the connection's next messages
        (``namespace_source`` "guessed"); when both do, this message is taken as -2 and the next guess again.
        """
        decoded = []
        for candidate in ("apphand", "iso2", "din"):
            if candidate != failed:
                try:
                    decoded.append((candidate, api.decode_json(payload, candidate)))
                except V2GToolError:
                    continue
        if not decoded:
            return None
        candidate, result = decoded[0]
        if candidate == "apphand":
            return "negotiated", result
        conn.protocol = candidate if len(decoded) == 1 else None
        return "guessed", result

    @staticmethod
    def _where(conn: _Connection, sender: str, payload_type: int) -> str:
        return f"TCP stream {conn.index} {sender}, V2GTP 0x{payload_type:04X}"

    @staticmethod
    def _namespace(conn: _Connection, payload_type: int) -> tuple[str | None, str]:
        namespace = v2gtp.ISO20_PAYLOAD_NAMESPACES.get(payload_type)
        if namespace is not None or payload_type != v2gtp.PayloadType.EXI:
            return namespace, "payload_type"
        if not conn.handshake_done:  # the handshake, or a schema set guessed without it (see _guess)
            return ("apphand", "negotiated") if conn.protocol is None else (conn.protocol, "guessed")
        if conn.protocol in (None, "iso20"):
            return None, "negotiated"
        return conn.protocol, "negotiated"

    @staticmethod
    def _follow_handshake(conn: _Connection, name: str, root: Any) -> None:
        if name == "supportedAppProtocolReq":
            conn.app_protocols = {p["SchemaID"]: p["ProtocolNamespace"] for p in root.get("AppProtocol", [])}
        elif name == "supportedAppProtocolRes":
            conn.handshake_done = True
            urn = conn.app_protocols.get(root.get("SchemaID", -1))
            conn.protocol = PROTOCOL_OF_NAMESPACE.get(urn) if urn is not None else None
