"""Helpers for the ops tests: a production control plane over the sim backend in virtual
time (no processes, deterministic), and manifests. The tests serve the real API app to it
in-process through ``asgi_client``."""

from __future__ import annotations

from pathlib import Path

from phalanx.backends.sim import SimBackend, SimWorkload
from phalanx.backends.sim.backend import VirtualClock
from phalanx.controllers.plane import ControlPlane, ControlPlaneConfig
from phalanx.store import Store
from phalanx.testing import make_node

TOKEN = "ops-token"
START_S = 1_700_000_000.0


class SimPlane:
    """A control plane on two 8-GPU sim nodes; ``run(s)`` moves virtual time on."""

    def __init__(self, data_dir: Path, nodes: int = 2) -> None:
        self.clock = VirtualClock(START_S)
        self.backend = SimBackend(
            [make_node(f"n{i + 1}").gpus(8).obj() for i in range(nodes)], self.clock
        )
        self.store = Store(f"sqlite:///{data_dir}/phalanx.db")
        self.plane = ControlPlane(
            self.store,
            self.backend,
            ControlPlaneConfig(data_dir, grace_period_s=0.0),
            clock=lambda: self.clock.now,
        )

    def apply(self, manifests: list[dict[str, object]], runtime_s: float = 1e7) -> None:
        for m in manifests:
            if m["kind"] == "Job":
                self.backend.set_workload(str(m["metadata"]["name"]), SimWorkload(runtime_s))  # type: ignore[index]
        self.plane.apply(manifests)
        self.plane.tick()

    def run(self, seconds: float, tick_s: float = 1.0) -> None:
        end = self.clock.now + seconds
        while self.clock.now < end:
            self.clock.advance_to(min(end, self.clock.now + tick_s))
            self.plane.tick()


def queue(name: str = "q", gpus: int = 8, cohort: str = "") -> dict[str, object]:
    spec: dict[str, object] = {
        "flavors": [
            {"name": "default", "resources": {"cpu": 64, "memory": "1Ti", "nvidia.com/gpu": gpus}}
        ]
    }
    if cohort:
        spec["cohort"] = cohort
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Queue",
        "metadata": {"name": name},
        "spec": spec,
    }


FLAVOR: dict[str, object] = {
    "apiVersion": "phalanx.dev/v1alpha1",
    "kind": "ResourceFlavor",
    "metadata": {"name": "default"},
    "spec": {},
}


def job(
    name: str, gpus: float = 1, replicas: int = 1, q: str = "q", priority: int = 0, **spec: object
) -> dict[str, object]:
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "queue": q,
            "priority": priority,
            **spec,
            "podSets": [
                {
                    "name": "worker",
                    "replicas": replicas,
                    "command": ["train"],
                    "resources": {"cpu": 1, "memory": "1Gi", "nvidia.com/gpu": gpus},
                }
            ],
        },
    }
