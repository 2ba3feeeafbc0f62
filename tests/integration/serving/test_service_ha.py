"""Services on a highly available control plane: two ``phalanx up --ha`` servers on one
PostgreSQL store. Only the leader reconciles, yet both routers route: a request to the
follower's router at zero replicas is the demand that makes the leader start one, and then it
is answered; load that only the follower's router sees makes the leader scale up."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from service_harness import service_manifest

from ha_servers import UpServer, kill_leftover_pods, wait_until
from phalanx.testing import queue_manifests

pytestmark = [pytest.mark.integration, pytest.mark.postgres]


class HaServer(UpServer):
    """One ``phalanx up --ha`` process (one CPU-only virtual node): its API client and its
    router's address."""

    def __init__(self, data_dir: Path, store_url: str, name: str) -> None:
        super().__init__(data_dir, store_url, name, lease_ttl_s=3, nodes="1x0")
        host, port = self.info["router_url"].removeprefix("http://").rsplit(":", 1)
        self.router = (host, int(port))

    def role(self) -> object:
        return self.client.health()["role"]

    def service(self, name: str) -> dict[str, Any]:
        data = self.client._request("GET", f"/api/v1/services/{name}").json()
        assert isinstance(data, dict)
        return data

    def get(self, path: str, timeout_s: float = 60) -> tuple[int, dict[str, Any]]:
        conn = http.client.HTTPConnection(*self.router, timeout=timeout_s)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        return response.status, json.loads(body) if response.status == 200 else {"text": body}


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "data"
    path.mkdir()
    yield path
    kill_leftover_pods(path)  # a failed test leaves no replica


def routed(server: HaServer) -> dict[str, list[str]]:
    """The ready replicas per service in the routes of ``server``'s router."""
    routes = server.client._request("GET", "/api/v1/routes").json()
    return {r["service"]: [e["replica"] for e in r["endpoints"] if e["ready"]] for r in routes}


def ready_replicas(server: HaServer, name: str) -> int:
    return int(server.service(name)["ready"])


def test_the_followers_router_routes_and_its_load_reaches_the_leader(
    data_dir: Path, postgres_url: str
) -> None:
    servers: list[HaServer] = []
    try:
        # 1. two servers on one store: the first leads, the second follows
        leader = HaServer(data_dir, postgres_url, "leader")
        servers.append(leader)
        wait_until(lambda: leader.role() == "leader", 30, "the first server to lead")
        follower = HaServer(data_dir, postgres_url, "follower")
        servers.append(follower)
        assert follower.role() == "follower"

        # 2. a Service at zero replicas, applied through the follower
        follower.client.apply(queue_manifests(cpu=8))
        follower.client.apply(
            [
                service_manifest(
                    "echo",
                    minReplicas=0,
                    maxReplicas=3,
                    scaleToZeroAfter="10m",
                    autoscaling={"target": 1, "metric": "concurrency"},
                )
            ]
        )
        # the leader publishes its route (no replica yet); the follower reads it
        wait_until(lambda: "echo" in routed(follower), 10, "the follower to know the route")
        assert "echo" in routed(leader)

        # 3. the first request, to the follower's router, waits at zero: its demand reaches
        # the leader, which starts a replica; the follower learns its route and answers
        started = time.monotonic()
        status, data = follower.get("/echo/first")
        cold_s = time.monotonic() - started
        assert status == 200, data
        assert data["path"] == "/first"
        decisions = leader.service("echo")["decisions"]
        assert any(d["code"] == "ScaleFromZero" for d in decisions), decisions
        print(f"\nfirst request through the follower at zero replicas: {cold_s:.2f} s")

        # 4. both routers route to the same replica
        status, again = leader.get("/echo/second")
        assert status == 200 and again["replica"] == data["replica"]
        assert routed(follower) == routed(leader) == {"echo": [data["replica"]]}

        # 5. load only the follower's router sees (4 requests in flight, a target of 1 per
        # replica) makes the leader's autoscaler scale up
        stop = threading.Event()
        failures: list[str] = []

        def client() -> None:
            while not stop.is_set():
                try:
                    status, body = follower.get("/echo/slow?sleep=0.3")
                except OSError as exc:
                    failures.append(repr(exc))
                    continue
                if status != 200:
                    failures.append(f"{status}: {body}")

        threads = [threading.Thread(target=client, daemon=True) for _ in range(4)]
        for thread in threads:
            thread.start()
        try:
            wait_until(lambda: ready_replicas(leader, "echo") >= 2, 60, "a scale-up")
        finally:
            stop.set()
            for thread in threads:
                thread.join(30)
        assert not failures, failures[:5]
        view = leader.service("echo")
        assert view["desired"] >= 2
        assert any(
            d["code"] in ("Panic", "Stable") and d["replicas"] >= 2 for d in view["decisions"]
        )

        # 6. the follower's describe shows the leader's readiness
        wait_until(
            lambda: ready_replicas(follower, "echo") == ready_replicas(leader, "echo"),
            10,
            "the follower to see the leader's ready replicas",
        )
        # 7. the scaling decisions are events, read on either server (the store's)
        events = follower.service("echo")["events"]
        assert [e["reason"] for e in events][:1] == ["ScaledUp"], events
        assert events[0]["facts"]["decision"] == "ScaleFromZero"
        assert events[0]["facts"]["from_replicas"] == 0
        assert events[0]["facts"]["to_replicas"] == 1

        # 8. deleting the Service through the follower empties both routers' routes
        follower.client.delete("Service", "echo")
        wait_until(lambda: routed(follower) == {}, 30, "the follower's routes to empty")
        wait_until(
            lambda: not any(j["name"].startswith("echo-") for j in leader.client.jobs()),
            60,
            "the replicas to go",
        )
    finally:
        for server in servers:
            server.stop()
