"""The rollout planner: scale up and down, replace failed replicas, roll a new revision within
maxSurge/maxUnavailable, one at a time when the surge cannot be admitted, canary splits."""

from __future__ import annotations

import pytest

from phalanx.model.service import LATEST, TrafficTarget
from phalanx.serving.rollout import (
    ReplicaPhase,
    ReplicaState,
    plan_rollout,
    split_replicas,
)

R, S, P, F, T = (
    ReplicaPhase.READY,
    ReplicaPhase.STARTING,
    ReplicaPhase.PENDING,
    ReplicaPhase.FAILED,
    ReplicaPhase.TERMINATING,
)


def replicas(*specs: tuple[str, str, ReplicaPhase] | tuple[str, str, ReplicaPhase, bool]):
    out = []
    for i, spec in enumerate(specs):
        name, revision, phase = spec[:3]
        blocked = bool(spec[3]) if len(spec) > 3 else False
        out.append(ReplicaState(name, revision, phase, blocked, created_at=float(i)))
    return out


def test_scale_up_creates_every_missing_replica() -> None:
    plan = plan_rollout(replicas(("a", "r1", R)), {"r1": 3}, max_surge=1, max_unavailable=0)
    assert plan.create == ("r1", "r1") and plan.remove == ()


def test_scale_down_removes_the_cheapest_first() -> None:
    state = replicas(("a", "r1", R), ("b", "r1", P), ("c", "r1", S), ("d", "r1", R))
    plan = plan_rollout(state, {"r1": 1}, max_surge=1, max_unavailable=0)
    assert [name for name, _ in plan.remove] == ["b", "c", "d"]  # pending, starting, newest
    assert plan.create == ()


def test_scale_to_zero_removes_everything() -> None:
    plan = plan_rollout(
        replicas(("a", "r1", R), ("b", "r1", R)), {"r1": 0}, max_surge=1, max_unavailable=0
    )
    assert {name for name, _ in plan.remove} == {"a", "b"}


def test_a_failed_replica_is_removed_and_replaced() -> None:
    plan = plan_rollout(
        replicas(("a", "r1", R), ("b", "r1", F)), {"r1": 2}, max_surge=1, max_unavailable=0
    )
    assert plan.remove == (("b", "failed; replaced"),) and plan.create == ("r1",)


def test_a_rolling_update_surges_one_then_waits_for_it() -> None:
    old = replicas(("a", "old", R), ("b", "old", R))
    plan = plan_rollout(old, {"new": 2}, max_surge=1, max_unavailable=0)
    assert plan.create == ("new",) and plan.remove == ()
    starting = [*old, ReplicaState("c", "new", S, created_at=5)]
    plan = plan_rollout(starting, {"new": 2}, max_surge=1, max_unavailable=0)
    assert plan.create == () and plan.remove == ()  # never below 2 ready
    assert "wait for room" in plan.waiting
    ready = [*old, ReplicaState("c", "new", R, created_at=5)]
    plan = plan_rollout(ready, {"new": 2}, max_surge=1, max_unavailable=0)
    assert len(plan.remove) == 1 and plan.remove[0][0] in {"a", "b"}
    assert plan.create == ("new",)  # the removal makes room for the next one


def test_max_unavailable_lets_old_replicas_go_first() -> None:
    old = replicas(("a", "old", R), ("b", "old", R), ("c", "old", R))
    plan = plan_rollout(old, {"new": 3}, max_surge=0, max_unavailable=1)
    assert len(plan.remove) == 1 and plan.create == ("new",)


def test_without_quota_for_the_surge_one_old_replica_goes_at_a_time() -> None:
    state = replicas(("a", "old", R), ("b", "old", R), ("c", "new", P, True))
    plan = plan_rollout(state, {"new": 2}, max_surge=1, max_unavailable=0)
    assert len(plan.remove) == 1 and "one at a time" in plan.remove[0][1]
    # while that one stops, no other goes
    stopping = [*state[:1], ReplicaState("b", "old", T), state[2]]
    plan = plan_rollout(stopping, {"new": 2}, max_surge=1, max_unavailable=0)
    assert plan.remove == ()


def test_min_available_stops_the_one_at_a_time_replacement() -> None:
    state = replicas(("a", "old", R), ("b", "old", R), ("c", "new", P, True))
    plan = plan_rollout(state, {"new": 2}, max_surge=1, max_unavailable=0, min_available=2)
    assert plan.remove == ()
    assert "below minAvailable 2" in plan.waiting


def test_a_pending_replica_that_is_merely_queued_does_not_trigger_replacement() -> None:
    state = replicas(("a", "old", R), ("b", "old", R), ("c", "new", P, False))
    plan = plan_rollout(state, {"new": 2}, max_surge=1, max_unavailable=0)
    assert plan.remove == ()


@pytest.mark.parametrize(
    ("total", "traffic", "expected"),
    [
        (3, (), {"cur": 3}),
        (0, (), {"cur": 0}),
        (10, (("old", 90), (LATEST, 10)), {"old": 9, "cur": 1}),
        (2, (("old", 90), (LATEST, 10)), {"old": 2, "cur": 1}),
        (0, (("old", 90), (LATEST, 10)), {"old": 0, "cur": 0}),
        (4, (("old", 100), (LATEST, 0)), {"old": 4, "cur": 0}),
    ],
    ids=["all", "zero", "90-10", "small", "zero-split", "staged"],
)
def test_split_replicas(
    total: int, traffic: tuple[tuple[str, int], ...], expected: dict[str, int]
) -> None:
    targets = tuple(TrafficTarget(r, p) for r, p in traffic)
    assert split_replicas(total, targets, "cur") == expected
