"""The jobs reconciler runs a scheduling cycle only when something it reads has changed: a tick
with nothing new runs none, and it still schedules when a job is applied, a node appears, a
backoff ends, another writer wrote during the last cycle, or the resync is due.

A real control plane on a real SQLite store, over a backend that starts nothing (its nodes
are whatever the test says) and a clock the test moves.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from phalanx.backends.base import HeldCapacity, PodEvent, PodLaunch, RendezvousInfo
from phalanx.controllers.plane import ControlPlane, ControlPlaneConfig
from phalanx.model.objects import Node
from phalanx.store import Transition, open_store
from phalanx.testing import job_manifest, make_node, queue_manifests

pytestmark = pytest.mark.integration


class NodesOnly:
    """A backend with the nodes a test sets; it records launches and starts nothing."""

    name = "nodes-only"

    def __init__(self, nodes: list[Node]) -> None:
        self.node_list = nodes
        self.launched: list[str] = []

    def nodes(self) -> list[Node]:
        return list(self.node_list)

    def held_capacity(self) -> list[HeldCapacity]:
        return []

    def rendezvous(self, job: str, attempt: int, first_node: str) -> RendezvousInfo:
        return RendezvousInfo("127.0.0.1", 29500)

    def launch(self, pod: PodLaunch) -> None:
        self.launched.append(pod.pod_id)

    def stop(self, pod_id: str, grace_period_s: float) -> None:
        pass

    def poll_events(self) -> list[PodEvent]:
        return []

    def adopt(self, pod_ids: Iterable[str]) -> list[PodEvent]:
        return []

    def read_logs(self, pod_id: str, offset: int = 0, limit: int = 1 << 20) -> bytes:
        return b""

    def close(self) -> None:
        pass


def job(name: str, gpus: int = 1) -> dict[str, object]:
    return job_manifest(name, resources={"cpu": "100m", "memory": "64Mi", "nvidia.com/gpu": gpus})


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def backend() -> NodesOnly:
    return NodesOnly([make_node("cpu-0").obj()])  # no GPU: GPU jobs wait


@pytest.fixture
def plane(tmp_path: Path, backend: NodesOnly, clock: Clock) -> Iterator[ControlPlane]:
    store = open_store(None, tmp_path)
    plane = ControlPlane(store, backend, ControlPlaneConfig(tmp_path), clock=clock)
    plane.apply(queue_manifests(gpu=8))
    yield plane
    store.close()


def settled(plane: ControlPlane) -> tuple[int, int]:
    """Tick until a tick runs no cycle; return (cycles, skipped cycles)."""
    for _ in range(5):
        skipped = plane.jobs_reconciler.skipped_cycles
        plane.tick()
        if plane.jobs_reconciler.skipped_cycles > skipped:
            return plane.cycles, plane.jobs_reconciler.skipped_cycles
    raise AssertionError("every tick ran a cycle")


def reason(plane: ControlPlane, name: str) -> str:
    return plane.get_job(name).reason_code


def test_a_tick_with_nothing_new_runs_no_cycle_and_writes_nothing(plane: ControlPlane) -> None:
    plane.apply([job("a")])
    plane.tick()
    assert plane.cycles == 1 and reason(plane, "a") == "NeverFits"
    version = plane.store.revision()
    for _ in range(3):
        plane.tick()
    assert plane.cycles == 1  # its own pending-reason write is not news to it
    assert plane.jobs_reconciler.skipped_cycles == 3
    assert plane.store.revision() == version


def test_an_applied_job_is_scheduled_at_the_next_tick(plane: ControlPlane) -> None:
    plane.apply([job("a")])
    cycles, _ = settled(plane)
    plane.apply([job("b")])
    plane.tick()
    assert plane.cycles == cycles + 1
    assert reason(plane, "b") == "NeverFits"


def test_a_node_that_appears_is_used_at_the_next_tick(
    plane: ControlPlane, backend: NodesOnly
) -> None:
    plane.apply([job("a")])
    cycles, _ = settled(plane)
    backend.node_list = [*backend.node_list, make_node("gpu-0").gpus(8).obj()]
    plane.tick()
    assert plane.cycles == cycles + 1
    assert plane.get_job("a").phase.value == "Admitted"
    assert len(backend.launched) == 1


def test_a_job_whose_backoff_ends_is_admitted_with_no_write_in_between(
    plane: ControlPlane, backend: NodesOnly, clock: Clock
) -> None:
    plane.jobs_reconciler.resync_s = 3600  # only the backoff may start a cycle here
    backend.node_list = [make_node("gpu-0").gpus(8).obj()]
    plane.apply([job("big", gpus=16)])  # never fits: waits, holding nothing
    settled(plane)
    plane.apply([job("a")])
    record = plane.store.get_job("a")
    assert record is not None
    assert plane.store.transition(
        Transition(record.id, job={"not_before": clock.now + 30}, expect_phase="Pending")
    )
    plane.tick()
    assert reason(plane, "a") == "Backoff"
    cycles, _ = settled(plane)
    version = plane.store.revision()
    clock.now += 20
    plane.tick()
    assert plane.cycles == cycles  # still backing off: nothing to do
    clock.now += 11
    assert plane.store.revision() == version  # nothing was written meanwhile
    plane.tick()
    assert plane.cycles == cycles + 1
    assert plane.get_job("a").phase.value == "Admitted"


def test_a_write_by_another_writer_during_a_cycle_is_not_taken_for_its_own(
    plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    plane.apply([job("a")])
    settled(plane)
    plane.apply([job("b")])
    store = plane.store
    real = store.transitions

    def with_a_submission_first(changes: list[Transition]) -> list[int]:
        monkeypatch.setattr(store, "transitions", real)
        plane.apply([job("c")])  # lands between the cycle's read and its own writes
        return real(changes)

    monkeypatch.setattr(store, "transitions", with_a_submission_first)
    plane.tick()  # schedules b; c arrives meanwhile
    assert reason(plane, "b") == "NeverFits" and reason(plane, "c") == ""
    cycles = plane.cycles
    plane.tick()
    assert plane.cycles == cycles + 1
    assert reason(plane, "c") == "NeverFits"


def test_a_cycle_runs_at_each_resync_while_time_may_change_a_decision(
    plane: ControlPlane, backend: NodesOnly, clock: Clock
) -> None:
    """Job "a" waits in a queue that preempts lower priorities while "holder" runs: which
    victims a preemption picks depends on the work they would lose, which grows with time."""
    backend.node_list = [make_node("gpu-0").gpus(1).obj()]
    plane.apply([job("holder"), job("a")])
    cycles, _ = settled(plane)
    clock.now += plane.jobs_reconciler.resync_s / 2
    plane.tick()
    assert plane.cycles == cycles
    clock.now += plane.jobs_reconciler.resync_s
    plane.tick()
    assert plane.cycles == cycles + 1


def test_a_resync_with_nothing_new_runs_no_cycle_while_no_decision_depends_on_time(
    plane: ControlPlane, clock: Clock
) -> None:
    """Nothing runs, so nothing can be preempted: the clock changes no decision. A full
    resync still runs once after the cycles since the last full one (parked reasons may
    hold numbers from before), and a cycle runs every SAFETY_S whatever happens."""
    reconciler = plane.jobs_reconciler
    plane.apply([job("a")])
    cycles, _ = settled(plane)  # the first cycle is a full one
    assert reason(plane, "a") == "NeverFits"
    clock.now += reconciler.resync_s
    plane.tick()
    assert plane.cycles == cycles
    plane.apply([job("b")])
    plane.tick()
    assert plane.cycles == cycles + 1  # a cycle over "b" alone
    clock.now += reconciler.full_resync_s
    plane.tick()
    assert plane.cycles == cycles + 2  # the full resync after it
    clock.now += reconciler.full_resync_s
    plane.tick()
    assert plane.cycles == cycles + 2  # nothing since that full one
    clock.now += reconciler.SAFETY_S
    plane.tick()
    assert plane.cycles == cycles + 3  # the safety pass
    assert reason(plane, "a") == "NeverFits" and reason(plane, "b") == "NeverFits"


def test_the_loop_uses_the_spec_apply_parsed(
    plane: ControlPlane, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job applied through this control plane is not parsed again by the loop."""
    import phalanx.controllers.state as state

    def no_parse(manifest: object) -> object:
        raise AssertionError("the loop parsed a manifest apply had parsed already")

    monkeypatch.setattr(state, "parse_job", no_parse)
    plane.apply([job("a")])
    plane.tick()
    assert reason(plane, "a") == "NeverFits"


