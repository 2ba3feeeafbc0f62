"""A gang's binds over HTTP/2: every stream framed first and written with one ``sendall``; the
answers read per stream (refused streams and GOAWAY'd ones sent again on a fresh connection,
other resets failing only their bind); HTTP/1.1 when the server does not choose "h2".

The server is a real h2 server connection on the other end of a socket pair (or of a TLS
connection, for ALPN). Without h2 (the ``kubernetes`` extra) these are skipped, or fail
where PHALANX_REQUIRE_K8S=1 (CI)."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from phalanx.api.tls import self_signed_pair
from phalanx.backends.kubernetes import http2
from phalanx.backends.kubernetes.binds import BindRequest, BindSender

if not http2.AVAILABLE:
    _why = "h2 is not installed: pip install -e '.[kubernetes]'"
    if os.environ.get("PHALANX_REQUIRE_K8S") == "1":  # CI installs the extra
        raise ImportError(_why)
    pytest.skip(_why, allow_module_level=True)

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from h2frames import DATA, HEADERS, written_frames

#: What the server does with a bind: a status, "refuse" (REFUSED_STREAM), "reset"
#: (INTERNAL_ERROR) or "goaway" (GOAWAY naming the streams before this one as processed).
Answer = Callable[[str], "int | str"]


@dataclass
class _Server:
    """One h2 server connection on ``sock``, in a thread; it records the requests it read."""

    sock: socket.socket
    answer: Answer
    max_streams: int | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        )
        self._gone = False  # after its GOAWAY the server answers nothing more
        if self.max_streams is not None:
            self._conn.local_settings = h2.settings.Settings(
                client=False,
                initial_values={h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.max_streams},
            )
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        self._conn.initiate_connection()
        self.sock.sendall(self._conn.data_to_send())
        heads: dict[int, dict[str, str]] = {}
        bodies: dict[int, bytes] = {}
        while True:
            try:
                data = self.sock.recv(65536)
            except OSError:
                return
            if not data:
                return
            try:
                events = self._conn.receive_data(data)
            except h2.exceptions.ProtocolError:
                if self._gone:  # frames the client sent before it read our GOAWAY
                    return
                raise
            for event in events:
                if isinstance(event, h2.events.RequestReceived):
                    heads[event.stream_id] = dict(event.headers or ())  # type: ignore[arg-type]
                elif isinstance(event, h2.events.DataReceived):
                    bodies[event.stream_id] = bodies.get(event.stream_id, b"") + (event.data or b"")
                    self._conn.acknowledge_received_data(
                        event.flow_controlled_length or 0, event.stream_id
                    )
                elif isinstance(event, h2.events.StreamEnded):
                    self._respond(event.stream_id, heads[event.stream_id], bodies[event.stream_id])
            try:
                self.sock.sendall(self._conn.data_to_send())
            except OSError:
                return

    def _respond(self, stream_id: int, head: dict[str, str], body: bytes) -> None:
        if self._gone:
            return
        self.requests.append({**head, "body": json.loads(body)})
        what = self.answer(head[":path"])
        if what == "refuse":
            self._conn.reset_stream(stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
        elif what == "reset":
            self._conn.reset_stream(stream_id, h2.errors.ErrorCodes.INTERNAL_ERROR)
        elif what == "goaway":
            self.requests.pop()  # not processed
            self._conn.close_connection(last_stream_id=stream_id - 2)
            self._gone = True
        else:
            text = json.dumps({"kind": "Status", "code": what}).encode()
            self._conn.send_headers(stream_id, [(":status", str(what))])
            self._conn.send_data(stream_id, text, end_stream=True)

    def close(self) -> None:
        with contextlib.suppress(OSError):  # wakes the thread's recv
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(5)


class _RecordingSocket:
    """The client's end: every ``sendall`` recorded."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.writes: list[bytes] = []

    def sendall(self, data: bytes, /) -> None:
        self.writes.append(bytes(data))
        self.sock.sendall(data)

    def recv(self, size: int, /) -> bytes:
        return self.sock.recv(size)

    def close(self) -> None:
        self.sock.close()


@dataclass
class _Pairs:
    """Connections made for a sender: each a socket pair with a server on the far end."""

    answers: list[Answer]
    servers: list[_Server] = field(default_factory=list)
    clients: list[_RecordingSocket] = field(default_factory=list)

    def connect(self) -> http2.Http2Connection:
        ours, theirs = socket.socketpair()
        ours.settimeout(10)
        answer = self.answers[min(len(self.servers), len(self.answers) - 1)]
        self.servers.append(_Server(theirs, answer))
        self.clients.append(_RecordingSocket(ours))
        return http2.Http2Connection(self.clients[-1], "apiserver:6443")

    def requests(self) -> list[dict[str, Any]]:
        return [r for s in self.servers for r in s.requests]


