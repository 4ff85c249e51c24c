"""TCP stream reassembly (RFC 9293 sequence-number arithmetic) for dissecting captures.

Segments may arrive out of order, be retransmitted or overlap earlier ones, and several connections
may interleave. :class:`TCPReassembler` numbers connections in the order they appear (as tshark's
``tcp.stream`` does), delivers each direction's bytes exactly once and in order, and reports a hole
it cannot fill (a segment the capture missed) instead of guessing its bytes. Endpoints and stream
events are named tuples: they are built for every segment, hashed and compared in C.

A hole is declared lost, and the bytes held after it delivered at the frames that carried them, as
soon as the capture shows it will not be filled: the peer acknowledged bytes past it (what tshark
calls "ACKed unseen segment"; RFC 9293 section 3.10.7.4: an ACK covers every byte before it), the
frame that carried it was cut short by the snapshot length, the connection ended, or more than
MAX_PENDING_BYTES wait behind it.
:meth:`TCPReassembler.in_order` takes the common segment, the next one of a direction with nothing
held, without building endpoints or events.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from v2gtool.pcap.link import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, TCPSegment

# Out-of-order bytes held per direction while waiting for a missing segment. Beyond this the hole is
# declared lost and delivery resumes after it, so memory stays bounded on any capture.
MAX_PENDING_BYTES = 1024 * 1024
# Closed connections remembered (their late ACKs and retransmissions must not open new streams);
# the oldest are forgotten beyond this, so a capture of many sessions stays in bounded memory.
MAX_CLOSED_CONNECTIONS = 1024
_MOD = 1 << 32
_NOT_PLAIN = TCP_SYN | TCP_FIN | TCP_RST

CLIENT_TO_SERVER = 0
SERVER_TO_CLIENT = 1


class Endpoint(NamedTuple):
    address: str
    port: int

    def __str__(self) -> str:
        return f"[{self.address}]:{self.port}" if ":" in self.address else f"{self.address}:{self.port}"


class StreamData(NamedTuple):
    """In-order bytes of one direction of a connection; *frame* is the packet that completed them."""

    stream: int
    direction: int
    data: bytes
    frame: int
    timestamp: float


class StreamGap(NamedTuple):
    """Bytes of one direction that the capture does not contain; delivery resumes after them."""

    stream: int
    direction: int
    offset: int
    length: int
    frame: int
    timestamp: float


class StreamOpened(NamedTuple):
    stream: int
    client: Endpoint
    server: Endpoint
    frame: int
    timestamp: float


class StreamShutdown(NamedTuple):
    """The first FIN or RST of a connection (*how*), sent in *direction*: from here on its peers are done."""

    stream: int
    direction: int
    how: str
    frame: int
    timestamp: float


class StreamClosed(NamedTuple):
    stream: int
    reason: str
    frame: int
    timestamp: float


StreamEvent = StreamData | StreamGap | StreamOpened | StreamShutdown | StreamClosed


@dataclass(slots=True)
class _HalfStream:
    """One direction: the next expected relative offset and segments waiting for a hole to fill."""

    base: int | None = None  # sequence number of relative offset 0
    next_offset: int = 0
    pending: dict[int, tuple[bytes, int, float]] = field(default_factory=dict)  # offset -> data, frame, time
    pending_bytes: int = 0
    fin: bool = False


@dataclass(slots=True)
class _Connection:
    index: int
    client: Endpoint
    server: Endpoint
    halves: tuple[_HalfStream, _HalfStream] = field(default_factory=lambda: (_HalfStream(), _HalfStream()))
    closed: bool = False
    # closed, or a direction holds bytes out of order: no segment takes the in-order shortcut, so the
    # ACK of every segment is checked against the holes (one test on the common path)
    irregular: bool = False


@dataclass(slots=True)
class Flow:
    """One direction of an open connection, for the in-order shortcut :meth:`TCPReassembler.in_order`."""

    direction: int
    connection: _Connection
    half: _HalfStream


class TCPReassembler:
    """Sans-IO reassembly of every TCP connection in a capture."""

    def __init__(self, max_pending: int = MAX_PENDING_BYTES) -> None:
        self._connections: dict[tuple[Endpoint, Endpoint], _Connection] = {}
        self._closed: dict[tuple[Endpoint, Endpoint], None] = {}  # insertion-ordered keys of closed connections
        self._next_index = 0
        self._max_pending = max_pending

    def segment(self, frame: int, timestamp: float, source: Endpoint, destination: Endpoint,
                seg: TCPSegment, missing: int = 0) -> tuple[int, list[StreamEvent]]:
        """Process one captured segment; return its stream index and the events it causes, in order.

        *missing* payload bytes follow ``seg.payload`` on the wire but not in the capture (the frame was
        cut by the snapshot length): a known loss, declared at once when delivery reaches it.
        """
        events: list[StreamEvent] = []
        key = (source, destination) if source <= destination else (destination, source)
        conn = self._connections.get(key)
        syn_only = seg.flags & TCP_SYN and not seg.flags & 0x10
        if conn is not None and syn_only and (conn.closed or self._is_new_syn(conn, source, seg)):
            events.extend(self._finish(conn, "reused by a new connection", frame, timestamp))
            conn = None
        if conn is None:
            # Without a SYN the capture started mid-connection: the first sender is taken as the client
            # unless it sends from the well-known side (a SYN-ACK or a lower port number).
            if seg.flags & TCP_SYN and seg.flags & 0x10:
                client, server = destination, source
            else:
                client, server = source, destination
            conn = _Connection(self._next_index, client, server)
            self._next_index += 1
            self._connections[key] = conn
            self._closed.pop(key, None)
            events.append(StreamOpened(conn.index, client, server, frame, timestamp))
        direction = CLIENT_TO_SERVER if source == conn.client else SERVER_TO_CLIENT
        half = conn.halves[direction]
        if half.base is None:
            half.base = (seg.seq + 1) % _MOD if seg.flags & TCP_SYN else seg.seq
        elif seg.flags & TCP_SYN:
            return conn.index, events  # a retransmitted SYN carries no stream bytes
        if seg.flags & TCP_ACK:  # before this segment's bytes: the peer's held bytes came first
            events.extend(self._acknowledged(conn, 1 - direction, seg.ack))
        if seg.payload:
            offset = (seg.seq + (1 if seg.flags & TCP_SYN else 0) - half.base) % _MOD
            if offset >= _MOD // 2:  # before the base: a segment older than the capture's first one
                skip = _MOD - offset
                if skip < len(seg.payload):
                    events.extend(self._add(conn, direction, 0, seg.payload[skip:], frame, timestamp))
            else:
                events.extend(self._add(conn, direction, offset, seg.payload, frame, timestamp))
                if missing and half.next_offset == offset + len(seg.payload):
                    events.extend(self._lose(conn, direction, missing, frame, timestamp))
        if seg.flags & (TCP_FIN | TCP_RST) and not conn.closed and not (conn.halves[0].fin or conn.halves[1].fin):
            how = "RST" if seg.flags & TCP_RST else "FIN"
            events.append(StreamShutdown(conn.index, direction, how, frame, timestamp))
        if seg.flags & TCP_FIN:
            half.fin = True
        if seg.flags & TCP_RST:
            events.extend(self._finish(conn, "reset", frame, timestamp))
        elif all(h.fin for h in conn.halves) and not conn.closed:
            events.extend(self._finish(conn, "closed", frame, timestamp))
        if conn.closed:
            self._forget_closed(key)
        conn.irregular = conn.closed or bool(conn.halves[0].pending) or bool(conn.halves[1].pending)
        return conn.index, events

    def flow(self, source: Endpoint, destination: Endpoint) -> Flow | None:
        """The direction source → destination of their open connection, once :meth:`segment` has seen it."""
        conn = self._connections.get((source, destination) if source <= destination else (destination, source))
        if conn is None or conn.closed:
            return None
        direction = CLIENT_TO_SERVER if source == conn.client else SERVER_TO_CLIENT
        half = conn.halves[direction]
        return None if half.base is None else Flow(direction, conn, half)

    @staticmethod
    def in_order(flow: Flow, seq: int, flags: int, size: int) -> bool:
        """Take a segment that continues *flow* exactly where delivery stands, the common case.

        True when the segment carries no SYN, FIN or RST, nothing is held out of order (so its ACK
        cannot prove a hole lost) and its *size*
        payload bytes start at the next offset: they are the flow's next stream bytes, for the caller
        to deliver, which is all :meth:`segment` would do with it (one StreamData of the payload). False
        leaves every state as it was: give the segment to :meth:`segment`.
        """
        if flags & _NOT_PLAIN or flow.connection.irregular:
            return False
        if size:
            half = flow.half
            assert half.base is not None  # a Flow exists once its direction has a base
            offset = (seq - half.base) % _MOD
            if offset != half.next_offset or offset >= _MOD // 2:
                return False
            half.next_offset = offset + size
        return True

    def _forget_closed(self, key: tuple[Endpoint, Endpoint]) -> None:
        self._closed[key] = None
        while len(self._closed) > MAX_CLOSED_CONNECTIONS:
            oldest = next(iter(self._closed))
            del self._closed[oldest]
            del self._connections[oldest]

    def close(self, frame: int, timestamp: float) -> list[StreamEvent]:
        """End of capture: report every hole left and forget all connections."""
        events: list[StreamEvent] = []
        for conn in list(self._connections.values()):
            if not conn.closed:
                events.extend(self._finish(conn, "capture ended", frame, timestamp))
        self._connections.clear()
        return events

    @staticmethod
    def _is_new_syn(conn: _Connection, source: Endpoint, seg: TCPSegment) -> bool:
        half = conn.halves[CLIENT_TO_SERVER if source == conn.client else SERVER_TO_CLIENT]
        return half.base is not None and (seg.seq + 1) % _MOD != half.base

    def _add(self, conn: _Connection, direction: int, offset: int, data: bytes, frame: int,
             timestamp: float) -> list[StreamEvent]:
        half = conn.halves[direction]
        end = offset + len(data)
        if end <= half.next_offset:
            return []  # a retransmission of bytes already delivered
        if offset < half.next_offset:  # overlaps delivered bytes: keep only the new tail
            data = data[half.next_offset - offset:]
            offset = half.next_offset
        if offset > half.next_offset:
            held = half.pending.get(offset)
            if held is None or len(held[0]) < len(data):
                half.pending_bytes += len(data) - (len(held[0]) if held else 0)
                half.pending[offset] = (data, frame, timestamp)
            if half.pending_bytes <= self._max_pending:
                return []
            return self._skip_hole(conn, direction)
        chunks = [data]
        half.next_offset = end
        chunks.extend(chunk for chunk, _, _ in self._drain(half))
        return [StreamData(conn.index, direction, b"".join(chunks), frame, timestamp)]

    @staticmethod
    def _drain(half: _HalfStream) -> list[tuple[bytes, int, float]]:
        """Take every held segment that now continues the stream (trimming overlaps), with its frame and time."""
        chunks: list[tuple[bytes, int, float]] = []
        while half.pending:
            start = min(half.pending)
            if start > half.next_offset:
                break
            data, frame, timestamp = half.pending.pop(start)
            half.pending_bytes -= len(data)
            if start + len(data) > half.next_offset:
                chunks.append((data[half.next_offset - start:], frame, timestamp))
                half.next_offset = start + len(data)
        return chunks

    def _skip_hole(self, conn: _Connection, direction: int, end: int | None = None) -> list[StreamEvent]:
        """Declare the hole before the first held segment lost (only up to the relative offset *end*
        when that comes first), at that segment's frame (tshark's "previous segment not captured")."""
        half = conn.halves[direction]
        start = min(half.pending)
        _, frame, timestamp = half.pending[start]
        return self._lose(conn, direction, min(start, end if end is not None else start) - half.next_offset,
                          frame, timestamp)

    def _acknowledged(self, conn: _Connection, direction: int, ack: int) -> list[StreamEvent]:
        """The peer acknowledged *direction* up to *ack*: the part of a hole it covers was received,
        never to be captured (an ACK covers the bytes before it only, RFC 9293 3.4: the rest of the
        hole may still come, retransmitted)."""
        half = conn.halves[direction]
        events: list[StreamEvent] = []
        if half.pending and half.base is not None:
            acked = (ack - half.base) % _MOD
            while half.pending and half.next_offset < acked < _MOD // 2:
                events.extend(self._skip_hole(conn, direction, acked))
        return events

    def _lose(self, conn: _Connection, direction: int, length: int, frame: int,
              timestamp: float) -> list[StreamEvent]:
        """*length* bytes at the delivery point are lost: report them (at *frame*) and go on after them; the
        bytes held beyond them go out at the frames that brought them."""
        half = conn.halves[direction]
        events: list[StreamEvent] = [StreamGap(conn.index, direction, half.next_offset, length, frame, timestamp)]
        half.next_offset += length
        events.extend(StreamData(conn.index, direction, data, held_frame, held_time)
                      for data, held_frame, held_time in self._drain(half))
        return events

    def _finish(self, conn: _Connection, reason: str, frame: int, timestamp: float) -> list[StreamEvent]:
        events: list[StreamEvent] = []
        for direction, half in enumerate(conn.halves):
            while half.pending:
                events.extend(self._skip_hole(conn, direction))
        conn.closed = conn.irregular = True
        events.append(StreamClosed(conn.index, reason, frame, timestamp))
        return events
