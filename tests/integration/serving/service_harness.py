"""A real control plane with the Service controller and the router, in this process: SQLite
store, local backend with virtual nodes, replicas as real processes (service_replica.py) on
free ports, requests through the router over real HTTP."""

from __future__ import annotations

import http.client
import json
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from phalanx.backends.local.backend import LocalBackend
from phalanx.backends.local.nodes import parse_nodes_option
from phalanx.controllers.plane import ControlPlane, ControlPlaneConfig
from phalanx.serving.controller import ServiceController, ServingConfig
from phalanx.serving.router import RouterThread
from phalanx.serving.views import ServiceView
from phalanx.store import open_store
from phalanx.testing import queue_manifests

REPLICA = str(Path(__file__).with_name("service_replica.py"))


def service_manifest(name: str, **spec: Any) -> dict[str, Any]:
    """A Service in queue ``q`` whose replicas run service_replica.py (``env`` and
    ``resources`` go to the template; the rest to the spec)."""
    template: dict[str, Any] = {
        "command": [sys.executable, REPLICA],
        "resources": spec.pop("resources", {"cpu": "100m", "memory": "32Mi"}),
    }
    if "env" in spec:
        template["env"] = spec.pop("env")
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "queue": "q",
            "readinessProbe": {"path": "/healthz", "period": "200ms"},
            "template": template,
            **spec,
        },
    }


class ServingHarness:
    def __init__(self, data_dir: Path, *, cpu: float = 64, drain_s: float = 0.3) -> None:
        self.data_dir, self.drain_s = data_dir, drain_s
        self._start()
        self.plane.apply(queue_manifests(cpu=cpu))
        self.plane.start()

    def _start(self) -> None:
        self.store = open_store(None, self.data_dir)
        self.backend = LocalBackend(self.data_dir, parse_nodes_option("2x2"))
        self.plane = ControlPlane(
            self.store,
            self.backend,
            ControlPlaneConfig(self.data_dir, tick_s=0.05, grace_period_s=2.0),
        )
        self.services = ServiceController.attach(self.plane, ServingConfig(drain_s=self.drain_s))
        self.router = RouterThread(
            self.services, self.services, "127.0.0.1", 0, report_interval_s=0.2
        )
        self.port = self.router.start()

    def restart(self) -> None:
        """Another control plane, controller and router on the same data dir, as after a
        crash: the old ones stop without any step of their own (replicas keep running)."""
        self.router.stop()
        self.plane.stop()
        self.services.close()
        self.store.close()
        self._start()
        self.plane.start()

    def close(self) -> None:
        self.router.stop()
        self.plane.stop()
        self.plane.reconcilers.remove(self.services)
        self.services.close()
        for job in self.plane.list_jobs():
            self.plane.cancel_job(job.name)
        deadline = time.monotonic() + 15
        while self.store.pods(live_only=True) and time.monotonic() < deadline:
            self.plane.tick()
            time.sleep(0.05)
        self.store.close()

    def view(self, name: str) -> ServiceView:
        return self.services.view(name)

    def wait(self, what: str, predicate: Callable[[], bool], timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}")
            time.sleep(0.05)

    def wait_ready(self, name: str, count: int, timeout_s: float = 30) -> ServiceView:
        def done() -> bool:
            view = self.view(name)
            live = [r for r in view.replicas if r.phase != "Terminating"]
            return view.ready == count and len(live) == count

        self.wait(f"{count} ready replicas of {name}", done, timeout_s)
        return self.view(name)

    def connection(self, timeout_s: float = 30) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout_s)


def get(conn: http.client.HTTPConnection, path: str) -> tuple[int, Mapping[str, Any]]:
    """GET ``path`` on a kept-alive connection: (status, JSON body or {"text": ...})."""
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    try:
        data = json.loads(body)
    except ValueError:
        data = {"text": body.decode(errors="replace")}
    return response.status, data if isinstance(data, dict) else {"data": data}