@pytest.fixture
def pairs() -> Iterator[Callable[..., tuple[BindSender, _Pairs]]]:
    made: list[tuple[BindSender, _Pairs]] = []

    def make(*answers: Answer) -> tuple[BindSender, _Pairs]:
        p = _Pairs(list(answers))
        configuration = SimpleNamespace(host="http://apiserver:6443")
        sender = BindSender(
            configuration, lambda: {"Authorization": "Bearer t0k"}, connect_http2=p.connect
        )
        made.append((sender, p))
        return sender, p

    yield make
    for sender, p in made:
        sender.close()
        for server in p.servers:
            server.close()


def _gang(n: int) -> list[BindRequest]:
    return [BindRequest("team-a", f"wide-{i}", f"node-{i % 3}") for i in range(n)]


def test_every_bind_of_a_gang_leaves_in_one_write(pairs: Any) -> None:
    sender, p = pairs(lambda path: 201)
    answers = sender.bind(_gang(8))
    assert [a.status for a in answers] == [201] * 8
    assert len(p.clients) == 1
    # The whole gang, connection preface included, is one write: 8 streams, every HEADERS
    # frame before the first DATA frame (no handler can act before the last HEADERS).
    frames = [f for f in written_frames(p.clients[0].writes[0]) if f[0] in (HEADERS, DATA)]
    streams = [1, 3, 5, 7, 9, 11, 13, 15]
    assert frames == [(HEADERS, s) for s in streams] + [(DATA, s) for s in streams]
    for later in p.clients[0].writes[1:]:  # only acknowledgements follow
        assert not [f for f in written_frames(later) if f[0] in (HEADERS, DATA)]
    # The server read each bind as sent.
    seen = sorted(p.requests(), key=lambda r: r[":path"])
    assert [r[":path"] for r in seen] == [
        f"/api/v1/namespaces/team-a/pods/wide-{i}/binding" for i in range(8)
    ]
    assert {r[":method"] for r in seen} == {"POST"}
    assert {r["authorization"] for r in seen} == {"Bearer t0k"}
    assert seen[5]["body"] == {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": "wide-5", "namespace": "team-a"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "node-2"},
    }


def test_the_next_gang_reuses_the_connection_in_one_write(pairs: Any) -> None:
    sender, p = pairs(lambda path: 201)
    sender.bind(_gang(2))
    answers = sender.bind([BindRequest("team-a", f"next-{i}", "node-0") for i in range(4)])
    assert [a.status for a in answers] == [201] * 4
    assert sender.opened == 1
    carrying = [w for w in p.clients[0].writes if any(k == HEADERS for k, _ in written_frames(w))]
    assert [len([f for f in written_frames(w) if f[0] == HEADERS]) for w in carrying] == [2, 4]


def test_answers_keep_their_status_and_body(pairs: Any) -> None:
    sender, _ = pairs(lambda path: 409 if "wide-1" in path else 201)
    answers = sender.bind(_gang(3))
    assert [a.status for a in answers] == [201, 409, 201]
    assert json.loads(answers[1].body) == {"kind": "Status", "code": 409}


def test_a_refused_stream_goes_again_on_a_fresh_connection(pairs: Any) -> None:
    sender, p = pairs(lambda path: "refuse" if "wide-2" in path else 201, lambda path: 201)
    answers = sender.bind(_gang(4))
    assert [a.status for a in answers] == [201] * 4
    assert sender.opened == 2
    assert [r[":path"].split("/")[-2] for r in p.servers[1].requests] == ["wide-2"]


def test_a_goaway_sends_the_streams_it_left_out_again(pairs: Any) -> None:
    sender, p = pairs(lambda path: "goaway" if "wide-2" in path else 201, lambda path: 201)
    answers = sender.bind(_gang(4))
    assert [a.status for a in answers] == [201] * 4
    again = sorted(r[":path"].split("/")[-2] for r in p.servers[1].requests)
    assert "wide-2" in again and "wide-0" not in again


