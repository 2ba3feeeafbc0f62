"""Sending a gang's binds together, from one thread, on connections kept for binds.

Kubernetes has no request that binds several pods, so a gang of k pods is k ``pods/binding``
writes. If one is committed before the API server has even received another, the first pod
holds its node while a sibling has no bind on its way. Threads that meet at a barrier and
then each build and send one request leave milliseconds apart on a busy machine (each must
wake, take the interpreter lock and serialise its request), as long as the API server takes
to commit a bind. Here every request is built first, and then they leave together:

- over HTTP/2 (https, the h2 library installed, and the server choosing "h2" by ALPN), as
  streams of one connection written with one ``sendall`` (http2.py): the API server reads
  the whole gang at once, and no send can be descheduled between two binds;
- otherwise over HTTP/1.1, a connection per bind: every connection opened first, then one
  thread writes the requests back to back before it reads any answer, so the sends are
  microseconds apart unless the kernel takes the core away in between.

Must not import phalanx.backends.local, controllers, store or api.
"""

from __future__ import annotations

import http.client
import json
import logging
import socket
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from phalanx.backends.kubernetes import http2

log = logging.getLogger(__name__)

#: Idle connections kept for the next burst (more are opened when a burst needs them).
MAX_IDLE = 32
TIMEOUT_S = 60.0


@dataclass(frozen=True, slots=True)
class BindRequest:
    namespace: str
    pod: str
    node: str


@dataclass(frozen=True, slots=True)
class BindAnswer:
    """An HTTP status and the first bytes of its body; status 0: no answer (``error`` says
    why)."""

    status: int
    body: str = ""
    error: str = ""


