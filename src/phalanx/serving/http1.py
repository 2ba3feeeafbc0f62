"""HTTP/1.1 on the wire for the serving router: the downstream connection (``_ClientConn``:
reads requests, one at a time, and writes answers) and the connection to a replica
(``_Upstream``: writes a request, relays the answer as its bytes arrive, with back-pressure).
Raw asyncio Protocols with an incremental parser; ``phalanx.serving.router`` decides where
each request goes. Internal to the router; the standard library only.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from phalanx.serving.router import Router, _ServiceState

_monotonic = time.monotonic

#: Request headers the router consumes rather than forwards (hop by hop, or re-framed).
_HOP_BY_HOP_NAMES = (
    b"connection",
    b"keep-alive",
    b"proxy-connection",
    b"transfer-encoding",
    b"te",
    b"trailer",
    b"upgrade",
    b"content-length",
    b"expect",
    b"proxy-authorization",
)


def _header_lines(lower: bytes, name: bytes) -> list[tuple[int, int, bytes]]:
    """(start, end, lower-cased value) of each ``name:`` line in a header block (lines
    ending with CRLF, lower-cased)."""
    out: list[tuple[int, int, bytes]] = []
    key = name + b":"
    pos = 0
    while True:
        i = lower.find(key, pos)
        if i < 0:
            return out
        stop = lower.find(b"\r\n", i) + 2
        if i == 0 or lower[i - 1] == 10:  # at a line start, after "\n"
            out.append((i, stop, lower[i + len(key) : stop - 2].strip()))
        pos = stop if stop > 1 else len(lower)


_MAX_HEAD_BYTES = 64 * 1024
_REASONS = {
    400: "Bad Request",
    404: "Not Found",
    413: "Content Too Large",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


class _BadRequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class _Request:
    method: bytes
    target: bytes
    host: str
    #: The header lines to forward, each ending with CRLF.
    header_block: bytes
    body: bytes
    keep_alive: bool
    #: ``b"HTTP/1.1"`` or ``b"HTTP/1.0"``: forwarded as it came, so that a replica does not
    #: answer an HTTP/1.0 client in chunks it cannot read.
    version: bytes = b"HTTP/1.1"


def _error_response(status: int, message: str, *, retry_after_s: int | None = None) -> bytes:
    body = json.dumps({"error": message, "status": status}).encode() + b"\n"
    head = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
        "X-Phalanx-Router: 1",
    ]
    if retry_after_s is not None:
        head.append(f"Retry-After: {retry_after_s}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def _parse_chunked(buf: bytearray, start: int, limit: int) -> tuple[bytes, int] | None:
    """De-chunk a request body from ``buf[start:]``: (body, end offset), or None when more
    bytes are needed. Raises _BadRequest on malformed framing or a body over ``limit``."""
    parts: list[bytes] = []
    size_total = 0
    pos = start
    while True:
        eol = buf.find(b"\r\n", pos)
        if eol < 0:
            return None
        size_text = bytes(buf[pos:eol]).split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise _BadRequestError(
                400, f"bad chunk size {size_text!r} in the request body"
            ) from None
        pos = eol + 2
        if size == 0:
            # Trailers (ignored) end with an empty line.
            while True:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    return None
                if eol == pos:
                    return b"".join(parts), eol + 2
                pos = eol + 2
        size_total += size
        if size_total > limit:
            raise _BadRequestError(413, f"request body over the router's limit of {limit} bytes")
        if len(buf) < pos + size + 2:
            return None
        parts.append(bytes(buf[pos : pos + size]))
        pos += size + 2


class _ClientConn(asyncio.Protocol):
    """One downstream connection: reads requests, one at a time, and writes responses."""

    __slots__ = (
        "buf",
        "busy",
        "closed",
        "forwarded_for",
        "keep_alive",
        "last_active",
        "paused_writing",
        "router",
        "sent_continue",
        "transport",
        "upstream",
    )

    def __init__(self, router: Router) -> None:
        self.router = router
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.busy = False
        self.closed = False
        self.upstream: _Upstream | None = None
        self.paused_writing = False
        self.keep_alive = True
        self.sent_continue = False
        self.forwarded_for = b""
        self.last_active = _monotonic()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.router._clients.add(self)
        peer = self.transport.get_extra_info("peername")
        if peer:
            self.forwarded_for = b"x-forwarded-for: " + str(peer[0]).encode() + b"\r\n"

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.router._clients.discard(self)
        up = self.upstream
        if up is not None:
            up.client_gone()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        self.last_active = _monotonic()
        if not self.busy:
            self.next_request()

    def pause_writing(self) -> None:
        # Back-pressure: a client that reads slowly slows the replica's response down.
        self.paused_writing = True
        if self.upstream is not None:
            self.upstream.set_reading(False)

    def resume_writing(self) -> None:
        self.paused_writing = False
        if self.upstream is not None:
            self.upstream.set_reading(True)

    def respond_error(self, status: int, message: str, retry_after_s: int | None = None) -> None:
        """Answer the current request with a JSON error and go on to the next one."""
        assert self.transport is not None
        if not self.closed:
            self.transport.write(_error_response(status, message, retry_after_s=retry_after_s))
        self.finish(keep_alive=status < 500 or status == 503)

    def finish(self, *, keep_alive: bool) -> None:
        """The current response is complete."""
        self.upstream = None
        self.busy = False
        self.last_active = _monotonic()
        if self.closed:
            return
        assert self.transport is not None
        if not (keep_alive and self.keep_alive):
            self.transport.close()
            self.closed = True
            return
        if self.buf:
            self.next_request()

    def next_request(self) -> None:
        try:
            request = self.parse()
        except _BadRequestError as exc:
            self.buf.clear()
            self.busy = True
            self.respond_error(exc.status, str(exc))
            if self.transport is not None:
                self.transport.close()
            return
        if request is None:
            return
        self.busy = True
        self.keep_alive = request.keep_alive
        self.sent_continue = False
        self.router._dispatch(self, request)

    def parse(self) -> _Request | None:
        """The next whole request in the buffer (None: more bytes needed); the header lines
        are kept as they came, less the hop-by-hop ones. Raises _BadRequestError."""
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            if len(buf) > _MAX_HEAD_BYTES:
                raise _BadRequestError(431, f"request head over {_MAX_HEAD_BYTES} bytes")
            return None
        head = bytes(buf[: end + 2])
        eol = head.find(b"\r\n")
        request_line = head[:eol].split(b" ")
        if len(request_line) != 3 or not request_line[2].startswith(b"HTTP/1."):
            raise _BadRequestError(400, f"bad request line {head[:eol][:200]!r}")
        method, target, version = request_line
        block = head[eol + 2 :]
        lower = block.lower()
        length = 0
        chunked = False
        keep_alive = version == b"HTTP/1.1"
        expect_continue = False
        cuts: list[tuple[int, int]] = []
        for name in _HOP_BY_HOP_NAMES:
            if name not in lower:
                continue
            for start, stop, value in _header_lines(lower, name):
                cuts.append((start, stop))
                if name == b"content-length":
                    try:
                        length = int(value)
                    except ValueError:
                        raise _BadRequestError(400, f"bad Content-Length {value!r}") from None
                    if length < 0:
                        raise _BadRequestError(400, f"bad Content-Length {value!r}")
                elif name == b"transfer-encoding":
                    chunked = b"chunked" in value
                elif name == b"connection":
                    if b"close" in value:
                        keep_alive = False
                    elif b"keep-alive" in value:
                        keep_alive = True
                elif name == b"expect":
                    expect_continue = value == b"100-continue"
                elif name == b"upgrade":
                    raise _BadRequestError(501, "the router does not support protocol upgrades")
        if cuts:
            cuts.sort()
            kept: list[bytes] = []
            pos = 0
            for start, stop in cuts:
                kept.append(block[pos:start])
                pos = stop
            kept.append(block[pos:])
            block = b"".join(kept)
        host = ""
        if b"host:" in lower:
            for _, _, value in _header_lines(lower, b"host"):
                host = value.decode("latin-1")
        start = end + 4
        limit = self.router.max_body_bytes
        if chunked:
            parsed = _parse_chunked(buf, start, limit)
            if parsed is None:
                self._continue(expect_continue)
                return None
            body, consumed = parsed
        else:
            if length > limit:
                raise _BadRequestError(
                    413, f"request body of {length} bytes over the limit {limit}"
                )
            if len(buf) < start + length:
                self._continue(expect_continue)
                return None
            body = bytes(buf[start : start + length]) if length else b""
            consumed = start + length
        del buf[:consumed]
        version = b"HTTP/1.0" if version == b"HTTP/1.0" else b"HTTP/1.1"
        return _Request(method, target, host, block, body, keep_alive, version)

    def _continue(self, expect_continue: bool) -> None:
        # The body is read before forwarding, so the router itself answers "100-continue".
        if expect_continue and self.transport is not None and not self.sent_continue:
            self.sent_continue = True
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")


_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _TRAILERS, _UNTIL_CLOSE, _DONE = range(7)


class _Upstream(asyncio.Protocol):
    """One keep-alive connection to a replica; relays a response to a ``_ClientConn``."""

    __slots__ = (
        "alive",
        "buf",
        "client",
        "close_client",
        "got_bytes",
        "is_head",
        "parked_at",
        "reading",
        "remaining",
        "reusable",
        "router",
        "service",
        "state",
        "transport",
        "url",
    )

    def __init__(self, router: Router, url: str) -> None:
        self.router = router
        self.url = url
        self.transport: asyncio.Transport | None = None
        self.client: _ClientConn | None = None
        self.state = _DONE
        self.buf = bytearray()
        self.remaining = 0
        self.reusable = True
        self.got_bytes = False
        self.alive = True
        self.is_head = False
        self.service: _ServiceState | None = None
        self.close_client = False
        self.parked_at = 0.0
        self.reading = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def send(self, client: _ClientConn, service: _ServiceState, data: bytes, head: bool) -> None:
        assert self.transport is not None
        self.client = client
        self.service = service
        self.state = _HEAD
        self.buf.clear()
        self.reusable = True
        self.close_client = False
        self.got_bytes = False
        self.is_head = head
        client.upstream = self
        self.set_reading(not client.paused_writing)
        self.transport.write(data)

    def set_reading(self, on: bool) -> None:
        """Pause or resume reading from the replica (idempotent)."""
        if on == self.reading or self.transport is None or self.transport.is_closing():
            return
        self.reading = on
        if on:
            self.transport.resume_reading()
        else:
            self.transport.pause_reading()

    def client_gone(self) -> None:
        # The client went away mid-response: this connection's stream is now unusable.
        self.reusable = False
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        self.router._forget_idle(self)
        if self.client is None:
            return
        if self.state == _UNTIL_CLOSE:
            self._complete(reusable=False)
            return
        client = self.client
        self.client = None
        self.router._release(self)
        if not self.got_bytes:
            client.respond_error(
                502,
                f"replica {self.url} closed the connection before answering"
                + (f": {exc}" if exc else ""),
            )
        else:
            # Part of the response is already out: the client can only learn by the close.
            if client.transport is not None:
                client.transport.close()
            client.closed = True
            client.finish(keep_alive=False)

    def data_received(self, data: bytes) -> None:
        client = self.client
        if client is None:
            # Bytes nobody asked for: the stream is out of step; drop the connection.
            self.reusable = False
            if self.transport is not None:
                self.transport.close()
            return
        self.got_bytes = True
        if self.state == _LENGTH and not self.buf:
            # Fast path: the body of a fixed-length response.
            n = len(data)
            if n <= self.remaining:
                self.remaining -= n
                client.transport.write(data)  # type: ignore[union-attr]
                if self.remaining == 0:
                    self._complete(self.reusable)
                return
        if self.state == _UNTIL_CLOSE:
            client.transport.write(data)  # type: ignore[union-attr]
            return
        self.buf += data
        self._advance()

    def _advance(self) -> None:
        client = self.client
        assert client is not None and client.transport is not None
        buf = self.buf
        pos = 0
        out_from = 0
        while True:
            state = self.state
            if state == _HEAD:
                end = buf.find(b"\r\n\r\n", pos)
                if end < 0:
                    if len(buf) - pos > _MAX_HEAD_BYTES:
                        self._protocol_error("a response head over 64 KiB")
                        return
                    break
                self._read_head(bytes(buf[pos:end]))
                if self.client is None:
                    return  # protocol error handled
                pos = end + 4
                if self.state == _DONE:
                    client.transport.write(bytes(buf[out_from:pos]))
                    del buf[:pos]
                    self._complete(self.reusable, leftover=bool(buf))
                    return
                continue
            if state == _LENGTH:
                n = min(self.remaining, len(buf) - pos)
                pos += n
                self.remaining -= n
                if self.remaining == 0:
                    client.transport.write(bytes(buf[out_from:pos]))
                    del buf[:pos]
                    self._complete(self.reusable, leftover=bool(buf))
                    return
                break
            if state == _CHUNK_SIZE:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                try:
                    size = int(bytes(buf[pos:eol]).split(b";", 1)[0].strip(), 16)
                except ValueError:
                    self._protocol_error("a bad chunk size")
                    return
                pos = eol + 2
                if size == 0:
                    self.state = _TRAILERS
                else:
                    self.state = _CHUNK_DATA
                    self.remaining = size + 2
                continue
            if state == _CHUNK_DATA:
                n = min(self.remaining, len(buf) - pos)
                pos += n
                self.remaining -= n
                if self.remaining == 0:
                    self.state = _CHUNK_SIZE
                    continue
                break
            if state == _TRAILERS:
                eol = buf.find(b"\r\n", pos)
                if eol < 0:
                    break
                if eol == pos:  # the empty line that ends the trailers
                    pos = eol + 2
                    client.transport.write(bytes(buf[out_from:pos]))
                    del buf[:pos]
                    self._complete(self.reusable, leftover=bool(buf))
                    return
                pos = eol + 2
                continue
            if state == _UNTIL_CLOSE:
                pos = len(buf)
                break
            break
        if pos > out_from:
            client.transport.write(bytes(buf[out_from:pos]))
        del buf[:pos]

    def _read_head(self, head: bytes) -> None:
        eol = head.find(b"\r\n")
        status_line = (head if eol < 0 else head[:eol]).split(b" ", 2)
        try:
            status = int(status_line[1])
        except (IndexError, ValueError):
            self._protocol_error(f"a bad status line {status_line[:2]!r}")
            return
        if 100 <= status < 200:
            # An interim response (103 Early Hints): passed on; the final one follows.
            self.state = _HEAD
            return
        if self.service is not None:
            self.router.count_response(self.service, self.url, status)
        length = -1
        chunked = False
        close = status_line[0] == b"HTTP/1.0"
        if eol >= 0:
            block = head[eol + 2 :].lower() + b"\r\n"
            if b"content-length:" in block:
                for _, _, value in _header_lines(block, b"content-length"):
                    try:
                        length = int(value)
                    except ValueError:
                        self._protocol_error(f"a bad Content-Length {value!r}")
                        return
            if b"transfer-encoding:" in block:
                for _, _, value in _header_lines(block, b"transfer-encoding"):
                    chunked = b"chunked" in value
            if b"connection:" in block:
                for _, _, value in _header_lines(block, b"connection"):
                    if b"close" in value:
                        close = True
                    elif b"keep-alive" in value:
                        close = False
        if close:
            # The client was told "Connection: close" too (the head is passed on as it is).
            self.reusable = False
            self.close_client = True
        if self.is_head or status in (204, 304):
            self.state = _DONE
        elif chunked:
            self.state = _CHUNK_SIZE
        elif length >= 0:
            self.remaining = length
            self.state = _LENGTH if length else _DONE
        else:
            self.state = _UNTIL_CLOSE
            self.reusable = False

    def _protocol_error(self, what: str) -> None:
        client = self.client
        self.reusable = False
        if self.transport is not None:
            self.transport.close()
        self.client = None
        self.router._release(self)
        if client is None:
            return
        if not self.got_bytes or self.state == _HEAD:
            client.respond_error(502, f"replica {self.url} sent {what}")
        else:
            if client.transport is not None:
                client.transport.close()
            client.closed = True
            client.finish(keep_alive=False)

    def _complete(self, reusable: bool, leftover: bool = False) -> None:
        client = self.client
        self.client = None
        if self.state == _UNTIL_CLOSE:
            self.close_client = True
        self.state = _DONE
        if leftover:
            reusable = False
        self.router._release(self)
        if reusable and self.alive:
            self.set_reading(True)  # paused for a slow client, it must read the next answer
            self.router._park(self)
        elif self.transport is not None:
            self.transport.close()
        if client is not None:
            client.finish(keep_alive=not self.close_client)