def test_a_reset_stream_fails_only_its_bind(pairs: Any) -> None:
    sender, p = pairs(lambda path: "reset" if "wide-1" in path else 201)
    answers = sender.bind(_gang(3))
    assert [a.status for a in answers] == [201, 0, 201]
    assert "stream reset by the server" in answers[1].error
    assert "INTERNAL_ERROR" in answers[1].error
    assert len(p.servers) == 1  # not sent again: the server may have acted on it


def test_a_closed_connection_is_replaced_and_its_binds_sent_again(pairs: Any) -> None:
    sender, p = pairs(lambda path: 201)
    sender.bind(_gang(1))
    p.servers[0].close()  # the server closed the idle connection
    answers = sender.bind(_gang(3))
    assert [a.status for a in answers] == [201] * 3
    assert sender.opened == 2


def test_more_streams_than_the_server_allows_go_in_several_writes() -> None:
    ours, theirs = socket.socketpair()
    ours.settimeout(10)
    server = _Server(theirs, lambda path: 201, max_streams=3)
    client = _RecordingSocket(ours)
    conn = http2.Http2Connection(client, "apiserver:6443")
    try:
        conn.exchange([http2.Request("POST", "/warm", b"{}")], [])  # reads the server's limit
        answers = conn.exchange([http2.Request("POST", f"/{i}", b"{}") for i in range(7)], [])
    finally:
        conn.close()
        server.close()
    assert [a.status if a else None for a in answers] == [201] * 7
    per_write = [sum(1 for k, _ in written_frames(w) if k == HEADERS) for w in client.writes]
    assert [n for n in per_write if n] == [1, 3, 3, 1]


# ALPN, over real TLS: the server chooses "h2", or only HTTP/1.1.


class _BindHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        body = b'{"kind":"Status","code":201}'
        self.send_response(201)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


def _serve_http1(sock: ssl.SSLSocket) -> None:
    try:
        _BindHandler(sock, ("127.0.0.1", 0), None)  # type: ignore[arg-type]
    finally:
        sock.close()


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[Callable[[bool], tuple[Any, list[str]]]]:
    """A TLS server on 127.0.0.1 (port 0) that speaks HTTP/2 when ``offers_h2``, else only
    HTTP/1.1; yields (a client configuration, the protocols its connections chose)."""
    cert, key = self_signed_pair(tmp_path, "127.0.0.1")
    stops: list[Callable[[], None]] = []

    def start(offers_h2: bool) -> tuple[Any, list[str]]:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        context.set_alpn_protocols(["h2", "http/1.1"] if offers_h2 else ["http/1.1"])
        listener = socket.create_server(("127.0.0.1", 0))
        chosen: list[str] = []
        servers: list[_Server] = []

        def accept() -> None:
            while True:
                try:
                    raw, _ = listener.accept()
                except OSError:
                    return
                sock = context.wrap_socket(raw, server_side=True)
                chosen.append(sock.selected_alpn_protocol() or "")
                if chosen[-1] == "h2":
                    servers.append(_Server(sock, lambda path: 201))
                else:
                    threading.Thread(target=_serve_http1, args=(sock,), daemon=True).start()

        thread = threading.Thread(target=accept, daemon=True)
        thread.start()

        def stop() -> None:
            with contextlib.suppress(OSError):  # wakes the thread's accept
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
            thread.join(5)
            for s in servers:
                s.close()

        stops.append(stop)
        port = listener.getsockname()[1]
        configuration = SimpleNamespace(
            host=f"https://127.0.0.1:{port}",
            ssl_ca_cert=str(cert),
            verify_ssl=True,
            assert_hostname=None,
            cert_file=None,
            key_file=None,
        )
        return configuration, chosen

    yield start
    for stop in stops:
        stop()


def test_binds_go_over_http2_when_the_server_chooses_it(tls_server: Any) -> None:
    configuration, chosen = tls_server(True)
    sender = BindSender(configuration, dict)
    try:
        answers = sender.bind(_gang(3))
    finally:
        sender.close()
    assert [a.status for a in answers] == [201] * 3
    assert chosen == ["h2"] and sender.http2


def test_binds_fall_back_to_http1_when_the_server_does_not_choose_http2(
    tls_server: Any,
) -> None:
    configuration, chosen = tls_server(False)
    sender = BindSender(configuration, dict)
    try:
        answers = sender.bind(_gang(3))
        again = sender.bind(_gang(2))
    finally:
        sender.close()
    assert [a.status for a in answers + again] == [201] * 5
    assert not sender.http2
    # One HTTP/2 attempt (no protocol agreed), then a connection per bind (the second
    # burst reuses them).
    assert len(chosen) == 4 and "h2" not in chosen