class BindSender:
    """Binds pods through connections of its own to the API server of ``configuration`` (a
    ``kubernetes.client.Configuration``); ``headers`` gives each burst's request headers
    (authentication included, read afresh so refreshed tokens are used)."""

    def __init__(
        self,
        configuration: Any,
        headers: Callable[[], dict[str, str]],
        connect: Callable[[], http.client.HTTPConnection] | None = None,
        connect_http2: Callable[[], http2.Http2Connection | None] | None = None,
    ) -> None:
        url = urllib.parse.urlsplit(str(configuration.host))
        self._prefix = url.path.rstrip("/")
        self._headers = headers
        self._lock = threading.Lock()
        self._idle: list[http.client.HTTPConnection] = []
        self._idle_http2: list[http2.Http2Connection] = []
        #: Connections opened so far (each a TCP connect and, for https, a TLS handshake).
        self.opened = 0
        #: Whether bursts go over HTTP/2 (http2.py). Turned off for good once the server does
        #: not choose "h2"; tests turn it off to exercise the HTTP/1.1 path.
        self.http2 = connect_http2 is not None
        self._connect_http2 = connect_http2 or (lambda: None)
        host, port = url.hostname or "localhost", url.port
        if connect is not None:
            self._connect = connect
            return
        if url.scheme != "https":
            self._connect = lambda: http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
            return
        context = _ssl_context(configuration)
        self._connect = lambda: http.client.HTTPSConnection(
            host, port, timeout=TIMEOUT_S, context=context
        )
        if connect_http2 is None and http2.AVAILABLE:
            self._connect_http2 = _http2_connector(configuration, host, port or 443)
            self.http2 = True

    @staticmethod
    def supports(configuration: Any) -> bool:
        """Whether this sender can reach the API server as the client would: not through a
        proxy, and with no TLS server name other than the host's."""
        return not getattr(configuration, "proxy", None) and not getattr(
            configuration, "tls_server_name", None
        )

    def bind(self, requests: Sequence[BindRequest]) -> list[BindAnswer]:
        """Send every bind, then read every answer; one answer per request, in order. A
        request the server did not act on (a connection it had closed while idle, a refused
        stream) is sent again once on a fresh connection (a bind that was applied answers 409
        the second time)."""
        headers = {
            **self._headers(),
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        bodies = self._bodies(requests)
        if self.http2:
            answers = self._bind_http2(bodies, headers)
            if answers is not None:
                return answers
        return self._bind_http1(bodies, headers)

    def _bodies(self, requests: Sequence[BindRequest]) -> list[tuple[str, bytes]]:
        """(path, JSON body) of each bind."""
        return [
            (
                f"{self._prefix}/api/v1/namespaces/{urllib.parse.quote(r.namespace)}/pods/"
                f"{urllib.parse.quote(r.pod)}/binding",
                json.dumps(
                    {
                        "apiVersion": "v1",
                        "kind": "Binding",
                        "metadata": {"name": r.pod, "namespace": r.namespace},
                        "target": {"apiVersion": "v1", "kind": "Node", "name": r.node},
                    }
                ).encode(),
            )
            for r in requests
        ]

    def _bind_http2(
        self, bodies: list[tuple[str, bytes]], headers: dict[str, str]
    ) -> list[BindAnswer] | None:
        """Every bind as a stream of one HTTP/2 connection, all written at once; None when the
        server did not choose HTTP/2 (the caller sends them over HTTP/1.1 instead)."""
        requests = [http2.Request("POST", path, body) for path, body in bodies]
        pairs = list(headers.items())
        answers: list[http2.Response | None] = [None] * len(requests)
        # 1. An idle connection, or a new one; 2. a fresh one for what the first left undone.
        for attempt in range(2):
            todo = [i for i, a in enumerate(answers) if a is None]
            if not todo:
                break
            try:
                conn = self._take_http2() if attempt == 0 else self._new_http2()
            except OSError as exc:
                why = f"cannot connect: {exc}"
                for i in todo:
                    answers[i] = http2.Response(0, error=why)
                break
            if conn is None:  # no HTTP/2 from this server
                if attempt == 0:
                    return None
                break
            got = conn.exchange([requests[i] for i in todo], pairs)
            for i, answer in zip(todo, got, strict=True):
                answers[i] = answer
            self._give_http2(conn)
        return [
            BindAnswer(a.status, a.body[:300].decode(errors="replace"), a.error)
            if a is not None
            else BindAnswer(0, error="no answer on a fresh connection")
            for a in answers
        ]

    def _bind_http1(
        self, bodies: list[tuple[str, bytes]], headers: dict[str, str]
    ) -> list[BindAnswer]:
        """Every bind on a connection of its own: all sent, then all answers read."""
        # 1. Open every connection before anything is sent.
        conns = self._take(len(bodies))
        answers: list[BindAnswer | None] = [None] * len(bodies)
        for i, conn in enumerate(conns):
            if conn.sock is None:
                try:
                    conn.connect()
                except OSError as exc:
                    answers[i] = BindAnswer(0, error=f"cannot connect: {exc}")
        # 2. Send them all, back to back.
        sent = [False] * len(bodies)
        for i, (conn, (path, body)) in enumerate(zip(conns, bodies, strict=True)):
            if answers[i] is None:
                sent[i] = self._send(conn, path, body, headers)
        # 3. Read every answer; a request whose connection had gone stale goes again.
        for i, (conn, (path, body)) in enumerate(zip(conns, bodies, strict=True)):
            if answers[i] is not None:
                conn.close()
                continue
            answer = self._read(conn) if sent[i] else None
            if answer is None:
                conn.close()
                conns[i] = fresh = self._new()
                answer = (
                    self._read(fresh)
                    if self._send(fresh, path, body, headers)
                    else BindAnswer(0, error="the connection failed twice")
                ) or BindAnswer(0, error="no answer on a fresh connection")
            answers[i] = answer
        for conn, answer in zip(conns, answers, strict=True):
            if answer is not None and answer.status:
                self._give(conn)
            else:
                conn.close()
        return [a if a is not None else BindAnswer(0, error="not sent") for a in answers]

    def close(self) -> None:
        with self._lock:
            idle, self._idle = self._idle, []
            idle_http2, self._idle_http2 = self._idle_http2, []
        for conn in idle:
            conn.close()
        for conn2 in idle_http2:
            conn2.close()

    def _new_http2(self) -> http2.Http2Connection | None:
        """A new HTTP/2 connection, or None (and HTTP/2 off from now on) when the server did
        not choose it."""
        with self._lock:
            self.opened += 1
        conn = self._connect_http2()
        if conn is None and self.http2:
            self.http2 = False
            log.info("the API server did not choose HTTP/2: gangs are bound over HTTP/1.1")
        return conn

    def _take_http2(self) -> http2.Http2Connection | None:
        with self._lock:
            if self._idle_http2:
                return self._idle_http2.pop()
        return self._new_http2()

    def _give_http2(self, conn: http2.Http2Connection) -> None:
        if conn.usable:
            with self._lock:
                if len(self._idle_http2) < MAX_IDLE:
                    self._idle_http2.append(conn)
                    return
        conn.close()

    def _new(self) -> http.client.HTTPConnection:
        with self._lock:
            self.opened += 1
        return self._connect()

    def _take(self, count: int) -> list[http.client.HTTPConnection]:
        with self._lock:
            taken = self._idle[-count:] if count else []
            del self._idle[len(self._idle) - len(taken) :]
        return taken + [self._new() for _ in range(count - len(taken))]

    def _give(self, conn: http.client.HTTPConnection) -> None:
        if conn.sock is None:  # closed by the server's answer: not worth keeping
            return
        with self._lock:
            if len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    @staticmethod
    def _send(
        conn: http.client.HTTPConnection, path: str, body: bytes, headers: dict[str, str]
    ) -> bool:
        try:
            if conn.sock is None:
                conn.connect()
            conn.request("POST", path, body=body, headers=headers)
        except (OSError, http.client.HTTPException):
            return False
        return True

    @staticmethod
    def _read(conn: http.client.HTTPConnection) -> BindAnswer | None:
        """The answer, or None when the connection gave none (closed while idle)."""
        try:
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException):
            return None
        if response.will_close:
            conn.close()
        return BindAnswer(response.status, data[:300].decode(errors="replace"))


def _ssl_context(configuration: Any, alpn: Sequence[str] = ()) -> ssl.SSLContext:
    """The TLS settings of the client's ``configuration``: its CA, client certificate and
    verification, offering ``alpn`` protocols when given."""
    context = ssl.create_default_context(
        cafile=configuration.ssl_ca_cert or None,
        cadata=getattr(configuration, "ca_cert_data", None) or None,
    )
    if not configuration.verify_ssl:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif configuration.assert_hostname is False:
        context.check_hostname = False
    if configuration.cert_file:
        context.load_cert_chain(configuration.cert_file, configuration.key_file)
    if alpn:
        context.set_alpn_protocols(list(alpn))
    return context


def _http2_connector(
    configuration: Any, host: str, port: int
) -> Callable[[], http2.Http2Connection | None]:
    """Opens TLS connections offering only "h2": an HTTP/2 connection, or None when the
    server chose no protocol (raises OSError when it cannot connect)."""
    context = _ssl_context(configuration, alpn=("h2",))

    def connect() -> http2.Http2Connection | None:
        raw = socket.create_connection((host, port), timeout=TIMEOUT_S)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock = context.wrap_socket(raw, server_hostname=host)
        except BaseException:
            raw.close()
            raise
        if sock.selected_alpn_protocol() != "h2":
            sock.close()
            return None
        return http2.Http2Connection(sock, f"[{host}]:{port}" if ":" in host else f"{host}:{port}")

    return connect
