"""What the control plane does to cost less per job keeps its results: new uids have the
format of ``uuid4().hex``; the world cache keeps jobs in FIFO order when it reads some again;
pod events are recorded from jobs read without their manifests only when the specs are
known."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from phalanx.backends.base import PodEvent, PodEventKind
from phalanx.backends.sim import SimBackend, VirtualClock
from phalanx.controllers.lifecycle import Lifecycle
from phalanx.controllers.plane import new_uids
from phalanx.controllers.state import SpecCache, World, WorldCache
from phalanx.model.specs import job_to_manifest
from phalanx.store import MemoryStore, PodRecord, Store, Transition
from phalanx.testing import job_manifest, make_job, make_node


@pytest.mark.parametrize("count", [0, 1, 7, 300], ids=lambda n: f"{n}-uids")
def test_new_uids_are_distinct_random_uuid4_hexes(count: int) -> None:
    uids = new_uids(count)
    assert len(uids) == count == len(set(uids))
    for uid in uids:
        parsed = uuid.UUID(hex=uid)
        assert (parsed.hex, parsed.version, parsed.variant) == (uid, 4, uuid.RFC_4122)


def _submit(store: Store, *names: str) -> None:
    store.apply([], [(n, f"uid-{n}", job_manifest(n, pod_set="w"), "q", 0) for n in names], 1.0)


def _write(store: Store, name: str, **fields: object) -> None:
    record = store.get_job(name)
    assert record is not None
    new_pods = fields.pop("new_pods", ())
    pods = fields.pop("pods", {})
    assert store.transition(
        Transition(record.id, job=fields, pods=pods, new_pods=new_pods)  # type: ignore[arg-type]
    )


def _pod(store: Store, name: str) -> PodRecord:
    record = store.get_job(name)
    assert record is not None
    return PodRecord(f"{name}-p", record.id, "w", 0, 1, "n0", [], {}, "Pending", 2.0)


def _order(world: World) -> list[str]:
    return [job.name for job in world.jobs.values()]


def test_the_world_cache_keeps_fifo_order_as_it_reads_jobs_again() -> None:
    store = MemoryStore()
    specs = SpecCache()
    cache = WorldCache(store, specs)
    _submit(store, "a", "b", "c")
    assert _order(cache.read()) == ["a", "b", "c"]
    # 1. jobs written again keep their place, new ones come last
    _write(store, "b", phase="Admitted", attempt=1, new_pods=(_pod(store, "b"),))
    _write(store, "a", message="waits")
    _submit(store, "d")
    assert _order(cache.read()) == _order(World.read(store, specs)) == ["a", "b", "c", "d"]
    # 2. a job that leaves goes; one re-created under its name comes last (a new id)
    _write(store, "a", phase="Cancelled")
    c = store.get_job("c")
    assert c is not None
    store.delete_job(c.id)
    _submit(store, "c", "e")
    world = cache.read()
    assert _order(world) == _order(World.read(store, specs)) == ["b", "d", "c", "e"]
    assert list(world.jobs) == sorted(world.jobs)
    # 3. a finished job whose pod still runs stays in place until the pod ends
    _write(store, "b", phase="Failed")
    assert _order(cache.read()) == ["b", "d", "c", "e"]
    _write(store, "b", pods={"b-p": {"phase": "Failed"}})
    assert _order(cache.read()) == ["d", "c", "e"]
    assert cache.full_reads == 1


@pytest.mark.parametrize("has_spec", [True, False], ids=["spec-known", "spec-unknown"])
def test_pod_events_read_manifests_only_of_jobs_whose_spec_is_unknown(
    tmp_path: Path, has_spec: bool
) -> None:
    store = MemoryStore()
    clock = VirtualClock(10.0)
    backend = SimBackend([make_node("n0").gpus(1).obj()], clock)
    spec = make_job("j").queue("q").gpus(1).obj()
    store.apply([], [("j", "uid-j", job_to_manifest(spec), spec.queue, 0)], 1.0)
    specs = SpecCache()
    if has_spec:
        specs.submitted("uid-j", spec)
    lifecycle = Lifecycle(
        store, backend, lambda: clock.now, specs.job, tmp_path, 0.0, has_spec=specs.has
    )
    record = store.get_job("j")
    assert record is not None
    pod = PodRecord(
        "j-p", record.id, spec.pod_sets[0].name, 0, 1, "n0", [[0, 1000]], {}, "Pending", 10.0
    )
    _write(store, "j", phase="Admitted", attempt=1, new_pods=(pod,))
    read: list[bool] = []
    list_jobs = store.list_jobs

    def spy(**kw: object) -> object:
        read.append(bool(kw.get("manifests", True)))
        return list_jobs(**kw)  # type: ignore[arg-type]

    store.list_jobs = spy  # type: ignore[method-assign]
    written = lifecycle.on_pod_events(
        [PodEvent("j-p", PodEventKind.RUNNING, 11.0)], lambda e, exc: pytest.fail(str(exc))
    )
    assert written == 1
    assert read == ([False] if has_spec else [False, True])
    job = list_jobs(names=["j"])[0]
    assert (job.phase, job.started_at, job.reason_code) == ("Running", 11.0, "Started")
