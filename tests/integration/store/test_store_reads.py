"""Reads after writes of JSON columns, on every store: a read made before a write never
hides the write from the reads after it (the in-memory store keeps decoded JSON per version of
a row), and every read returns a record of its own."""

from __future__ import annotations

import pytest

from phalanx.store import EventRecord, PodRecord, Store, Transition

pytestmark = pytest.mark.integration


def job_manifest(name: str) -> dict[str, object]:
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"team": "a"}},
        "spec": {"queue": "a", "gpus": 1},
    }


def test_json_columns_read_before_a_write_are_read_anew_after_it(store: Store) -> None:
    store.apply([], [("j1", "u1", job_manifest("j1"), "a", 0)], now=1.0)
    (job,) = store.list_jobs(manifests=False)
    assert (job.reason_facts, job.conditions, job.labels) == ({}, [], {"team": "a"})
    pod = PodRecord("p-0", job.id, "main", 0, 1, "n0", [[0, 1000]], {"RANK": "0"}, "Pending", 2.0)
    facts = {"attempt": 1, "pods": [{"node": "n0"}]}
    store.transition(
        Transition(
            job.id,
            job={"phase": "Admitted", "reason_facts": facts, "conditions": [{"type": "X"}]},
            new_pods=(pod,),
            events=(EventRecord(2.0, "Normal", "Admitted", "x", facts={"attempt": 1}),),
        )
    )
    assert store.pods([job.id])[0].devices == [[0, 1000]]
    store.transition(
        Transition(
            job.id,
            job={"reason_facts": {"attempt": 2}},
            pods={"p-0": {"devices": [[1, 500]], "env": {"RANK": "1"}}},
        )
    )
    for read in (store.get_job("j1"), store.get_job_by_id(job.id), store.list_jobs()[0]):
        assert read is not None
        assert read.reason_facts == {"attempt": 2} and read.conditions == [{"type": "X"}]
        assert read.manifest == job_manifest("j1")
    assert store.list_jobs(manifests=False)[0].manifest == {}
    (after,) = store.pods([job.id])
    assert (after.devices, after.env) == ([[1, 500]], {"RANK": "1"})
    assert store.pod("p-0") == after
    assert [e.facts for e in store.events(job.id)][-1] == {"attempt": 1}
    # A write of no JSON column keeps them; a write of one of them is read anew.
    store.transition(Transition(job.id, pods={"p-0": {"phase": "Running", "started_at": 3.0}}))
    (running,) = store.pods([job.id])
    assert (running.phase, running.devices, running.env) == ("Running", [[1, 500]], {"RANK": "1"})
    store.transition(Transition(job.id, pods={"p-0": {"env": {"RANK": "2"}}}))
    assert store.pods([job.id])[0].env == {"RANK": "2"}
    assert store.pods([job.id])[0].devices == [[1, 500]]


def test_each_read_is_a_record_of_its_own(store: Store) -> None:
    store.apply([], [("j1", "u1", job_manifest("j1"), "a", 0)], now=1.0)
    first, second = store.get_job("j1"), store.get_job("j1")
    assert first is not None and second is not None
    assert first == second and first is not second
    first.phase = "Changed"
    again = store.get_job("j1")
    assert again is not None and again.phase == "Pending"
