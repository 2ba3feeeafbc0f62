"""A trivial HTTP/1.1 replica for tests, benchmarks and demos: ``python -m
phalanx.serving.echo [--port 0] [--name r1] [--startup-delay-s 0]`` prints ``PORT <n>`` on
stdout once it listens.

Answers (keep-alive, fixed length unless said):

- ``GET /stream/<n>``: ``n`` server-sent events, chunked, ``--event-gap-ms`` apart;
- ``* /sleep/<ms>``: the echo below, after ``ms`` milliseconds;
- ``* /bytes/<n>``: ``n`` bytes of ``x``;
- ``* /drop``: closes the connection without answering;
- ``GET /healthz``: 200 ``ok``;
- anything else: 200 JSON ``{"replica", "method", "path", "body_bytes", "host"}``.

Not part of the serving path; the standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import cast


class _EchoProtocol(asyncio.Protocol):
    def __init__(self, name: str, event_gap_s: float, conns: set[_EchoProtocol]) -> None:
        self.conns = conns
        self.name = name
        self.event_gap_s = event_gap_s
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None
        self.busy = False
        self.task: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.conns.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.conns.discard(self)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if not self.busy:
            self._next()

    def _next(self) -> None:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        lines = bytes(self.buf[:end]).split(b"\r\n")
        method, path, _ = lines[0].decode("latin-1").split(" ", 2)
        length = 0
        host = ""
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            lname = name.strip().lower()
            if lname == b"content-length":
                length = int(value)
            elif lname == b"host":
                host = value.strip().decode("latin-1")
        if len(self.buf) < end + 4 + length:
            return
        del self.buf[: end + 4 + length]
        self.busy = True
        info = {
            "replica": self.name,
            "method": method,
            "path": path,
            "body_bytes": length,
            "host": host,
        }
        if path.startswith("/stream/"):
            self.task = asyncio.ensure_future(self._stream(int(path.rsplit("/", 1)[1])))
        elif path.startswith("/sleep/"):
            delay_s = float(path.split("/")[2].split("?")[0]) / 1000
            asyncio.get_running_loop().call_later(delay_s, self._answer, info)
        elif path.startswith("/bytes/"):
            self._write(b"x" * int(path.rsplit("/", 1)[1]), b"application/octet-stream")
        elif path == "/drop":
            assert self.transport is not None
            self.transport.close()
        elif path == "/healthz":
            self._write(b"ok", b"text/plain")
        else:
            self._answer(info)

    def _answer(self, info: dict[str, object]) -> None:
        self._write(json.dumps(info).encode(), b"application/json")

    def _write(self, body: bytes, content_type: bytes) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        self.transport.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: "
            + content_type
            + b"\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\n\r\n"
            + body
        )
        self._done()

    def _done(self) -> None:
        self.busy = False
        if self.buf:
            self._next()

    async def _stream(self, n: int) -> None:
        t = self.transport
        assert t is not None
        t.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n"
        )
        for i in range(n):
            event = f"data: {self.name} {i}\n\n".encode()
            t.write(f"{len(event):x}\r\n".encode() + event + b"\r\n")
            await asyncio.sleep(self.event_gap_s)
        t.write(b"0\r\n\r\n")
        self._done()


class EchoServer:
    """A listening echo replica; ``close()`` also closes the connections it accepted."""

    def __init__(self, server: asyncio.Server, conns: set[_EchoProtocol]) -> None:
        self.server = server
        self.conns = conns
        self.port = int(server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        self.server.close()
        for conn in list(self.conns):
            if conn.transport is not None:
                conn.transport.close()
        await asyncio.sleep(0)


async def serve(host: str, port: int, name: str, event_gap_s: float = 0.05) -> EchoServer:
    """Listen on ``host:port`` (0: a free port)."""
    loop = asyncio.get_running_loop()
    conns: set[_EchoProtocol] = set()
    server = await loop.create_server(
        lambda: _EchoProtocol(name, event_gap_s, conns), host, port, backlog=1024
    )
    return EchoServer(server, conns)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m phalanx.serving.echo")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--name", default="echo")
    parser.add_argument("--startup-delay-s", type=float, default=0.0)
    parser.add_argument("--event-gap-ms", type=float, default=50.0)
    args = parser.parse_args(argv)

    async def run() -> None:
        await asyncio.sleep(args.startup_delay_s)
        server = await serve(args.host, args.port, args.name, args.event_gap_ms / 1000)
        print(f"PORT {server.port}", flush=True)
        await server.server.serve_forever()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
