"""One HTTP/2 connection that sends a burst of requests in a single socket write.

Every request of a burst is framed first (a stream each: every stream's HEADERS, then every
stream's DATA, which ends it), and then all the frames leave in one ``sendall``: over TLS that
is one record per 16 KiB, so a burst of binds reaches the API server in one read. The server
starts a handler for each HEADERS frame, and no handler can act on its request before its body
arrives, after the last HEADERS frame: every request of the burst is under way in the server
before any is carried out. Then every answer is read. The h2 library does the framing, HPACK
and flow control; the socket and TLS are the caller's.

h2 is optional (the ``kubernetes`` extra): without it ``AVAILABLE`` is False and callers use
HTTP/1.1.

Must not import phalanx.backends.local, controllers, store or api.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

try:
    import h2.config
    import h2.connection
    import h2.errors
    import h2.events
    import h2.exceptions
except ImportError:  # pragma: no cover - exercised where the extra is not installed
    AVAILABLE = False
else:
    AVAILABLE = True

#: Bytes read per ``recv``.
READ_BYTES = 65536
#: Hop-by-hop headers that HTTP/2 forbids (RFC 9113 §8.2.2).
_CONNECTION_HEADERS = frozenset(
    {"connection", "host", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"}
)


class Socket(Protocol):
    """What a connection needs of its socket (``socket.socket``, ``ssl.SSLSocket``)."""

    def sendall(self, data: bytes, /) -> None: ...

    def recv(self, size: int, /) -> bytes: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class Request:
    method: str
    path: str
    body: bytes


@dataclass(frozen=True, slots=True)
class Response:
    """An HTTP status and the first bytes of the body; status 0: the stream failed
    (``error`` says why) after the server may have acted on it."""

    status: int
    body: bytes = b""
    error: str = ""


@dataclass(slots=True)
class _Stream:
    status: int = 0
    body: bytearray = field(default_factory=bytearray)


class Http2Connection:
    """A client connection over ``sock`` (already connected, TLS already negotiated with ALPN
    "h2"), used by one thread at a time. ``authority`` is the ``host:port`` of the requests."""

    def __init__(self, sock: Socket, authority: str) -> None:
        self._sock = sock
        self._authority = authority
        config = h2.config.H2Configuration(client_side=True, header_encoding=None)
        self._conn = h2.connection.H2Connection(config=config)
        self._conn.initiate_connection()
        #: False once the connection failed or the server said GOAWAY: open a new one.
        self.usable = True
        #: Whether the server's SETTINGS (its stream limit) have been read.
        self._has_settings = False

    def exchange(
        self, requests: Sequence[Request], headers: Sequence[tuple[str, str]]
    ) -> list[Response | None]:
        """Send every request (with ``headers``, names in any case) and read every answer; one
        entry per request, in order. None: the server did not act on that request (it
        refused the stream, its GOAWAY excluded it, or the connection ended before its
        answer was read, as when an idle connection was closed), so it may be sent again on
        another connection.

        The frames of as many requests as the server's stream limit and the flow-control
        window allow go out in one write (all of them, for bursts of a few dozen binds)."""
        extra = [
            (name.lower().encode(), value.encode())
            for name, value in headers
            if name.lower() not in _CONNECTION_HEADERS and name.lower() != "content-length"
        ]
        answers: list[Response | None] = [None] * len(requests)
        start = 0
        while start < len(requests) and self.usable:
            streams: dict[int, int] = {}  # stream id -> index of its request
            # 1. Every stream's HEADERS, then 2. every stream's DATA: the server starts a
            # handler per HEADERS frame, and none can act before it reads its body, which
            # comes only after the last HEADERS frame.
            window = self._conn.outbound_flow_control_window
            for index in range(start, len(requests)):
                request = requests[index]
                if not self._room_for(request, window):
                    break
                window -= len(request.body)
                stream_id = self._conn.get_next_available_stream_id()
                self._conn.send_headers(
                    stream_id,
                    [
                        (b":method", request.method.encode()),
                        (b":scheme", b"https"),
                        (b":authority", self._authority.encode()),
                        (b":path", request.path.encode()),
                        *extra,
                        (b"content-length", str(len(request.body)).encode()),
                    ],
                )
                streams[stream_id] = index
            for stream_id, index in streams.items():
                self._conn.send_data(stream_id, requests[index].body, end_stream=True)
            if not streams:  # no room even for one: the server holds back; use another
                self.usable = False
                break
            start += len(streams)
            try:
                self._sock.sendall(self._conn.data_to_send())
            except OSError:
                self.usable = False
                break
            for stream_id, answer in self._read(streams).items():
                answers[streams[stream_id]] = answer
        return answers

    def close(self) -> None:
        self.usable = False
        try:
            self._conn.close_connection()
            self._sock.sendall(self._conn.data_to_send())
        except (OSError, h2.exceptions.ProtocolError):
            pass
        self._sock.close()

    def _room_for(self, request: Request, window: int) -> bool:
        """Whether one more stream, carrying ``request``'s body, may be opened now, with
        ``window`` bytes left in the connection's flow-control window."""
        conn = self._conn
        # Until the server's SETTINGS are read its limit is unknown: RFC 9113 §6.5.2 advises
        # servers to allow at least 100 streams.
        limit = conn.remote_settings.max_concurrent_streams if self._has_settings else 100
        if conn.open_outbound_streams + 1 > limit:
            return False
        size = len(request.body)
        return size <= min(window, conn.remote_settings.initial_window_size) and (
            size <= conn.max_outbound_frame_size
        )

    def _read(self, streams: dict[int, int]) -> dict[int, Response | None]:
        """The answers of ``streams``, read until each has ended, was reset or can no longer
        come."""
        open_streams = {stream_id: _Stream() for stream_id in streams}
        done: dict[int, Response | None] = {}
        while open_streams:
            try:
                data = self._sock.recv(READ_BYTES)
                events = self._conn.receive_data(data) if data else []
            except (OSError, h2.exceptions.ProtocolError):
                data, events = b"", []
            for event in events:
                self._handle(event, open_streams, done)
            if not data:  # closed (or broken): no other answer can come
                self.usable = False
                break
            try:
                pending = self._conn.data_to_send()
                if pending:  # settings acknowledgements, window updates, pings
                    self._sock.sendall(pending)
            except OSError:
                self.usable = False
        return {stream_id: done.get(stream_id) for stream_id in streams}

    def _handle(
        self,
        event: h2.events.Event,
        open_streams: dict[int, _Stream],
        done: dict[int, Response | None],
    ) -> None:
        if isinstance(event, h2.events.ResponseReceived) and event.stream_id in open_streams:
            for name, value in event.headers or ():
                if name == b":status":
                    open_streams[event.stream_id].status = int(value)
        elif isinstance(event, h2.events.DataReceived):
            self._conn.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
            stream = open_streams.get(event.stream_id)
            if stream is not None and len(stream.body) < 300:
                stream.body += event.data or b""
        elif isinstance(event, h2.events.StreamEnded) and event.stream_id in open_streams:
            stream = open_streams.pop(event.stream_id)
            done[event.stream_id] = Response(stream.status, bytes(stream.body[:300]))
        elif isinstance(event, h2.events.StreamReset) and event.stream_id in open_streams:
            del open_streams[event.stream_id]
            code = event.error_code
            # REFUSED_STREAM: the server did nothing with it (RFC 9113 §8.7).
            done[event.stream_id] = (
                None
                if code == h2.errors.ErrorCodes.REFUSED_STREAM
                else Response(0, error=f"stream reset by the server: {code!r}")
            )
        elif isinstance(event, h2.events.RemoteSettingsChanged):
            self._has_settings = True
        elif isinstance(event, h2.events.ConnectionTerminated):
            self.usable = False
            last = event.last_stream_id if event.last_stream_id is not None else 0
            # Streams above the GOAWAY's last stream id were not processed; the others may
            # still be answered before the server closes the connection.
            for stream_id in [s for s in open_streams if s > last]:
                del open_streams[stream_id]
                done[stream_id] = None
