"""WorldCache: the World kept current from the revision log equals a World read afresh,
after every kind of write, and falls back to reading everything when the log was compacted
past its last read."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from phalanx.controllers.state import SpecCache, World, WorldCache
from phalanx.store import PodRecord, Store, Transition, open_store
from phalanx.testing import job_manifest

pytestmark = pytest.mark.integration


def job(name: str) -> dict[str, object]:
    return job_manifest(name, pod_set="w")


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(None, tmp_path)
    yield s
    s.close()


def submit(store: Store, *names: str) -> None:
    store.apply([], [(n, f"uid-{n}", job(n), "q", 0) for n in names], now=1.0)


def pod(store: Store, job_name: str, attempt: int = 1) -> PodRecord:
    record = store.get_job(job_name)
    assert record is not None
    return PodRecord(
        f"{job_name}-{attempt}", record.id, "w", 0, attempt, "n0", [], {}, "Pending", 2.0
    )


def write(store: Store, name: str, **fields: object) -> None:
    record = store.get_job(name)
    assert record is not None
    new_pods = fields.pop("new_pods", ())
    pods = fields.pop("pods", {})
    assert store.transition(
        Transition(record.id, job=fields, pods=pods, new_pods=new_pods)  # type: ignore[arg-type]
    )


def same(cached: World, fresh: World) -> None:
    assert cached.jobs == fresh.jobs
    assert list(cached.jobs) == list(fresh.jobs)  # FIFO, as a fresh read
    assert cached.live_pods == fresh.live_pods
    assert cached.specs.keys() == fresh.specs.keys()
    assert cached.broken.keys() == fresh.broken.keys()
    assert list(cached.holding.items()) == list(fresh.holding.items())


def test_reads_what_a_fresh_read_reads_after_every_kind_of_write(store: Store) -> None:
    specs = SpecCache()
    cache = WorldCache(store, specs)
    submit(store, "a", "b", "c", "d")
    same(cache.read(), World.read(store, specs))
    assert cache.full_reads == 1
    write(store, "a", phase="Admitted", attempt=1, new_pods=(pod(store, "a"),))
    write(store, "b", message="waits")
    submit(store, "e")
    same(cache.read(), World.read(store, specs))
    write(store, "a", phase="Running", pods={"a-1": {"phase": "Running"}})
    write(store, "c", phase="Cancelled")  # leaves the World
    d = store.get_job("d")
    assert d is not None
    store.delete_job(d.id)
    same(cache.read(), World.read(store, specs))
    # a job that finished but whose pod still runs stays in, until the pod ends
    write(store, "a", phase="Failed")
    world = cache.read()
    same(world, World.read(store, specs))
    assert "a" in {j.name for j in world.jobs.values()}
    write(store, "a", pods={"a-1": {"phase": "Failed"}})
    world = cache.read()
    same(world, World.read(store, specs))
    assert {j.name for j in world.jobs.values()} == {"b", "e"}
    submit(store, "c2")  # ids and names that come back after a delete
    same(cache.read(), World.read(store, specs))
    assert cache.full_reads == 1  # all of it from the log


def test_a_noted_write_is_not_read_back(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = WorldCache(store, SpecCache())
    submit(store, "a", "b")
    record = cache.read().jobs[1]
    [version] = store.transitions([Transition(record.id, job={"message": "noted"})])
    record.message, record.resource_version = "noted", version
    cache.note([record])
    fetched: list[object] = []
    list_jobs = store.list_jobs
    monkeypatch.setattr(store, "list_jobs", lambda **kw: fetched.append(kw) or list_jobs(**kw))
    assert cache.read().jobs[1].message == "noted"
    assert fetched == []
    write(store, "b", message="not noted")
    assert cache.read().jobs[2].message == "not noted"
    assert len(fetched) == 1


def test_a_log_compacted_past_the_last_read_means_reading_everything(store: Store) -> None:
    specs = SpecCache()
    cache = WorldCache(store, specs)
    submit(store, "a")
    cache.read()
    submit(store, "b", "c")
    write(store, "b", message="x")
    store.compact(keep=1)
    same(cache.read(), World.read(store, specs))
    assert cache.full_reads == 2


def test_changed_since_names_every_job_read_since_an_epoch(store: Store) -> None:
    """What stop_strays relies on: every job whose record or live pods changed (or that
    left the World) after a World's epoch is named; a full read since names nothing (None)."""
    cache = WorldCache(store, SpecCache())
    submit(store, "a", "b", "c")
    first = cache.read()
    ids = {j.name: i for i, j in first.jobs.items()}
    assert cache.changed_since(first.epoch) == frozenset()
    assert cache.read() is first  # nothing changed: the same World again
    write(store, "a", phase="Admitted", attempt=1, new_pods=(pod(store, "a"),))
    second = cache.read()
    assert cache.changed_since(first.epoch) == {ids["a"]}
    write(store, "b", phase="Cancelled")  # leaves the World
    write(store, "a", pods={"a-1": {"phase": "Running"}})
    third = cache.read()
    assert ids["b"] not in third.jobs
    assert cache.changed_since(second.epoch) == {ids["a"], ids["b"]}
    assert cache.changed_since(first.epoch) == {ids["a"], ids["b"]}
    assert cache.changed_since(third.epoch) == frozenset()
    store.compact(keep=1)
    submit(store, "d")
    write(store, "d", message="x")
    store.compact(keep=1)
    fourth = cache.read()  # compacted past the last read: a full read
    assert cache.full_reads == 2
    assert cache.changed_since(third.epoch) is None
    assert cache.changed_since(fourth.epoch) == frozenset()
