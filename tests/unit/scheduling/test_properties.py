"""Hypothesis properties of schedule(): nothing over-allocated, gangs all or nothing, quota
respected, and the same decisions whatever the input order."""

from __future__ import annotations

import random
from collections import defaultdict

from hypothesis import given
from hypothesis import strategies as st

from phalanx.model.objects import JobSpec, Node
from phalanx.model.resources import GPU, RESOURCE_NAMES, Resources
from phalanx.scheduling import Decisions, Snapshot, schedule
from phalanx.scheduling.snapshot import AdmittedWorkload, PendingWorkload, PlacedPod
from phalanx.testing import make_job, make_node, make_queue, make_snapshot

GPU_SHAPES = [0, 250, 500, 1000, 2000, 4000, 8000]


@st.composite
def scenarios(draw: st.DrawFn) -> Snapshot:
    nodes = [
        make_node(f"n{i}")
        .gpus(draw(st.sampled_from([0, 2, 4, 8])))
        .cpu(draw(st.sampled_from([4, 16, 32])))
        .memory(draw(st.sampled_from(["16Gi", "64Gi"])))
        .label("rack", f"r{i % 2}")
        .obj()
        for i in range(draw(st.integers(1, 6)))
    ]
    queues = []
    for name in ("a", "b", "c"):
        builder = make_queue(name).quota(
            gpu=draw(st.integers(0, 24)),
            cpu=draw(st.integers(4, 64)),
            gpu_borrowing_limit=draw(st.none() | st.integers(0, 8)),
            gpu_lending_limit=None,
        )
        if draw(st.booleans()):
            builder = builder.cohort("shared")
        queues.append(builder.obj())
    jobs = []
    for i in range(draw(st.integers(1, 12))):
        gpu = draw(st.sampled_from(GPU_SHAPES))
        builder = (
            make_job(f"j{i}")
            .queue(draw(st.sampled_from(["a", "b", "c"])))
            .priority(draw(st.integers(0, 3)))
            .gpus(gpu / 1000)
            .cpu(draw(st.sampled_from([1, 2, 4])))
            .memory(draw(st.sampled_from(["1Gi", "8Gi"])))
            .replicas(draw(st.integers(1, 4)))
        )
        if draw(st.integers(0, 4)) == 0:
            builder = builder.topology("rack", required=draw(st.booleans()))
        jobs.append(builder.obj())
    # Some jobs already run: admit them through the scheduler itself, so they are valid.
    running_count = draw(st.integers(0, len(jobs) // 2))
    first = schedule(make_snapshot(nodes=nodes, queues=queues, pending=jobs[:running_count]))
    spec = {j.name: j for j in jobs}
    admitted = [
        AdmittedWorkload(
            a.job,
            a.queue,
            a.flavor,
            spec[a.job].priority,
            tuple(PlacedPod(p, _pod_resources(spec[a.job], p.pod_set)) for p in a.placements),
            float(k),
        )
        for k, a in enumerate(first.admissions)
    ]
    return make_snapshot(
        nodes=nodes, queues=queues, pending=jobs[running_count:], admitted=admitted
    )


def _pod_resources(job: JobSpec, pod_set: str) -> Resources:
    return next(ps.resources for ps in job.pod_sets if ps.name == pod_set)


def _state_after(snapshot: Snapshot, decisions: Decisions) -> list[tuple[str, str, str, PlacedPod]]:
    """(queue, flavor, job, pod) for everything holding capacity right after the decisions are
    applied: victims of preemption still run (they stop later), admitted jobs start."""
    spec = {w.spec.name: w.spec for w in snapshot.pending}
    out = [(w.queue, w.flavor, w.name, pod) for w in snapshot.admitted for pod in w.pods]
    for a in decisions.admissions:
        out += [
            (a.queue, a.flavor, a.job, PlacedPod(p, _pod_resources(spec[a.job], p.pod_set)))
            for p in a.placements
        ]
    return out


def _nodes(snapshot: Snapshot) -> dict[str, Node]:
    return {n.name: n for n in snapshot.nodes}


@given(scenarios())
def test_no_resource_or_device_is_over_allocated(snapshot: Snapshot) -> None:
    decisions = schedule(snapshot)
    nodes = _nodes(snapshot)
    used: dict[str, Resources] = defaultdict(Resources)
    device_milli: dict[tuple[str, int], int] = defaultdict(int)
    whole_holders: dict[tuple[str, int], int] = defaultdict(int)
    holders: dict[tuple[str, int], int] = defaultdict(int)
    for _, _, _, pod in _state_after(snapshot, decisions):
        node = pod.placement.node
        used[node] = used[node] + pod.resources
        assert (
            len(pod.placement.devices)
            == (pod.resources.whole_gpus if not pod.resources.is_fractional_gpu else 1)
            or pod.resources.gpu_milli == 0
        )
        for share in pod.placement.devices:
            assert 0 <= share.index < len(nodes[node].gpus)
            device_milli[(node, share.index)] += share.milli
            holders[(node, share.index)] += 1
            whole_holders[(node, share.index)] += share.milli == 1000
    for name, amount in used.items():
        alloc = nodes[name].allocatable
        assert amount.cpu_milli <= alloc.cpu_milli
        assert amount.memory_bytes <= alloc.memory_bytes
    for key, milli in device_milli.items():
        assert milli <= 1000, key
        if whole_holders[key]:
            assert holders[key] == 1, f"device {key} is whole for one pod and shared"


@given(scenarios())
def test_gangs_are_all_or_nothing(snapshot: Snapshot) -> None:
    decisions = schedule(snapshot)
    spec = {w.spec.name: w.spec for w in snapshot.pending}
    admitted = {a.job for a in decisions.admissions}
    for a in decisions.admissions:
        job = spec[a.job]
        keys = [p.pod_key for p in a.placements]
        assert len(set(keys)) == len(keys)
        assert len(keys) == job.pod_count  # no min_available in these scenarios: every pod
    waiting = {r.job for r in decisions.pending}
    assert admitted | waiting == set(spec)
    assert not admitted & waiting


@given(scenarios())
def test_quota_is_never_exceeded_beyond_borrowing(snapshot: Snapshot) -> None:
    decisions = schedule(snapshot)
    usage: dict[tuple[str, str], Resources] = defaultdict(Resources)
    for queue, flavor, _, pod in _state_after(snapshot, decisions):
        usage[(queue, flavor)] = usage[(queue, flavor)] + pod.resources
    queues = {q.name: q for q in snapshot.queues}
    cohort_use: dict[str, int] = defaultdict(int)
    cohort_nominal: dict[str, int] = defaultdict(int)
    for q in snapshot.queues:
        for fq in q.flavors:
            if q.cohort:
                cohort_use[q.cohort] += usage[(q.name, fq.flavor)].gpu_milli
                cohort_nominal[q.cohort] += fq.quota(GPU).nominal
    for (queue, flavor), amount in usage.items():
        q = queues[queue]
        fq = next(f for f in q.flavors if f.flavor == flavor)
        for name in RESOURCE_NAMES:
            quota = fq.quota(name)
            limit = quota.nominal + (quota.borrowing_limit if q.cohort else 0)
            assert amount.get(name) <= limit, (queue, flavor, name)
    for cohort, used in cohort_use.items():
        # No lending limits here: a cohort can never use more than its members' nominal sum.
        assert used <= cohort_nominal[cohort], cohort


@given(scenarios(), st.randoms(use_true_random=False))
def test_shuffled_input_gives_the_same_decisions(snapshot: Snapshot, rnd: random.Random) -> None:
    def shuffled(items: tuple) -> tuple:  # type: ignore[type-arg]
        out = list(items)
        rnd.shuffle(out)
        return tuple(out)

    other = Snapshot(
        snapshot.now,
        shuffled(snapshot.nodes),
        shuffled(snapshot.flavors),
        shuffled(snapshot.queues),
        tuple(PendingWorkload(w.spec, w.seq, w.not_before) for w in shuffled(snapshot.pending)),
        shuffled(snapshot.admitted),
        snapshot.reservations,
        snapshot.config,
    )
    assert schedule(other) == schedule(snapshot)
