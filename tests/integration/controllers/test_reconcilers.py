"""Reconcilers: a failure on one object stays on that object, and deleting an owner deletes
what it owns, in the background, with events."""

from __future__ import annotations

import pytest
from harness import Harness, job_manifest, queue_manifests
from sqlalchemy import text

pytestmark = pytest.mark.integration


def corrupt(harness: Harness, table: str, where: str, manifest: str) -> None:
    """Write a manifest the parser refuses straight into the store (as a release with other
    rules, or a hand edit, could leave it)."""
    with harness.plane.store.engine.begin() as conn:
        conn.execute(text(f"UPDATE {table} SET manifest = :m WHERE {where}"), {"m": manifest})


def test_a_job_whose_spec_no_longer_parses_does_not_stop_the_others(harness: Harness) -> None:
    harness.plane.apply(queue_manifests())
    # Written by another writer of the store (another control plane, an older release): this
    # one has not parsed it, as it has the jobs applied through it.
    bad = job_manifest("bad", "print('never')")
    harness.plane.store.apply([], [("bad", "uid-bad", bad, "q", 0)], harness.plane.clock())
    corrupt(harness, "jobs", "name = 'bad'", '{"kind": "Job", "spec": {"podSets": 7}}')
    harness.plane.apply([job_manifest("good", "print('ok')")])
    harness.run_until(lambda: harness.phase("good") == "Succeeded")
    bad = harness.plane.store.get_job("bad")
    assert bad is not None and bad.phase == "Pending"
    [condition] = bad.conditions
    assert condition["type"] == "ReconcileError" and condition["reason"] == "read spec"
    errors = [e for e in harness.plane.store.events(bad.id) if e.reason == "ReconcileError"]
    assert len(errors) == 1  # once, not on every tick
    assert errors[0].facts["reconciler"] == "jobs" and errors[0].facts["step"] == "read spec"
    stats = harness.plane.health()["reconcilers"]
    assert isinstance(stats, dict) and stats["jobs"]["object_errors"] >= 2
    assert stats["jobs"]["errors"] == 0  # the reconciler itself never failed


def test_a_queue_that_no_longer_parses_is_left_out_with_an_event(harness: Harness) -> None:
    other = queue_manifests()[1]
    broken = {**other, "metadata": {"name": "broken"}}
    harness.plane.apply([*queue_manifests(), broken])
    corrupt(harness, "config_objects", "name = 'broken'", '{"spec": {"flavors": "x"}}')
    harness.plane.apply([job_manifest("good", "print('ok')")])
    harness.run_until(lambda: harness.phase("good") == "Succeeded")
    [event] = harness.plane.store.object_events("Queue", "broken")
    assert event.reason == "ReconcileError" and event.facts["step"] == "read spec"


def test_deleting_an_owner_deletes_what_it_owns(harness: Harness) -> None:
    queues = queue_manifests()
    parent = {**queues[1], "metadata": {"name": "parent"}}
    child = {
        **queues[1],
        "metadata": {"name": "child", "ownerReferences": [{"kind": "Queue", "name": "parent"}]},
    }
    harness.plane.apply([*queues, parent, child])
    owned = job_manifest("owned", "import time; time.sleep(60)")
    owned["metadata"] = {  # type: ignore[index]
        "name": "owned",
        "ownerReferences": [{"kind": "Queue", "name": "parent"}],
    }
    harness.plane.apply([owned, job_manifest("free", "import time; time.sleep(60)")])
    harness.run_until(lambda: harness.phase("owned") == "Running")
    harness.plane.delete("queue", "parent")
    harness.run_until(lambda: harness.plane.store.get_job("owned") is None)
    assert [q.name for q in harness.plane.list_queues()] == ["q"]
    assert harness.phase("free") == "Running"
    events = harness.plane.store.object_events("Queue", "parent")
    assert sorted((e.facts["kind"], e.facts["name"]) for e in events) == [
        ("Job", "owned"),
        ("Queue", "child"),
    ]
    assert all(e.reason == "OwnerDeleted" for e in events)


def test_an_owner_recreated_under_the_same_name_does_not_adopt(harness: Harness) -> None:
    queues = queue_manifests()
    harness.plane.apply([*queues, {**queues[1], "metadata": {"name": "parent"}}])
    uid = harness.plane.store.get_object("Queue", "parent").uid  # type: ignore[union-attr]
    child = {
        **queues[1],
        "metadata": {
            "name": "child",
            "ownerReferences": [{"kind": "Queue", "name": "parent", "uid": uid}],
        },
    }
    harness.plane.apply([child])
    harness.plane.tick()
    assert harness.plane.store.get_object("Queue", "child") is not None
    harness.plane.delete("queues", "parent")
    harness.plane.apply([{**queues[1], "metadata": {"name": "parent"}}])
    harness.plane.tick()
    assert harness.plane.store.get_object("Queue", "child") is None
