"""The full-mode driver: the production control plane in virtual time over the sim backend."""

from __future__ import annotations

import gc
import random

import pytest
from simjobs import GI, job

from phalanx.backends.sim import SimWorkload
from phalanx.controllers.health import QuarantinePolicy
from phalanx.model.specs import SpecError
from phalanx.simulation.driver import MEMORY_STORE_URL, Arrival, Driver, config_manifests
from phalanx.simulation.faults import Faults
from phalanx.simulation.full import job_manifest, workload_of
from phalanx.simulation.trace import TraceJob, make_node
from phalanx.simulation.world import build_world, unlimited_queue

NODES = (make_node("n0", 8000, 64 * GI, 2, "T4"), make_node("n1", 8000, 64 * GI, 2, "T4"))


def _busy_trace(seed: int) -> list[TraceJob]:
    """Jobs that contend for 4 GPUs: gangs, fractions, priorities that preempt."""
    rnd = random.Random(seed)
    jobs = []
    for i in range(24):
        gpus, replicas = rnd.choice([(500, 1), (1000, 1), (2000, 1), (1000, 2)])
        jobs.append(
            job(
                f"j{i}",
                gpus,
                submit_s=float(rnd.randrange(0, 120)),
                runtime_s=float(rnd.randrange(5, 60)),
                priority=rnd.choice([0, 0, 5]),
                replicas=replicas,
            )
        )
    return jobs


def _history(driver: Driver) -> dict[str, object]:
    """Everything the controllers recorded that does not depend on when the loop ran (pod
    ids carry the job's uid, which is random: pods are named by attempt, pod set and index)."""
    store = driver.store
    out: dict[str, object] = {}
    for record in store.list_jobs():
        events = [(e.reason, e.at, e.facts) for e in store.events(record.id)]
        pods = [
            (p.attempt, p.pod_set, p.index, p.node, p.devices, p.phase, p.created_at)
            for p in store.pods([record.id])
        ]
        pods += [(p.started_at, p.finished_at) for p in store.pods([record.id])]
        times = (record.created_at, record.admitted_at, record.started_at, record.finished_at)
        out[record.name] = (record.phase, record.attempt, record.restarts, times, events, pods)
    for node in ("n0", "n1"):
        out[node] = [(e.reason, e.at) for e in store.object_events("Node", node)]
    return out


def _run(
    jobs: list[TraceJob], faults: Faults, *, defer: bool, store_url: str = MEMORY_STORE_URL
) -> tuple[dict[str, object], int]:
    world = build_world(NODES, jobs, [unlimited_queue("q")])
    arrivals = [Arrival(j.submit_s, job_manifest(j), workload_of(j, faults)) for j in jobs]
    with Driver(
        world.nodes,
        config_manifests(world.queues, world.flavors),
        arrivals,
        quarantine=faults.quarantine,
        failures=faults.failures,
        repair_s=faults.repair_s,
        defer_completions=defer,
        store_url=store_url,
    ) as driver:
        driver.run()
        return _history(driver), len(driver.cycles)


def test_the_memory_store_records_the_same_history_as_the_sql_store() -> None:
    """The default in-memory store and the SQL store (in-memory SQLite) under the same
    controllers: the same jobs, events, pods and times, through preemptions, node failures,
    restarts from checkpoints and quarantine."""
    jobs = _busy_trace(seed=5)
    faults = Faults(
        ((30.0, "n0"), (70.0, "n1"), (100.0, "n0")),
        repair_s=15.0,
        checkpoint_s=10.0,
        restart="checkpoint",
        checkpoint_aware=True,
        quarantine=QuarantinePolicy(threshold=1, min_jobs=1, cooldown_s=30.0),
    )
    in_memory, memory_ticks = _run(jobs, faults, defer=True)
    in_sql, sql_ticks = _run(jobs, faults, defer=True, store_url="sqlite://")
    assert in_memory == in_sql and memory_ticks == sql_ticks
    codes = {e[0] for h in in_memory.values() if isinstance(h, tuple) for e in h[4]}
    assert {"Preempted", "Restarting", "Succeeded"} <= codes
    assert any(in_memory[node] for node in ("n0", "n1")), "no node was quarantined"


def test_deferring_completions_records_the_same_history() -> None:
    jobs = _busy_trace(seed=3)
    faults = Faults(
        ((40.0, "n0"), (90.0, "n1")),
        repair_s=20.0,
        checkpoint_s=10.0,
        restart="checkpoint",
        checkpoint_aware=True,
    )
    deferred, deferred_ticks = _run(jobs, faults, defer=True)
    eager, eager_ticks = _run(jobs, faults, defer=False)
    assert deferred == eager
    assert deferred_ticks < eager_ticks  # and it did skip ticks
    # The scenario exercised what it should: preemptions and node-failure restarts.
    codes = [e[0] for h in deferred.values() if isinstance(h, tuple) for e in h[4]]
    assert "Preempted" in codes and "Restarting" in codes


