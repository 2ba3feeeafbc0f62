"""Services through `phalanx up`'s API and the CLI: the router beside the API, `get services`,
`describe service` with a replica held by quota and its reason, `-o json|yaml`, `phalanx
serve`, promote and rollback, and the routes/load API a standalone router uses."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from service_harness import REPLICA
from typer.testing import CliRunner, Result

from live_server import running_server
from phalanx.api.server import ApiServer
from phalanx.cli.main import app
from phalanx.client import Client
from phalanx.testing import queue_manifests


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ApiServer]:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with running_server(tmp_path, nodes="2x2", thread_name="phalanx-services-server") as api:
        with Client(data_dir=api.data_dir) as client:
            client.apply(queue_manifests(cpu="1"))
        try:
            yield api
        finally:
            api.plane.reconcilers.remove(api.services)  # no replica is re-created meanwhile
            with Client(data_dir=api.data_dir) as client:
                for job in client.jobs():
                    if not job["is_finished"]:
                        client.cancel(job["name"])
                deadline = time.monotonic() + 15
                while api.store.pods(live_only=True) and time.monotonic() < deadline:
                    time.sleep(0.05)


def cli(server: ApiServer, *args: str) -> Result:
    return CliRunner().invoke(app, ["--data-dir", str(server.data_dir), *args])


def wait(what: str, predicate: object, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_serve_get_describe_and_a_replica_held_by_quota(server: ApiServer) -> None:
    result = cli(
        server,
        "serve",
        "--name",
        "web",
        "--queue",
        "q",
        "--cpu",
        "400m",
        "--memory",
        "32Mi",
        "--min-replicas",
        "3",
        "--max-replicas",
        "3",
        "--readiness-path",
        "/healthz",
        "--",
        sys.executable,
        REPLICA,
    )
    assert result.exit_code == 0, result.output
    assert "service/web created" in result.output
    info = json.loads((server.data_dir / "server.json").read_text())
    assert info["router_url"].startswith("http://127.0.0.1:")

    def listed() -> dict:
        out = cli(server, "get", "services", "web", "-o", "json")
        assert out.exit_code == 0, out.output
        return json.loads(out.stdout)

    # the queue holds 1 CPU: two replicas of 400m run, the third waits for quota
    wait(
        "2 ready, 1 pending",
        lambda: (
            listed()["ready"] == 2
            and sum(r["phase"] == "Pending" for r in listed()["replicas"]) == 1
        ),
    )
    data = listed()
    pending = next(r for r in data["replicas"] if r["phase"] == "Pending")
    assert pending["reason"]["code"] == "QuotaExceeded"
    assert data["url"] == info["router_url"] + "/web"
    # through the router beside the API
    response = httpx.get(data["url"] + "/hello")
    assert response.status_code == 200 and response.json()["path"] == "/hello"
    table = cli(server, "get", "services")
    assert table.exit_code == 0
    assert table.stdout.splitlines()[0].split()[:3] == ["NAME", "READY", "DESIRED"]
    assert table.stdout.splitlines()[1].split()[:3] == ["web", "2/3", "3"]
    described = cli(server, "describe", "service", "web")
    assert described.exit_code == 0, described.output
    assert "QuotaExceeded:" in described.stdout and "cpu" in described.stdout
    assert "Autoscaler decisions" in described.stdout and "Revisions:" in described.stdout
    as_yaml = yaml.safe_load(cli(server, "get", "svc", "-o", "yaml").stdout)
    assert [s["name"] for s in as_yaml] == ["web"]


def test_promote_and_rollback_from_the_cli(server: ApiServer) -> None:
    def manifest(version: str, traffic: list[dict[str, object]] | None = None) -> dict:
        spec: dict[str, object] = {
            "queue": "q",
            "readinessProbe": {"path": "/healthz"},
            "template": {
                "command": [sys.executable, REPLICA],
                "env": {"VERSION": version},
                "resources": {"cpu": "100m", "memory": "32Mi"},
            },
        }
        if traffic:
            spec["traffic"] = traffic
        return {
            "apiVersion": "phalanx.dev/v1alpha1",
            "kind": "Service",
            "metadata": {"name": "api"},
            "spec": spec,
        }

    with Client(data_dir=server.data_dir) as client:
        client.apply([manifest("a")])
        wait("the first revision", lambda: server.services.view("api").ready == 1)
        first = server.services.view("api").revision
        client.apply(
            [
                manifest(
                    "b", [{"revision": first, "percent": 100}, {"revision": "latest", "percent": 0}]
                )
            ]
        )
    second = server.services.view("api").revision
    result = cli(server, "service", "promote", "api")
    assert result.exit_code == 0, result.output
    assert f"all traffic to revision {second}" in result.stdout
    assert "traffic" not in server.services.view("api").manifest["spec"]
    result = cli(server, "service", "rollback", "api")
    assert result.exit_code == 0, result.output
    assert server.services.view("api").revision == first
    bad = cli(server, "service", "rollback", "api", "--revision", "0000000000")
    assert bad.exit_code == 1 and "has no revision 0000000000" in bad.output
    missing = cli(server, "service", "promote", "nope")
    assert missing.exit_code == 1


def test_routes_and_load_for_a_standalone_router(server: ApiServer) -> None:
    token = (server.data_dir / "token").read_text().strip()
    headers = {"Authorization": f"Bearer {token}"}
    with Client(data_dir=server.data_dir) as client:
        client.apply(
            [
                {
                    "apiVersion": "phalanx.dev/v1alpha1",
                    "kind": "Service",
                    "metadata": {"name": "cold"},
                    "spec": {
                        "queue": "q",
                        "minReplicas": 0,
                        "readinessProbe": {"path": "/healthz"},
                        "template": {
                            "command": [sys.executable, REPLICA],
                            "resources": {"cpu": "100m", "memory": "32Mi"},
                        },
                    },
                }
            ]
        )
    url = server.url + "/api/v1"

    def route() -> dict | None:
        routes = httpx.get(url + "/routes", headers=headers).json()
        return next((r for r in routes if r["service"] == "cold"), None)

    wait("the route", lambda: route() is not None)
    assert route() == {**route(), "pathPrefix": "/cold", "endpoints": []}  # type: ignore[dict-item]
    bad = httpx.post(url + "/routes/load", json={"samples": [{"service": "cold"}]}, headers=headers)
    assert bad.status_code == 400 and "samples[0]" in bad.text
    sample = {"service": "cold", "at": time.time(), "inFlight": 0, "waiting": 1, "requestsTotal": 1}
    ok = httpx.post(
        url + "/routes/load", json={"samples": [sample], "demand": ["cold"]}, headers=headers
    )
    assert ok.status_code == 204
    # the demand wakes it from zero: a replica starts and shows up in the route, ready
    wait("a ready endpoint", lambda: any(e["ready"] for e in (route() or {}).get("endpoints", [])))
