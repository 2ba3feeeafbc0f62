"""The PipelineRun reconciler looks only at runs the revision log says were written (or whose
running steps' jobs were) since its last pass, and at every run at start and every RESYNC_S:
a run nothing happened to costs the loop no read."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from phalanx.cli.pipeline import run_manifest
from phalanx.controllers.lifecycle import guarded
from phalanx.controllers.state import SpecCache, WorldCache
from phalanx.pipelines import pipeline, task
from phalanx.pipelines.reconciler import KIND, RESYNC_S, PipelineRunReconciler, job_name
from phalanx.store.memory import MemoryStore
from phalanx.testing import queue_manifests


@task
def inc(x: int) -> int:
    return x + 1


@pipeline
def chain() -> object:
    return inc(inc(0))


class CountingStore(MemoryStore):
    """Counts the reads of PipelineRuns."""

    def __init__(self) -> None:
        super().__init__()
        self.reads: Counter[str] = Counter()

    def list_objects(self, kind: str) -> Any:
        if kind == KIND:
            self.reads["list"] += 1
        return super().list_objects(kind)

    def get_object(self, kind: str, name: str) -> Any:
        if kind == KIND:
            self.reads[f"get {name}"] += 1
        return super().get_object(kind, name)


@dataclass
class _Backend:
    name: str = "local"


@dataclass
class _Plane:
    """What the reconciler uses of a ControlPlane."""

    store: CountingStore
    backend: _Backend = field(default_factory=_Backend)
    specs: SpecCache = field(default_factory=SpecCache)
    added: int = 0

    def jobs_added(self) -> None:
        self.added += 1


def test_only_written_runs_are_read_between_full_passes(tmp_path: Path) -> None:
    store = CountingStore()
    manifest = run_manifest(
        chain.build(), name="r", queue="q", artifacts=str(tmp_path), no_cache=False
    )
    store.apply([(KIND, "r", manifest)], [], 0.0)
    plane = _Plane(store)
    reconciler = PipelineRunReconciler(plane)  # type: ignore[arg-type]

    reconciler.reconcile(1.0)  # the first pass looks at every run: submits step 0's job
    assert store.reads == Counter({"list": 1})
    assert store.get_job(job_name("r", 0)) is not None and plane.added == 1

    store.reads.clear()
    reconciler.reconcile(1.1)  # its own writes (the run's status, the job) were since
    assert store.reads == Counter({"get r": 1})

    store.reads.clear()
    reconciler.reconcile(1.2)  # nothing written since: nothing read
    reconciler.reconcile(1.3)
    assert store.reads == Counter()

    job = store.get_job(job_name("r", 0))
    assert job is not None
    assert store.transitions([guarded(job, {"message": "written"})]) != [0]
    reconciler.reconcile(1.35)  # a write of a running step's job: its run is read
    assert store.reads == Counter({"get r": 1})
    store.reads.clear()

    other = dict(manifest, metadata={"name": "other", "labels": {}})
    store.apply([(KIND, "other", other)], [], 1.4)
    reconciler.reconcile(1.5)  # a new run: read alone
    assert store.reads == Counter({"get other": 1})

    store.reads.clear()
    reconciler.reconcile(1.0 + RESYNC_S)  # a full pass again after RESYNC_S
    assert store.reads == Counter({"list": 1})


def test_a_runs_status_writes_do_not_have_the_loop_read_its_configuration_again(
    tmp_path: Path,
) -> None:
    """A run's status is written at every step: the World's ``config_revision`` (which has
    queues, flavors and node health read again) moves for a Queue write, not for those."""
    store = CountingStore()
    world = WorldCache(store, SpecCache())
    world.read()
    start = world.config_revision
    manifest = run_manifest(
        chain.build(), name="r", queue="q", artifacts=str(tmp_path), no_cache=False
    )
    store.apply([(KIND, "r", manifest)], [], 1.0)
    store.apply([(KIND, "r", {**manifest, "status": {"phase": "Running"}})], [], 1.1)
    world.read()
    assert world.config_revision == start
    queue = next(m for m in queue_manifests() if m["kind"] == "Queue")
    store.apply([("Queue", "q", queue)], [], 1.2)
    world.read()
    assert world.config_revision is not None and world.config_revision != start


def test_a_step_whose_job_the_store_refuses_fails_saying_why_and_the_run_is_written(
    tmp_path: Path,
) -> None:
    """The steps' jobs and the run's status are one transaction: when the store refuses a
    job (one of that name exists with another spec), nothing of it is written, then the
    step fails with the reason and the run's status is written alone."""
    store = CountingStore()
    manifest = run_manifest(
        chain.build(), name="r", queue="q", artifacts=str(tmp_path), no_cache=False
    )
    store.apply([(KIND, "r", manifest)], [], 0.0)
    squatter = {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Job",
        "metadata": {"name": job_name("r", 0)},
        "spec": {"queue": "q", "podSets": [{"name": "w", "command": ["true"]}]},
    }
    store.apply([], [(job_name("r", 0), "uid-0", squatter, "q", 0)], 0.0)
    plane = _Plane(store)
    reconciler = PipelineRunReconciler(plane)  # type: ignore[arg-type]
    reconciler.reconcile(1.0)

    run = store.get_object(KIND, "r")
    assert run is not None
    first = next(iter(run.manifest["status"]["steps"].values()))
    assert first["state"] == "Failed" and first["message"].startswith("job refused: ")
    reconciler.reconcile(1.1)  # its write is seen: the dependent can never run
    run = store.get_object(KIND, "r")
    assert run is not None and run.manifest["status"]["phase"] == "Failed"
    job = store.get_job(job_name("r", 0))
    assert job is not None and job.uid == "uid-0"  # the other job is left as it was
    assert plane.added == 0