def test_the_run_ends_when_the_rest_can_never_run() -> None:
    jobs = [job("fits", 1000, runtime_s=5), job("huge", 3000, submit_s=1)]  # 2-GPU nodes
    world = build_world(NODES, jobs)
    arrivals = [Arrival(j.submit_s, job_manifest(j), SimWorkload(j.runtime_s)) for j in jobs]
    with Driver(world.nodes, config_manifests(world.queues, world.flavors), arrivals) as driver:
        driver.run()
        phases = {j.name: j.phase for j in driver.store.list_jobs()}
        assert phases == {"fits": "Succeeded", "huge": "Pending"}
        assert driver.clock.now == 5.0
        assert driver.plane.get_job("huge").reason_code == "NeverFits"


def test_an_invalid_job_is_named() -> None:
    bad = TraceJob("Not_A_Name", 0.0, 1.0, "q", job("x", 1000).pod_sets)
    world = build_world(NODES, [bad])
    arrivals = [Arrival(0.0, job_manifest(bad), SimWorkload(1.0))]
    with (
        Driver(world.nodes, config_manifests(world.queues, world.flavors), arrivals) as driver,
        pytest.raises(SpecError, match=r"job Not_A_Name.*metadata.name"),
    ):
        driver.run()


def test_unlimited_queues_are_applied_as_they_are() -> None:
    # An unlimited quota is stored as the largest amount (not the word "unlimited", which
    # does not parse back), so the control plane schedules with the very same queue.
    world = build_world(NODES, [job("a", 1000)])
    with Driver(world.nodes, config_manifests(world.queues, world.flavors), []) as driver:
        assert driver.plane.specs.queues(driver.store) == list(world.queues)
        assert driver.plane.specs.invalid == {}


def test_full_collections_are_held_off_during_a_run_and_restored_after() -> None:
    """A run's heap only grows, so the driver holds off the collector's full collections
    while it runs; the thresholds are the caller's again afterwards, also after an error."""
    before = gc.get_threshold()
    jobs = [job("a", 1000, runtime_s=5), job("b", 500, submit_s=1, runtime_s=5)]
    world = build_world(NODES, jobs)
    arrivals = [Arrival(j.submit_s, job_manifest(j), SimWorkload(j.runtime_s)) for j in jobs]
    during: list[tuple[int, int, int]] = []
    with Driver(world.nodes, config_manifests(world.queues, world.flavors), arrivals) as driver:
        driver.run(lambda arrived, total: during.append(gc.get_threshold()))
    assert during and all(t[:2] == before[:2] and t[2] >= 1 << 30 for t in during)
    assert gc.get_threshold() == before
    bad = TraceJob("Not_A_Name", 0.0, 1.0, "q", job("x", 1000).pod_sets)
    failing = [Arrival(0.0, job_manifest(bad), SimWorkload(1.0))]
    with (
        Driver(world.nodes, config_manifests(world.queues, world.flavors), failing) as driver,
        pytest.raises(SpecError),
    ):
        driver.run()
    assert gc.get_threshold() == before


def test_only_jobs_that_report_checkpoints_get_a_checkpoint_directory() -> None:
    """Simulated pods are no processes: the control plane makes the checkpoint directory
    only for the jobs whose workload writes status files there."""
    jobs = [job("quiet", 1000, runtime_s=30), job("reporting", 1000, runtime_s=30)]
    world = build_world(NODES, jobs)
    workloads = {
        "quiet": SimWorkload(30.0),
        "reporting": SimWorkload(30.0, checkpoint_s=10.0, reports_checkpoints=True),
    }
    arrivals = [Arrival(j.submit_s, job_manifest(j), workloads[j.name]) for j in jobs]
    with Driver(world.nodes, config_manifests(world.queues, world.flavors), arrivals) as driver:
        driver.run(until=0.0)
        folders = sorted(
            p.name.rsplit("-", 1)[0] for p in (driver.data_dir / "checkpoints").iterdir()
        )
        assert folders == ["reporting"]
        envs = {p.pod_id.split("-")[0]: p.env for p in driver.store.pods()}
        assert all("PHALANX_CHECKPOINT_DIR" in env for env in envs.values())
        driver.run()
        assert {j.name: j.phase for j in driver.store.list_jobs()} == {
            "quiet": "Succeeded",
            "reporting": "Succeeded",
        }
