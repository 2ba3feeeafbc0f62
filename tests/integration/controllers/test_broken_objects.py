"""A stored object that cannot be loaded (written by an older version, or corrupt) is
isolated: it gets a condition and an event, is left out of scheduling while the rest goes on,
can be deleted, and /healthz says ``degraded`` naming it until it is gone."""

from __future__ import annotations

import time

import pytest
from harness import Harness, job_manifest, queue_manifests

pytestmark = pytest.mark.integration

#: As an older release stored them: a backoff of 999999.5 s written as ``1e+06s``, and a
#: quota of 1e300 (beyond today's bounds; ``unlimited`` is how a quota says "no limit" now);
#: neither parses.
OLD_JOB = job_manifest("old", "print(1)", gpus=1, restartPolicy={"backoff": "1e+06s"})
OLD_QUEUE = {
    "apiVersion": "phalanx.dev/v1alpha1",
    "kind": "Queue",
    "metadata": {"name": "oldq"},
    "spec": {"flavors": [{"name": "default", "resources": {"nvidia.com/gpu": "1e300"}}]},
}


def write_corrupt_rows(h: Harness) -> None:
    """Straight into the store, past validation."""
    h.plane.store.apply(
        [("Queue", "oldq", OLD_QUEUE)], [("old", "uid-old-0001", OLD_JOB, "q", 0)], time.time()
    )


def test_unloadable_objects_are_isolated_reported_and_deletable(harness: Harness) -> None:
    h = harness
    h.plane.apply(queue_manifests(gpus=4))
    write_corrupt_rows(h)
    h.plane.apply([job_manifest("good", "print('ok')", gpus=1)])

    # The loop goes on: the good job runs; the others are left out, each with its error.
    h.run_until(lambda: h.phase("good") == "Succeeded")
    old = h.plane.store.get_job("old")
    assert old is not None and old.phase == "Pending"
    (condition,) = [c for c in old.conditions if c["type"] == "ReconcileError"]
    assert "1e+06s" in str(condition["message"])
    assert any(e.reason == "ReconcileError" for e in h.plane.store.events(old.id))
    assert any(e.reason == "ReconcileError" for e in h.plane.store.object_events("Queue", "oldq"))
    assert [q.name for q in h.plane.list_queues()] == ["q"]
    assert h.plane.list_nodes()

    h.plane.start()  # /healthz reports on the running loop
    health = h.plane.health()
    assert health["status"] == "degraded"
    failing = {(f["kind"], f["name"]): f["error"] for f in health["failing"]}  # type: ignore[union-attr]
    assert set(failing) == {("Job", "old"), ("Queue", "oldq")}
    assert "1e+06s" in str(failing[("Job", "old")])
    assert health["failed_ticks"] == 0

    h.plane.delete("job", "old")
    h.plane.delete("queue", "oldq")
    h.run_until(lambda: h.plane.store.get_job("old") is None)
    assert h.plane.store.get_object("Queue", "oldq") is None
    h.run_until(lambda: h.plane.health()["status"] == "ok")
    assert h.plane.health()["failing"] == []
    h.plane.stop()


def test_a_reconciler_failing_as_a_whole_is_counted_and_degrades_health(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    h = harness

    def broken(now: float) -> None:
        raise RuntimeError("store away")

    monkeypatch.setattr(h.plane.jobs_reconciler, "reconcile", broken)
    h.plane.start()
    try:
        h.run_until(lambda: int(h.plane.health()["failed_ticks"]) >= 2)  # type: ignore[call-overload]
        assert h.plane.health()["status"] == "degraded"
        monkeypatch.undo()
        h.run_until(lambda: h.plane.health()["status"] == "ok")
    finally:
        h.plane.stop()
