"""The router's response relay and request parser, byte by byte, without sockets."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from routerfakes import FakeTransport, NoSink

from phalanx.serving.endpoints import Route
from phalanx.serving.http1 import _ClientConn, _Upstream
from phalanx.serving.router import Router


class NoRoutes:
    def routes(self) -> Sequence[Route]:
        return ()


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"b;ext=1\r\ndata: one\n\n\r\n"
    b"b\r\ndata: two\n\n\r\n"
    b"0\r\nX-Trailer: yes\r\n\r\n"
)
FIXED = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"
EMPTY = b"HTTP/1.1 204 No Content\r\n\r\n"
INTERIM = b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n" + FIXED


def relay(response: bytes, piece: int) -> tuple[bytes, _Upstream, FakeTransport]:
    router = Router(NoRoutes(), NoSink())
    client = _ClientConn(router)
    client_t = FakeTransport()
    client.transport = client_t  # type: ignore[assignment]
    client.busy = True
    up = _Upstream(router, "http://127.0.0.1:1")
    up_t = FakeTransport()
    up.transport = up_t  # type: ignore[assignment]
    up.send(client, None, b"GET / HTTP/1.1\r\n\r\n", head=False)  # type: ignore[arg-type]
    for i in range(0, len(response), piece):
        up.data_received(response[i : i + piece])
    return bytes(client_t.out), up, up_t


@pytest.mark.parametrize(
    "response", [CHUNKED, FIXED, EMPTY, INTERIM], ids=["chunked", "fixed", "204", "103"]
)
@pytest.mark.parametrize("piece", [1, 2, 3, 7, 1000])
def test_a_response_passes_through_whole_in_any_pieces(response: bytes, piece: int) -> None:
    out, up, up_t = relay(response, piece)
    assert out == response
    assert up.client is None  # complete
    assert not up_t.closed  # kept for the next request


def test_events_are_written_as_they_arrive() -> None:
    router = Router(NoRoutes(), NoSink())
    client = _ClientConn(router)
    client_t = FakeTransport()
    client.transport = client_t  # type: ignore[assignment]
    up = _Upstream(router, "http://127.0.0.1:1")
    up.transport = FakeTransport()  # type: ignore[assignment]
    up.send(client, None, b"", head=False)  # type: ignore[arg-type]
    head_end = CHUNKED.index(b"b;ext")
    up.data_received(CHUNKED[: head_end + 20])
    assert bytes(client_t.out) == CHUNKED[: head_end + 20]
    assert up.client is client  # not complete yet


def test_connection_close_or_no_length_is_not_reused() -> None:
    _, _, up_t = relay(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx", 4)
    assert up_t.closed
    out, up, up_t = relay(b"HTTP/1.1 200 OK\r\n\r\nuntil close", 4)
    assert out.endswith(b"until close") and up.client is not None and not up_t.closed


def test_a_request_head_is_rewritten_for_the_replica() -> None:
    router = Router(NoRoutes(), NoSink())
    client = _ClientConn(router)
    client.connection_made(FakeTransport())  # type: ignore[arg-type]
    client.buf += (
        b"POST /svc/infer HTTP/1.1\r\nHost: h\r\nConnection: keep-alive\r\n"
        b"Transfer-Encoding: chunked\r\nX-A: 1\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\nGET"
    )
    request = client.parse()
    assert request is not None
    assert request.body == b"abcde" and bytes(client.buf) == b"GET"
    encoded = router._encode(request, b"/infer", client)
    assert encoded == (
        b"POST /infer HTTP/1.1\r\nHost: h\r\nX-A: 1\r\nx-forwarded-for: 10.0.0.9\r\n"
        b"content-length: 5\r\n\r\nabcde"
    )


def test_an_incomplete_request_waits_for_more_bytes() -> None:
    router = Router(NoRoutes(), NoSink())
    client = _ClientConn(router)
    client.connection_made(FakeTransport())  # type: ignore[arg-type]
    client.buf += b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\n12345"
    assert client.parse() is None
    client.buf += b"67890"
    request = client.parse()
    assert request is not None and request.body == b"1234567890"


def test_a_connection_paused_for_a_slow_client_reads_again_once_parked() -> None:
    router = Router(NoRoutes(), NoSink())
    client = _ClientConn(router)

    class FillingTransport(FakeTransport):
        def write(self, data: bytes) -> None:
            super().write(data)
            client.pause_writing()  # the client's buffer goes over its high-water mark

    client.connection_made(FillingTransport())  # type: ignore[arg-type]
    client.busy = True
    up = _Upstream(router, "http://127.0.0.1:1")
    up_t = FakeTransport()
    up.connection_made(up_t)  # type: ignore[arg-type]
    up.send(client, None, b"GET / HTTP/1.1\r\n\r\n", head=False)  # type: ignore[arg-type]
    up.data_received(FIXED[:40])
    assert up_t.paused  # back-pressure reached the replica
    up.data_received(FIXED[40:])
    assert up.client is None  # complete, parked for the next request
    assert not up_t.paused
    assert router._take_idle(up.url) is up


def test_an_http_1_0_request_goes_on_as_1_0_and_closes() -> None:
    router = Router(NoRoutes(), NoSink())
    client = _ClientConn(router)
    client.connection_made(FakeTransport())  # type: ignore[arg-type]
    client.buf += b"GET /a HTTP/1.0\r\nHost: h\r\n\r\n"
    request = client.parse()
    assert request is not None and not request.keep_alive
    assert router._encode(request, b"/a", client).startswith(b"GET /a HTTP/1.0\r\nHost: h\r\n")
