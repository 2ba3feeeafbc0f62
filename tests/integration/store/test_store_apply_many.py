"""Store.apply_many (several apply requests in one transaction, each all or nothing) and
Store.job_manifests (apply's read of the jobs it names), on every store."""

from __future__ import annotations

from phalanx.store import Store

QUEUE = {"apiVersion": "phalanx.dev/v1alpha1", "kind": "Queue", "metadata": {"name": "a"}}


def manifest(name: str, gpus: int = 1) -> dict[str, object]:
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"queue": "a", "gpus": gpus},
    }


def test_apply_many_writes_each_request_all_or_nothing(store: Store) -> None:
    store.apply([], [("taken", "u0", manifest("taken"), "a", 0)], now=1.0)
    outcomes = store.apply_many(
        [
            ([("Queue", "a", QUEUE)], [("j1", "u1", manifest("j1"), "a", 0)], 2.0),
            # A job that exists with another manifest: this request writes nothing.
            (
                [],
                [
                    ("j2", "u2", manifest("j2"), "a", 0),
                    ("taken", "u3", manifest("taken", 2), "a", 0),
                ],
                2.0,
            ),
            (
                [],
                [("taken", "u4", manifest("taken"), "a", 0), ("j3", "u5", manifest("j3"), "a", 0)],
                3.0,
            ),
            # The same job in two requests of one batch: created once, then unchanged.
            ([], [("j3", "u6", manifest("j3"), "a", 0)], 3.0),
        ]
    )
    first, second, third, fourth = outcomes
    assert first == ["created", "created"]
    assert isinstance(second, ValueError) and 'job "taken" already exists' in str(second)
    assert third == ["unchanged", "created"]
    assert fourth == ["unchanged"]
    assert [j.name for j in store.list_jobs()] == ["taken", "j1", "j3"]
    assert [name for name, _, _ in store.list_config("Queue")] == ["a"]
    assert store.job_manifests(["j1", "j2", "j3", "nope"]) == {
        "j1": manifest("j1"),
        "j3": manifest("j3"),
    }
    assert store.job_manifests([]) == {}
