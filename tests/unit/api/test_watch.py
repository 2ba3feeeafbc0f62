"""GET /api/v1/watch against uvicorn on a real socket: events in revision order from a list's
resourceVersion, the ERROR event when the log no longer holds it, heartbeats, and streams
that end when the client leaves or the server stops."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from phalanx.api import create_app
from phalanx.api.watch import WatchSettings
from phalanx.client import ApiError, Client
from phalanx.controllers.plane import ControlPlane

TOKEN = "watch-token"


Manifest = dict[str, object]
MakeJob = Callable[..., Manifest]
Event = dict[str, object]


@dataclass
class LiveServer:
    """The app of ``plane`` served by uvicorn on 127.0.0.1 (watch heartbeats every 0.3 s)."""

    url: str
    server: uvicorn.Server
    data_dir: Path

    def http(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
        )

    def client(self) -> Client:
        return Client(server=self.url, token=TOKEN, data_dir=self.data_dir)

    def stop(self) -> None:
        self.server.should_exit = True


@pytest.fixture
def live(plane: ControlPlane, tmp_path: Path) -> Iterator[LiveServer]:
    sock = socket.create_server(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    holder: list[uvicorn.Server] = []
    app = create_app(
        plane,
        TOKEN,
        is_stopping=lambda: holder[0].should_exit,
        watch=WatchSettings(poll_s=0.05, heartbeat_s=0.3),
    )
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", timeout_graceful_shutdown=5)
    )
    holder.append(server)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield LiveServer(f"http://127.0.0.1:{port}", server, tmp_path / "client")
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


def sse(lines: Iterator[str]) -> Iterator[Event | str]:
    """Yield each event's data (parsed) and each comment (as text), in stream order."""
    data: list[str] = []
    for line in lines:
        if line.startswith(":"):
            yield line[1:].strip()
        elif line.startswith("data:"):
            data.append(line[len("data:") :].strip())
        elif not line and data:
            yield json.loads("\n".join(data))
            data = []


def read_until(
    stream: Iterator[Event | str], done: Callable[[list[Event]], bool], timeout_s: float = 20
) -> list[Event]:
    """Events from ``stream`` until ``done(events)``; heartbeats keep the deadline checked."""
    events: list[Event] = []
    deadline = time.monotonic() + timeout_s
    for item in stream:
        if isinstance(item, dict):
            events.append(item)
            if done(events):
                return events
        assert time.monotonic() < deadline, f"gave up waiting; events so far: {events}"
    raise AssertionError(f"the stream ended early; events: {events}")


def apply(http: httpx.Client, *manifests: Manifest) -> None:
    response = http.post("/api/v1/apply", json={"manifests": list(manifests)})
    assert response.status_code == 200, response.text


def test_a_watch_from_a_list_reports_every_change_in_order(
    live: LiveServer, setup_yaml: str, make_job: MakeJob
) -> None:
    with live.http() as http:
        http.post("/api/v1/apply", content=setup_yaml, headers={"Content-Type": "application/yaml"})
        listed = http.get("/api/v1/jobs")
        assert listed.json() == []
        since = int(listed.headers["X-Resource-Version"])
        params = {"resourceVersion": since, "kinds": "Job"}
        with http.stream("GET", "/api/v1/watch", params=params) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            stream = sse(response.iter_lines())
            apply(http, make_job("w", "import time; time.sleep(60)"))
            running = read_until(
                stream, lambda es: any(e["object"]["phase"] == "Running" for e in es)
            )
            assert http.post("/api/v1/jobs/w/cancel").status_code == 200
            # Events carry the object as it is when the stream reads the change, and a change
            # whose object is gone by then is left out: see Cancelled before deleting the job.
            cancelled = read_until(
                stream, lambda es: any(e["object"]["phase"] == "Cancelled" for e in es)
            )
            # a queue change while we watch jobs only: not reported
            apply(http, relabelled_queue())
            assert http.delete("/api/v1/jobs/w").status_code == 204
            rest = read_until(stream, lambda es: es[-1]["type"] == "DELETED")
    events = running + cancelled + rest
    assert events[0]["type"] == "ADDED"
    assert {e["kind"] for e in events} == {"Job"}
    assert {e["name"] for e in events} == {"w"}
    versions = [e["resourceVersion"] for e in events]
    assert versions == sorted(set(versions)) and versions[0] > since
    assert all(e["type"] == "MODIFIED" for e in events[1:-1])
    assert "object" not in events[-1]
    for event in events[:-1]:
        obj = event["object"]
        assert obj["name"] == "w" and obj["events"] == []  # as lists show jobs
        assert obj["metadata"]["resourceVersion"] >= event["resourceVersion"]


