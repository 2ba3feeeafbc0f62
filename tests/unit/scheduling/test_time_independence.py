"""``is_time_independent``: when a cycle's decisions cannot change with the clock alone (what
lets the control loop skip a resync while nothing changed)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from phalanx.scheduling import Snapshot, schedule
from phalanx.scheduling.incremental import is_time_independent
from phalanx.scheduling.snapshot import PendingWorkload
from phalanx.testing import make_admitted, make_job, make_node, make_queue, make_snapshot


def waiting_behind_a_holder(*, preempts: bool) -> Snapshot:
    """Job "waiting" (priority 5) waits for the 2 GPUs "holder" (priority 0) uses."""
    queue = make_queue("a").quota(gpu=4)
    node = make_node("n0").gpus(2).obj()
    holder = make_job("holder").queue("a").priority(0).gpus(2).obj()
    waiting = make_job("waiting").queue("a").priority(5).gpus(2).obj()
    return make_snapshot(
        nodes=[node],
        queues=[(queue if preempts else queue.no_preemption()).obj()],
        pending=[waiting],
        admitted=[make_admitted(holder, [("n0", [0, 1])])],
    )


def never_fits() -> Snapshot:
    return make_snapshot(
        nodes=[make_node("n0").gpus(2).obj()],
        queues=[make_queue("a").quota(gpu=8).obj()],
        pending=[make_job("big").queue("a").gpus(4).obj()],
    )


def in_backoff() -> Snapshot:
    snapshot = never_fits()
    (workload,) = snapshot.pending
    return replace(snapshot, pending=(PendingWorkload(workload.spec, 0, snapshot.now + 30),))


def quota_only_no_victims() -> Snapshot:
    """Waits for quota; a workload runs, but the queue never preempts."""
    return waiting_behind_a_holder(preempts=False)


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        pytest.param(never_fits, True, id="nothing-admitted"),
        pytest.param(quota_only_no_victims, True, id="admitted-but-no-queue-preempts"),
        pytest.param(lambda: waiting_behind_a_holder(preempts=True), False, id="may-preempt"),
        pytest.param(in_backoff, False, id="backoff"),
    ],
)
def test_is_time_independent(build: object, expected: bool) -> None:
    snapshot = build()  # type: ignore[operator]
    decisions = schedule(snapshot)
    assert is_time_independent(snapshot, decisions) is expected


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(never_fits, id="nothing-admitted"),
        pytest.param(quota_only_no_victims, id="admitted-but-no-queue-preempts"),
    ],
)
def test_what_it_claims_holds_an_hour_later(build: object) -> None:
    snapshot = build()  # type: ignore[operator]
    decisions = schedule(snapshot)
    assert is_time_independent(snapshot, decisions)
    assert schedule(replace(snapshot, now=snapshot.now + 3600)) == decisions


def test_a_preemption_depends_on_the_time() -> None:
    snapshot = waiting_behind_a_holder(preempts=True)
    decisions = schedule(snapshot)
    assert decisions.preemptions  # "waiting" outranks the holder
    assert not is_time_independent(snapshot, decisions)
