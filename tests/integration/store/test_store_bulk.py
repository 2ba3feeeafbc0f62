"""The store's bulk paths, on SQLite and PostgreSQL: several transitions in one transaction,
applies from many threads written together (each still all or nothing), and the reads that
pick rows by name, id or version."""

from __future__ import annotations

import threading

import pytest

from phalanx.store import EventRecord, PodRecord, Store, Transition

pytestmark = pytest.mark.integration


def job_manifest(name: str, gpus: int = 1) -> dict[str, object]:
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"team": "a" if gpus == 1 else "b"}},
        "spec": {"queue": "a", "gpus": gpus},
    }


def add_jobs(store: Store, *names: str) -> dict[str, int]:
    store.apply([], [(n, f"uid-{n}", job_manifest(n), "a", 0) for n in names], now=1.0)
    return {j.name: j.id for j in store.list_jobs()}


def test_transitions_apply_each_guard_and_write_only_what_passes(store: Store) -> None:
    ids = add_jobs(store, "a", "b", "c")
    b = store.get_job("b")
    assert b is not None
    pod = PodRecord("a-0", ids["a"], "w", 0, 1, "n0", [[0, 1000]], {}, "Pending", 2.0)
    event = EventRecord(2.0, "Normal", "Admitted", "admitted")
    versions = store.transitions(
        [
            Transition(
                ids["a"],
                job={"phase": "Admitted", "attempt": 1},
                new_pods=(pod,),
                events=(event,),
                expect_phase="Pending",
            ),
            Transition(ids["b"], job={"message": "stale"}, expect_version=b.resource_version - 1),
            Transition(ids["c"], job={"phase": "Succeeded"}),  # not an allowed transition
            Transition(999_999, job={"message": "gone"}),
        ]
    )
    assert versions[0] > b.resource_version and versions[1:] == [0, 0, 0]
    a = store.get_job("a")
    assert a is not None and (a.phase, a.attempt, a.resource_version) == (
        "Admitted",
        1,
        versions[0],
    )
    assert [p.pod_id for p in store.pods([ids["a"]])] == ["a-0"]
    assert [e.reason for e in store.events(ids["a"])] == ["Created", "Admitted"]
    assert store.get_job("b") == b  # refused: untouched
    changes, _ = store.changes(b.resource_version)
    assert [(c.name, c.type, c.revision) for c in changes][-1] == ("a", "MODIFIED", versions[0])


def test_transitions_refuse_two_writes_of_one_job(store: Store) -> None:
    ids = add_jobs(store, "a")
    with pytest.raises(ValueError, match="one transition per job"):
        store.transitions([Transition(ids["a"]), Transition(ids["a"])])


def test_applies_from_many_threads_are_each_all_or_nothing(store: Store) -> None:
    add_jobs(store, "taken")
    results: dict[int, object] = {}

    def submit(i: int) -> None:
        # Every fifth one re-submits "taken" with another spec: refused, writing nothing.
        jobs = [(f"t{i}-{k}", f"u{i}-{k}", job_manifest(f"t{i}-{k}"), "a", 0) for k in range(3)]
        if i % 5 == 0:
            jobs.append(("taken", f"u{i}", job_manifest("taken", gpus=2), "a", 0))
        try:
            results[i] = store.apply([], jobs, now=2.0)
        except ValueError as exc:
            results[i] = exc

    threads = [threading.Thread(target=submit, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    refused = sorted(i for i, r in results.items() if isinstance(r, ValueError))
    assert refused == [0, 5, 10, 15]
    assert all(results[i] == ["created"] * 3 for i in range(20) if i % 5)
    names = {j.name for j in store.list_jobs()}
    assert names == {"taken"} | {f"t{i}-{k}" for i in range(20) if i % 5 for k in range(3)}
    versions = [j.resource_version for j in store.list_jobs()]
    assert len(set(versions)) == len(versions)  # one revision per job, none shared


def test_reads_by_name_id_and_version(store: Store) -> None:
    ids = add_jobs(store, "a", "b", "c")
    assert [j.name for j in store.list_jobs(names=["c", "a", "x"])] == ["a", "c"]
    assert [j.name for j in store.list_jobs(ids=[ids["b"]])] == ["b"]
    versions = store.list_job_versions(after_id=ids["a"], limit=5)
    assert [(i, labels) for i, _, labels in versions] == [
        (ids["b"], {"team": "a"}),
        (ids["c"], {"team": "a"}),
    ]
    c = store.get_job("c")
    assert c is not None and versions[-1][1] == c.resource_version


def test_reads_by_phase_queue_and_deleting_follow_every_write(store: Store) -> None:
    """The filters of list_jobs and pods answer for the rows as they are now: after
    transitions move jobs between phases, mark them deleting, end pods, and delete jobs."""
    ids = add_jobs(store, "a", "b", "c", "d")
    store.apply([], [("e", "uid-e", job_manifest("e"), "other", 0)], now=1.0)
    pod = PodRecord("b-0", ids["b"], "w", 0, 1, "n0", [], {}, "Running", 2.0)
    assert all(
        store.transitions(
            [
                Transition(ids["a"], job={"phase": "Admitted"}),
                Transition(ids["b"], job={"phase": "Admitted"}, new_pods=(pod,)),
                Transition(ids["c"], job={"phase": "Cancelled", "is_deleting": True}),
            ]
        )
    )
    assert store.transition(Transition(ids["a"], job={"phase": "Running"}))

    def names(**filters: object) -> list[str]:
        return [j.name for j in store.list_jobs(**filters)]  # type: ignore[arg-type]

    assert names(phases=["Pending"]) == ["d", "e"]
    assert names(phases=["Admitted", "Running"]) == ["a", "b"]
    assert names(phases=["Pending"], queue="other") == ["e"]
    assert names(deleting_only=True) == ["c"]
    assert names(phases=["Running"], names=["a", "b"], after_id=0, limit=1) == ["a"]
    assert names(after_id=ids["b"], limit=2) == ["c", "d"]
    assert [p.pod_id for p in store.pods(live_only=True)] == ["b-0"]
    assert store.transition(Transition(ids["b"], pods={"b-0": {"phase": "Succeeded"}}))
    assert store.pods(live_only=True) == [] and len(store.pods([ids["b"]])) == 1
    store.delete_job(ids["c"])
    store.delete_job(ids["b"])
    assert names(deleting_only=True) == [] and store.pods() == []
    assert names(phases=["Admitted", "Running", "Cancelled"]) == ["a"]
    assert names() == ["a", "d", "e"]


def test_the_memory_store_answers_every_method_that_touches_sql() -> None:
    """MemoryStore subclasses Store only to be accepted wherever a Store is: every public
    method of Store must be its own, but those written on top of other public methods."""
    from phalanx.store import MemoryStore

    on_top = {"list_config", "transition", "redacted_url"}
    public = {name for name in vars(Store) if not name.startswith("_")}
    missing = {name for name in public - on_top if name not in vars(MemoryStore)}
    assert missing == set()
    assert on_top <= public  # still there, still built on the others
