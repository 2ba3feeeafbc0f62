"""Checkpoint-aware preemption: victims are chosen by the work they would lose (GPU-seconds
since their last checkpoint), then by priority; the Preempted reason carries the cost."""

from __future__ import annotations

from phalanx.scheduling import schedule
from phalanx.testing import make_admitted, make_job, make_node, make_queue, make_snapshot

QA = make_queue("a").quota(gpu=64).obj()


def nodes8(count: int) -> list:
    return [make_node(f"n{i}").gpus(8).obj() for i in range(count)]


def test_of_two_victims_differing_only_in_checkpoint_age_the_fresher_goes() -> None:
    # Same priority, same GPUs, admitted together: only the checkpoint age differs.
    stale = make_admitted(
        make_job("stale").queue("a").gpus(8).obj(),
        [("n0", range(8))],
        admitted_at=0,
        last_checkpoint_at=400,
    )
    fresh = make_admitted(
        make_job("fresh").queue("a").gpus(8).obj(),
        [("n1", range(8))],
        admitted_at=0,
        last_checkpoint_at=990,
    )
    for admitted in ([stale, fresh], [fresh, stale]):
        snap = make_snapshot(
            nodes=nodes8(2),
            queues=[QA],
            admitted=admitted,
            pending=[make_job("hi").queue("a").gpus(8).priority(5).obj()],
            now=1000.0,
        )
        decisions = schedule(snap)
        assert [p.victim for p in decisions.preemptions] == ["fresh"]
        facts = decisions.preemptions[0].reason.facts
        assert (facts["lost_gpu_s"], facts["victim_gpus"], facts["last_checkpoint_age_s"]) == (
            80.0,
            8.0,
            10.0,
        )


def test_cost_comes_before_priority() -> None:
    # A priority-0 job that saved long ago loses more than a priority-3 job that just saved.
    low_stale = make_admitted(
        make_job("low").queue("a").gpus(8).obj(), [("n0", range(8))], last_checkpoint_at=100
    )
    mid_fresh = make_admitted(
        make_job("mid").queue("a").gpus(8).priority(3).obj(),
        [("n1", range(8))],
        last_checkpoint_at=999,
    )
    snap = make_snapshot(
        nodes=nodes8(2),
        queues=[QA],
        admitted=[low_stale, mid_fresh],
        pending=[make_job("hi").queue("a").gpus(8).priority(5).obj()],
        now=1000.0,
    )
    assert [p.victim for p in schedule(snap).preemptions] == ["mid"]


def test_one_expensive_victim_loses_less_than_several_cheap_ones() -> None:
    # Greedy by cost takes the two 4-GPU jobs (lost 4*200 + 4*300 = 2000 GPU-s); the single
    # 8-GPU job that checkpointed 100 s ago loses 800 GPU-s and suffices alone.
    a = make_admitted(
        make_job("a4").queue("a").gpus(4).obj(), [("n0", range(4))], last_checkpoint_at=800
    )
    b = make_admitted(
        make_job("b4").queue("a").gpus(4).obj(), [("n0", range(4, 8))], last_checkpoint_at=700
    )
    c = make_admitted(
        make_job("c8").queue("a").gpus(8).obj(), [("n1", range(8))], last_checkpoint_at=900
    )
    snap = make_snapshot(
        nodes=nodes8(2),
        queues=[QA],
        admitted=[a, b, c],
        pending=[make_job("hi").queue("a").gpus(8).priority(5).obj()],
        now=1000.0,
    )
    decisions = schedule(snap)
    assert [p.victim for p in decisions.preemptions] == ["c8"]
    facts = decisions.preemptions[0].reason.facts
    assert (facts["lost_gpu_s"], facts["last_checkpoint_age_s"]) == (800.0, 100.0)


def test_a_job_that_never_checkpointed_counts_from_admission() -> None:
    early = make_admitted(make_job("early").queue("a").gpus(8).obj(), [("n0", range(8))])
    late = make_admitted(
        make_job("late").queue("a").gpus(8).obj(), [("n1", range(8))], admitted_at=950
    )
    snap = make_snapshot(
        nodes=nodes8(2),
        queues=[QA],
        admitted=[early, late],
        pending=[make_job("hi").queue("a").gpus(8).priority(5).obj()],
        now=1000.0,
    )
    decisions = schedule(snap)
    assert [p.victim for p in decisions.preemptions] == ["late"]
    facts = decisions.preemptions[0].reason.facts
    assert (facts["last_checkpoint_age_s"], facts["admitted_age_s"]) == (None, 50.0)
