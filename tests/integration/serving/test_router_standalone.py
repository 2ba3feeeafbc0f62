"""``phalanx router`` on its own: routes from a server's ``GET /api/v1/routes``, load and
demand posted to ``POST /api/v1/routes/load``, with the client's token. The server here is a
small stand-in that speaks those two endpoints."""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from phalanx.serving.endpoints import Endpoint, Route, route_to_json

pytestmark = pytest.mark.integration

TOKEN = "s3cret"


@dataclass
class FakeApi:
    routes: list[Route] = field(default_factory=list)
    posts: list[dict[str, Any]] = field(default_factory=list)
    route_reads: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def demanded(self) -> list[str]:
        with self.lock:
            return [s for p in self.posts for s in p.get("demand", [])]


def serve_api(api: FakeApi) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _authorized(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {TOKEN}":
                return True
            self._send(401, {"error": {"code": "Unauthorized", "message": "bad token"}})
            return False

        def _send(self, status: int, body: object | None) -> None:
            data = b"" if body is None else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if not self._authorized():
                return
            assert self.path == "/api/v1/routes"
            with api.lock:
                api.route_reads += 1
                body = [route_to_json(r) for r in api.routes]
            self._send(200, body)

        def do_POST(self) -> None:
            if not self._authorized():
                return
            assert self.path == "/api/v1/routes/load"
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with api.lock:
                api.posts.append(body)
            self._send(204, None)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def start_process(*args: str, marker: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if marker not in line:
        proc.kill()
        _, err = proc.communicate()
        raise AssertionError(f"{args} did not start: {line!r} {err[-2000:]}")
    return proc, line


def stop_process(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


@pytest.fixture
def api() -> Iterator[tuple[FakeApi, str]]:
    fake = FakeApi()
    server = serve_api(fake)
    yield fake, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def echo() -> Iterator[str]:
    proc, line = start_process("-m", "phalanx.serving.echo", "--name", "e0", marker="PORT ")
    yield f"http://127.0.0.1:{int(line.split()[1])}"
    stop_process(proc)


def get(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def test_routes_from_the_api_and_demand_back(api: tuple[FakeApi, str], echo: str) -> None:
    fake, url = api
    fake.routes = [Route("svc", "/svc", cold_start_timeout_s=20)]
    router, line = start_process(
        "-m",
        "phalanx.cli",
        "router",
        "--server",
        url,
        "--token",
        TOKEN,
        "--port",
        "0",
        "--poll-interval",
        "0.2",
        marker="router on http://127.0.0.1:",
    )
    try:
        port = int(line.split("http://127.0.0.1:", 1)[1].split(",", 1)[0])
        assert "1 service(s)" in line
        result: list[tuple[int, bytes]] = []
        waiting = threading.Thread(target=lambda: result.append(get(port, "/svc/hello")))
        waiting.start()
        # The waiting request is reported as demand for the service.
        deadline = time.monotonic() + 10
        while "svc" not in fake.demanded() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert fake.demanded()[:1] == ["svc"]
        assert not result
        # A replica appears; the router sees it at its next (fast) poll.
        with fake.lock:
            fake.routes = [
                Route(
                    "svc", "/svc", cold_start_timeout_s=20, endpoints=(Endpoint(echo, "r1", "e0"),)
                )
            ]
        waiting.join(15)
        status, body = result[0]
        assert status == 200 and json.loads(body)["path"] == "/hello"
        # Load samples follow, about once a second.
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with fake.lock:
                samples = [s for p in fake.posts for s in p.get("samples", [])]
            if any(s["service"] == "svc" and s["requestsTotal"] == 1 for s in samples):
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"no load sample with the request: {fake.posts}")
    finally:
        stop_process(router)


def test_a_refused_token_is_an_error_that_says_so(api: tuple[FakeApi, str]) -> None:
    _, url = api
    done = subprocess.run(
        [sys.executable, "-m", "phalanx.cli", "router", "--server", url, "--token", "wrong"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "refused GET /api/v1/routes (401)" in done.stderr
    assert "--token" in done.stderr


def test_no_server_is_an_error_that_names_it() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "phalanx.cli", "router", "--server", "http://127.0.0.1:9"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1 and "cannot reach the phalanx server at http://127.0.0.1:9" in (
        done.stderr
    )
