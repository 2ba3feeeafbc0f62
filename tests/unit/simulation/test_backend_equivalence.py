"""The same control plane (store, lifecycle, scheduler) on the ``sim`` backend and on the
``local`` backend (real processes on virtual nodes) makes the same decisions for the same
scenario: the simulator replays production logic, not a model of it."""

from __future__ import annotations

import contextlib
import sys
import time
from pathlib import Path

import pytest

from phalanx.backends.local.backend import LocalBackend
from phalanx.backends.local.nodes import parse_nodes_option
from phalanx.backends.sim import SimBackend, VirtualClock
from phalanx.controllers.plane import ControlPlane, ControlPlaneConfig
from phalanx.scheduling import Decisions
from phalanx.store import open_store
from phalanx.testing import queue_manifests

pytestmark = pytest.mark.integration

QUEUES = queue_manifests(gpu=6, cpu=64, memory="1Ti")


def _job(name: str, gpus: float, replicas: int = 1, priority: int = 0) -> dict[str, object]:
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "queue": "q",
            "priority": priority,
            "podSets": [
                {
                    "name": "worker",
                    "replicas": replicas,
                    "command": [sys.executable, "-c", "import time; time.sleep(30)"],
                    "resources": {"cpu": 1, "memory": "64Mi", "nvidia.com/gpu": gpus},
                }
            ],
        },
    }


JOBS = [_job("a", 2), _job("b", 0.5), _job("c", 1, replicas=2), _job("d", 0.25), _job("e", 4)]


def _placements(
    decisions: Decisions,
) -> list[tuple[str, list[tuple[str, int, str, tuple[object, ...]]]]]:
    return sorted(
        (a.job, [(p.pod_set, p.index, p.node, p.devices) for p in a.placements])
        for a in decisions.admissions
    )


def test_sim_and_local_backends_decide_alike(tmp_path: Path) -> None:
    nodes = parse_nodes_option("2x4")
    # Local: real processes on two virtual 4-GPU nodes.
    local_dir = tmp_path / "local"
    local_backend = LocalBackend(local_dir, nodes)
    local = ControlPlane(
        open_store(None, local_dir),
        local_backend,
        ControlPlaneConfig(local_dir, grace_period_s=1.0),
    )
    # Sim: the same nodes, virtual pods, a virtual clock.
    sim_dir = tmp_path / "sim"
    clock = VirtualClock(1000.0)
    sim_backend = SimBackend(local_backend.nodes(), clock)
    for job in JOBS:
        sim_backend.set_runtime(str(job["metadata"]["name"]), 3600.0)  # type: ignore[index]
    sim = ControlPlane(
        open_store(None, sim_dir), sim_backend, ControlPlaneConfig(sim_dir), clock=lambda: clock.now
    )
    try:
        for plane in (local, sim):
            plane.apply(QUEUES)
            plane.apply(JOBS)
        first_local, first_sim = local.tick(), sim.tick()
        assert _placements(first_local) == _placements(first_sim)
        assert [a.job for a in first_sim.admissions]  # something was admitted
        assert sorted(p.job for p in first_local.pending) == sorted(
            p.job for p in first_sim.pending
        )
    finally:
        for plane in (local, sim):
            for job in JOBS:
                with contextlib.suppress(Exception):  # already finished or never admitted
                    plane.cancel_job(str(job["metadata"]["name"]))  # type: ignore[index]
        for _ in range(40):
            local.tick()
            if all(j.phase.is_terminal for j in local.list_jobs()):
                break
            time.sleep(0.1)
        local_backend.close()
