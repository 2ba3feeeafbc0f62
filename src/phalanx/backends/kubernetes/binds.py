"""Sending a gang's binds back to back, from one thread, on connections kept for binds.

Kubernetes has no request that binds several pods, so a gang of k pods is k ``pods/binding``
writes. If one is committed before the API server has even received another, the first pod
holds its node while a sibling has no bind on its way. Threads that meet at a barrier and
then each build and send one request leave milliseconds apart on a busy machine (each must
wake, take the interpreter lock and serialise its request), as long as the API server takes
to commit a bind. Here every request is built first, every connection is opened first, and
then one thread writes them all, one after another, before it reads any answer: the sends
are microseconds apart.

Must not import phalanx.backends.local, controllers, store or api.
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

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
    ) -> None:
        url = urllib.parse.urlsplit(str(configuration.host))
        self._prefix = url.path.rstrip("/")
        self._headers = headers
        self._lock = threading.Lock()
        self._idle: list[http.client.HTTPConnection] = []
        #: Connections opened so far (each a TCP connect and, for https, a TLS handshake).
        self.opened = 0
        if connect is not None:
            self._connect = connect
            return
        host, port = url.hostname or "localhost", url.port
        if url.scheme != "https":
            self._connect = lambda: http.client.HTTPConnection(host, port, timeout=TIMEOUT_S)
            return
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
        self._connect = lambda: http.client.HTTPSConnection(
            host, port, timeout=TIMEOUT_S, context=context
        )

    @staticmethod
    def supports(configuration: Any) -> bool:
        """Whether this sender can reach the API server as the client would: not through a
        proxy, and with no TLS server name other than the host's."""
        return not getattr(configuration, "proxy", None) and not getattr(
            configuration, "tls_server_name", None
        )

    def bind(self, requests: Sequence[BindRequest]) -> list[BindAnswer]:
        """Send every bind, then read every answer; one answer per request, in order. A
        connection that the server had closed while idle is replaced and its request sent
        again once (a bind that was applied answers 409 the second time)."""
        headers = {
            **self._headers(),
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        # 1. Build every request and open every connection before anything is sent.
        bodies = [
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
        for conn in idle:
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