def relabelled_queue() -> Manifest:
    """Queue team-a of the setup YAML with a label added."""
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Queue",
        "metadata": {"name": "team-a", "labels": {"x": "1"}},
        "spec": {
            "flavors": [
                {"name": "default", "resources": {"cpu": 2, "memory": "4Gi", "nvidia.com/gpu": 4}}
            ]
        },
    }


def test_queues_and_flavors_are_watched_too(live: LiveServer, setup_yaml: str) -> None:
    with live.client() as client:
        since = client.queue_page().resource_version
        client.apply_yaml(setup_yaml)
        events = []
        for event in client.watch(since, timeout_s=10):
            events.append(event)
            if event["kind"] == "Queue":
                client.delete("rf", "default")
            if event["type"] == "DELETED":
                break
    assert [(e["type"], e["kind"], e["name"]) for e in events] == [
        ("ADDED", "ResourceFlavor", "default"),
        ("ADDED", "Queue", "team-a"),
        ("DELETED", "ResourceFlavor", "default"),
    ]
    assert events[1]["object"]["nominal"]["nvidia.com/gpu"] == "4"  # type: ignore[index]


def test_a_revision_the_log_no_longer_holds_gets_the_error_event(
    live: LiveServer, plane: ControlPlane, make_job: MakeJob
) -> None:
    with live.http() as http:
        for i in range(4):
            apply(http, make_job(f"p{i}", "pass", queue="nowhere"))
        plane.store.compact(keep=1)
        response = http.get("/api/v1/watch", params={"resourceVersion": 1})
        (event,) = [e for e in sse(iter(response.text.splitlines())) if isinstance(e, dict)]
        assert event["type"] == "ERROR"
        error = event["error"]
        assert error["code"] == "Expired"  # type: ignore[index]
        assert "resourceVersion 1 is too old" in error["message"]  # type: ignore[index]
        assert "list again" in error["message"]  # type: ignore[index]

        future = http.get("/api/v1/watch", params={"resourceVersion": 10**9})
        (event,) = [e for e in sse(iter(future.text.splitlines())) if isinstance(e, dict)]
        assert event["type"] == "ERROR" and "newer than" in event["error"]["message"]  # type: ignore[index]

    with live.client() as client, pytest.raises(ApiError) as caught:
        list(client.watch(1))
    assert (caught.value.status, caught.value.code) == (410, "Expired")


@pytest.mark.parametrize(
    ("kinds", "fragment"),
    [
        pytest.param("widgets", "kinds: unknown kind 'widgets'; known kinds: ", id="unknown"),
        pytest.param("nodes", "kinds: nodes are observed from the backend", id="nodes"),
    ],
)
def test_kinds_that_cannot_be_watched_are_400(live: LiveServer, kinds: str, fragment: str) -> None:
    with live.http() as http:
        response = http.get("/api/v1/watch", params={"kinds": kinds})
    assert response.status_code == 400
    assert fragment in response.json()["error"]["message"]


def test_a_quiet_watch_sends_heartbeats(live: LiveServer) -> None:
    with live.http() as http, http.stream("GET", "/api/v1/watch") as response:
        comments = []
        for item in sse(response.iter_lines()):
            assert isinstance(item, str), item
            comments.append(item)
            if comments.count("heartbeat") == 2:
                break
    assert comments[0].startswith("watching Job,Queue,ResourceFlavor after ")


def open_watches(http: httpx.Client) -> int:
    return int(http.get("/healthz").json()["watches"])


def wait_until(condition: Callable[[], bool], timeout_s: float = 5) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_a_client_that_goes_away_ends_its_stream(live: LiveServer) -> None:
    with live.http() as http:
        watcher = httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {TOKEN}"})
        response = watcher.send(watcher.build_request("GET", "/api/v1/watch"), stream=True)
        lines = response.iter_lines()  # kept: dropping the iterator closes the connection
        next(lines)  # the stream is open
        assert open_watches(http) == 1
        response.close()
        watcher.close()
        wait_until(lambda: open_watches(http) == 0)


def test_a_server_shutdown_ends_open_streams(live: LiveServer) -> None:
    with live.http() as http, http.stream("GET", "/api/v1/watch") as response:
        lines = response.iter_lines()
        next(lines)
        started = time.monotonic()
        live.stop()
        for _ in lines:  # heartbeats until the stream ends
            assert time.monotonic() - started < 3, "the stream outlived the shutdown"
    assert time.monotonic() - started < 3