def test_jobs_that_cannot_be_admitted_are_parked_until_capacity_is_freed(
    plane: ControlPlane, backend: NodesOnly, clock: Clock
) -> None:
    """New submissions cost a cycle over themselves, not over every job that waits; a full
    cycle comes with the resync, and a new node unparks everything."""
    backend.node_list = [make_node("gpu-0").gpus(1).obj()]
    plane.apply([job("holder"), job("a"), job("b")])
    plane.tick()
    assert reason(plane, "a") == "Unschedulable" and reason(plane, "b") == "Unschedulable"
    incremental = plane.jobs_reconciler.incremental
    # The holder now runs: a new workload, which jobs of this queue (it preempts lower
    # priorities) could preempt, so the next cycle tries them again.
    clock.now += 1
    plane.tick()
    assert incremental.parked == 0
    plane.apply([job("c")])
    clock.now += 1
    plane.tick()
    assert incremental.parked == 2  # a and b were not tried again
    assert reason(plane, "c") == "Unschedulable"
    clock.now += plane.jobs_reconciler.resync_s
    plane.tick()
    assert incremental.parked == 3  # a resync keeps them parked ...
    clock.now += plane.jobs_reconciler.full_resync_s
    plane.tick()
    assert incremental.parked == 0  # ... a full one tries everything
    backend.node_list = [*backend.node_list, make_node("gpu-1").gpus(1).obj()]
    plane.apply([job("d")])
    clock.now += 1
    plane.tick()
    assert incremental.parked == 0  # a new node changed the basis
    assert plane.get_job("a").phase.value == "Admitted"
