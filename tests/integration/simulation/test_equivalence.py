"""The simulator runs the production lifecycle, not a model of it: one scenario — a job that
fails once and restarts after its backoff, a 2-pod gang on a node that fails and is
quarantined, a preemption by a higher-priority job — run on the local backend with real
processes and in the simulator's driver (sim backend, virtual clock) records the same history:
per job, the same event codes in the same order, the same placements per attempt, and the same
events on the failed node.

What legitimately differs between the substrates, and how the comparison treats it:
- times: real seconds against virtual ones; only codes, their order and placements are
  compared, never timestamps or facts that carry durations (backoff waits, ``duration_s``);
- ``Started``: the local backend reports pods running within a tick or two, the simulator
  keeps the running events until the next tick (it ticks only when something can happen)
  with the launch time as their time: the event comes in the same place of the job's history,
  so no normalisation is needed;
- a node failure: the local backend kills the pods of a faulty node (``inject_node_fault``)
  while the node itself stays listed as ready; the sim backend loses them and reports the node
  not ready until repaired. Quarantine (threshold 1 here) takes the node out of placement at
  once on both, so no later placement can tell the difference.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

from phalanx.backends.local.backend import LocalBackend, clear_node_fault, inject_node_fault
from phalanx.backends.local.nodes import parse_nodes_option
from phalanx.backends.sim import SimWorkload
from phalanx.controllers.health import QuarantinePolicy
from phalanx.controllers.plane import ControlPlane, ControlPlaneConfig
from phalanx.model.objects import Node
from phalanx.simulation.driver import Arrival, Driver
from phalanx.store import open_store
from phalanx.testing import queue_manifests

pytestmark = pytest.mark.integration

NODES = "3x2"
#: One node-side failure quarantines a node (for an hour: longer than the scenario).
QUARANTINE = QuarantinePolicy(threshold=1, min_jobs=1, window_s=3600.0, cooldown_s=3600.0)
QUEUES = queue_manifests(gpu=6, cpu=3, memory="1Ti")
QUEUES[1]["spec"]["preemption"] = {"withinQueue": "LowerPriority"}  # type: ignore[index]
ATTEMPT = "int(os.environ['PHALANX_ATTEMPT'])"


def _job(
    name: str, script: str, *, gpus: int, replicas: int = 1, priority: int = 0, **spec: object
) -> dict[str, object]:
    import sys

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
                    "command": [sys.executable, "-c", script],
                    "resources": {"cpu": "100m", "memory": "64Mi", "nvidia.com/gpu": gpus},
                }
            ],
        },
    }


# Each job's script and its simulated workload say the same thing.
FLAKY = _job(
    "flaky",
    f"import os, sys, time; time.sleep(1); sys.exit(1 if {ATTEMPT} == 1 else 0)",
    gpus=1,
    restartPolicy={"policy": "OnFailure", "maxRestarts": 2, "backoff": "1s"},
)
GANG = _job("gang", f"import os, time; time.sleep(60 if {ATTEMPT} == 1 else 1)", gpus=1, replicas=2)
LOW = _job("low", f"import os, time; time.sleep(60 if {ATTEMPT} == 1 else 0.5)", gpus=2, replicas=2)
HIGH = _job("high", "import time; time.sleep(1)", gpus=2, priority=10)
JOBS = ("flaky", "gang", "low", "high")


@dataclass(frozen=True)
class History:
    """What a substrate recorded: event codes per job, nodes per attempt, the failed node's
    event codes."""

    codes: Mapping[str, list[str]]
    placements: Mapping[str, list[tuple[int, str, int, str, tuple[tuple[int, int], ...]]]]
    failed_node: str
    node_codes: list[str]


def _history(plane: ControlPlane, failed_node: str) -> History:
    codes: dict[str, list[str]] = {}
    placements = {}
    for name in JOBS:
        view = plane.get_job(name)
        codes[name] = [e.reason for e in view.events]
        placements[name] = sorted(
            (p.attempt, p.pod_set, p.index, p.node, tuple((d.index, d.milli) for d in p.devices))
            for p in view.pods
        )
    node_codes = [e.reason for e in plane.store.object_events("Node", failed_node)]
    return History(codes, placements, failed_node, node_codes)


def _gang_node(plane: ControlPlane) -> str:
    pods = [p for p in plane.get_job("gang").pods if p.attempt == 1]
    return min(pods, key=lambda p: p.index).node


def _run_local(data_dir: Path) -> History:
    backend = LocalBackend(data_dir, parse_nodes_option(NODES))
    store = open_store(None, data_dir)
    config = ControlPlaneConfig(data_dir, tick_s=0.05, grace_period_s=2.0, quarantine=QUARANTINE)
    plane = ControlPlane(store, backend, config)

    def run_until(predicate: Callable[[], bool], timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            plane.tick()
            if predicate():
                return
            time.sleep(0.05)
        jobs = [(j.name, j.phase.value, j.message) for j in plane.list_jobs()]
        raise AssertionError(f"timed out; jobs: {jobs}")

    def phase(name: str) -> str:
        return plane.get_job(name).phase.value

    try:
        plane.apply(QUEUES)
        # 1. a job that fails once, waits out its backoff and succeeds
        plane.apply([FLAKY])
        run_until(lambda: phase("flaky") == "Succeeded")
        # 2. a gang on a node that fails: restarted elsewhere, the node quarantined
        plane.apply([GANG])
        run_until(lambda: phase("gang") == "Running")
        failed = _gang_node(plane)
        inject_node_fault(data_dir, failed, "simulated node failure (test)")
        run_until(lambda: plane.get_job("gang").restarts == 0 and phase("gang") == "Pending")
        clear_node_fault(data_dir, failed)
        run_until(lambda: phase("gang") == "Succeeded")
        # 3. a higher-priority job preempts a running one, which runs again after it
        plane.apply([LOW])
        run_until(lambda: phase("low") == "Running")
        plane.apply([HIGH])
        run_until(lambda: phase("high") == "Succeeded" and phase("low") == "Succeeded")
        return _history(plane, failed)
    finally:
        for job in plane.list_jobs():
            plane.cancel_job(job.name)
        deadline = time.monotonic() + 15
        while store.pods(live_only=True) and time.monotonic() < deadline:
            plane.tick()
            time.sleep(0.05)
        backend.close()
        store.close()


def _run_sim(nodes: list[Node]) -> History:
    # The same steps on a virtual timeline (seconds), each well after the last one settled.
    arrivals = [
        Arrival(0.0, FLAKY, SimWorkload(1.0, failing_attempts=(1,))),
        Arrival(10.0, GANG, SimWorkload(3.0)),
        Arrival(20.0, LOW, SimWorkload(30.0)),
        Arrival(25.0, HIGH, SimWorkload(1.0)),
    ]
    with Driver(nodes, QUEUES, arrivals, quarantine=QUARANTINE, repair_s=3600.0) as driver:
        driver.run(until=11.0)
        failed = _gang_node(driver.plane)
        driver.add_failure(12.0, failed)
        driver.run()
        assert driver.node_failures == 1
        return _history(driver.plane, failed)


def test_the_simulator_and_real_processes_record_the_same_history(tmp_path: Path) -> None:
    nodes = parse_nodes_option(NODES)
    sim = _run_sim(nodes)
    # The scenario did what it is for (in the simulator; the local run must then match).
    assert sim.codes == {
        "flaky": [
            "Created", "Admitted", "Started", "Restarting", "Admitted", "Started", "Succeeded",
        ],
        "gang": [
            "Created", "Admitted", "Started", "Restarting", "Admitted", "Started", "Succeeded",
        ],
        "low": [
            "Created", "Admitted", "Started", "Preempted", "Requeued", "Unschedulable",
            "Admitted", "Started", "Succeeded",
        ],
        "high": ["Created", "Preempting", "Admitted", "Started", "Succeeded"],
    }  # fmt: skip
    assert sim.node_codes == ["Quarantined"]
    gang_nodes = {
        attempt: {p[3] for p in sim.placements["gang"] if p[0] == attempt} for attempt in (1, 2)
    }
    assert sim.failed_node in gang_nodes[1] and sim.failed_node not in gang_nodes[2]

    local = _run_local(tmp_path)
    assert local.failed_node == sim.failed_node
    assert local.codes == sim.codes
    assert local.placements == sim.placements
    assert local.node_codes == sim.node_codes
