"""A real control plane on a temporary data dir: SQLite store, local backend with virtual nodes,
real processes. Tests drive the loop with ``tick()`` rather than the background thread."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

from phalanx.backends.local.backend import LocalBackend
from phalanx.backends.local.nodes import parse_nodes_option
from phalanx.controllers.health import QuarantinePolicy
from phalanx.controllers.plane import ControlPlane, ControlPlaneConfig
from phalanx.controllers.views import JobView
from phalanx.store import open_store
from phalanx.testing import queue_manifests as testing_queue_manifests

PY = sys.executable


def queue_manifests(gpus: int = 8, cpu: int = 64) -> list[dict[str, object]]:
    return testing_queue_manifests(gpu=gpus, cpu=cpu)


def job_manifest(
    name: str, script: str, *, gpus: float = 1, replicas: int = 1, priority: int = 0, **spec: object
) -> dict[str, object]:
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "queue": "q",
            "priority": priority,
            **spec,
            "podSets": [
                {
                    "name": "worker",
                    "replicas": replicas,
                    "command": [PY, "-c", script],
                    "resources": {"cpu": 1, "memory": "64Mi", "nvidia.com/gpu": gpus},
                }
            ],
        },
    }


class Harness:
    def __init__(
        self, data_dir: Path, nodes: str, quarantine: QuarantinePolicy | None = None
    ) -> None:
        self.data_dir = data_dir
        self.nodes = nodes
        self.quarantine = quarantine or QuarantinePolicy()
        self.plane = self._make()

    def _make(self) -> ControlPlane:
        store = open_store(None, self.data_dir)
        backend = LocalBackend(self.data_dir, parse_nodes_option(self.nodes))
        config = ControlPlaneConfig(
            self.data_dir, tick_s=0.05, grace_period_s=2.0, quarantine=self.quarantine
        )
        return ControlPlane(store, backend, config)

    def restart(self) -> None:
        """A new control plane on the same data dir, as after a crash (the old one is dropped
        without any shutdown step)."""
        self.plane = self._make()
        self.plane.reconcile()

    def run_until(self, predicate: Callable[[], bool], timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.plane.tick()
            if predicate():
                return
            time.sleep(0.05)
        raise AssertionError(
            f"timed out; jobs: {[(j.name, j.phase.value, j.message) for j in self.plane.list_jobs()]}"
        )

    def job(self, name: str) -> JobView:
        return self.plane.get_job(name)

    def phase(self, name: str) -> str:
        return self.job(name).phase.value

    def logs(self, name: str, pod: str | None = None) -> str:
        return self.plane.read_logs(name, pod)[0].decode()
