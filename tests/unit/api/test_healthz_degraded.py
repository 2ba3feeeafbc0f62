"""/healthz says ``degraded`` while a stored object cannot be loaded, naming it, and the rest
of the API goes on answering (a corrupt row written straight into the store)."""

from __future__ import annotations

import time

import httpx

from phalanx.controllers.plane import ControlPlane

CORRUPT_QUEUE = {
    "apiVersion": "phalanx.dev/v1alpha1",
    "kind": "Queue",
    "metadata": {"name": "oldq"},
    "spec": {"flavors": [{"name": "default", "resources": {"cpu": "1e300"}}]},
}


def test_healthz_reports_unloadable_objects(
    plane: ControlPlane, http: httpx.Client, anonymous: httpx.Client
) -> None:
    assert anonymous.get("/healthz").json()["status"] == "ok"
    plane.store.apply([("Queue", "oldq", CORRUPT_QUEUE)], [], time.time())
    plane.wake()
    deadline = time.monotonic() + 10
    # Without a token /healthz tells only the status; the failing objects need one.
    while (health := http.get("/healthz").json())["status"] != "degraded":
        assert time.monotonic() < deadline, health
        time.sleep(0.05)
    (failing,) = health["failing"]
    assert (failing["kind"], failing["name"]) == ("Queue", "oldq")
    assert "1e300" in failing["error"]
    assert isinstance(health["failed_ticks"], int)
    assert anonymous.get("/healthz").json() == {"status": "degraded"}
    for path in ("/api/v1/queues", "/api/v1/nodes", "/api/v1/jobs"):
        assert http.get(path).status_code == 200, path
    assert http.delete("/api/v1/queues/oldq").status_code == 204
    deadline = time.monotonic() + 10
    while anonymous.get("/healthz").json()["status"] != "ok":
        assert time.monotonic() < deadline
        time.sleep(0.05)
