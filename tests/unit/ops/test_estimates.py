"""Start-time estimates: the pure scheduler run forward in virtual time."""

from __future__ import annotations

import random
from collections.abc import Sequence

from phalanx.model.objects import JobSpec
from phalanx.ops.arrivals import NEXT, ArrivalModel, can_overtake, overtaking
from phalanx.ops.estimates import (
    DEFAULT_SIZE_MIN_GROUP,
    Estimate,
    RunOptions,
    RuntimeModel,
    forward,
    forward_runs,
    ranked,
    sampled,
    whole_gpu_ranks,
)
from phalanx.scheduling import AdmittedWorkload, PendingWorkload, Snapshot
from phalanx.testing import make_admitted, make_job, make_node, make_queue, make_snapshot

NOW = 1000.0


def snapshot_of(
    pending: Sequence[JobSpec],
    admitted: Sequence[AdmittedWorkload] = (),
    nodes: int = 1,
    quota_gpus: int = 16,
) -> Snapshot:
    """``nodes`` 8-GPU nodes n1, n2, … and one queue ``q`` of ``quota_gpus`` GPUs, at NOW."""
    return make_snapshot(
        nodes=[make_node(f"n{i + 1}").gpus(8).obj() for i in range(nodes)],
        queues=[make_queue("q").quota("default", gpu=quota_gpus, cpu=64, memory="1Ti").obj()],
        pending=pending,
        admitted=admitted,
        now=NOW,
    )


def running(
    name: str, gpus: int, node: str, devices: range, runtime_s: float | None, priority: int = 0
) -> tuple[JobSpec, AdmittedWorkload]:
    """A job of queue q admitted at NOW on ``devices`` of ``node``."""
    job = make_job(name).queue("q").gpus(gpus).priority(priority)
    spec = (job if runtime_s is None else job.max_runtime(runtime_s)).obj()
    return spec, make_admitted(spec, [(node, devices)], admitted_at=NOW)


def test_a_job_starts_when_the_running_job_ahead_of_it_ends() -> None:
    spec_a, a = running("a", 8, "n1", range(8), 600)
    waiter = make_job("w").queue("q").gpus(8).max_runtime(60).obj()
    snap = snapshot_of([waiter], [a])
    est = forward(snap, {"a": NOW + 600}, {"a": (spec_a, 0)}, RuntimeModel())
    assert est["w"].start_at == NOW + 600
    assert est["w"].after == ("a",)
    assert est["w"].waits_on == "Unschedulable"


def test_a_gang_waits_for_enough_free_at_once_and_fifo_order_holds() -> None:
    # Two 4-GPU jobs end at +100 and +300; a 2x4 gang needs both nodes' blocks free... it
    # fits once both have ended; a 4-GPU job behind it starts after the gang ends (FIFO).
    spec_a, a = running("a", 4, "n1", range(4), 100)
    spec_b, b = running("b", 4, "n2", range(4), 300)
    spec_f1, f1 = running("f1", 4, "n1", range(4, 8), 10_000)
    spec_f2, f2 = running("f2", 4, "n2", range(4, 8), 10_000)
    gang = make_job("gang").queue("q").gpus(4).replicas(2).max_runtime(500).obj()
    snap = snapshot_of([gang], [a, b, f1, f2], nodes=2, quota_gpus=32)
    specs: dict[str, tuple[JobSpec, int]] = {
        "a": (spec_a, 0),
        "b": (spec_b, 1),
        "f1": (spec_f1, 2),
        "f2": (spec_f2, 3),
    }
    ends = {"a": NOW + 100, "b": NOW + 300, "f1": NOW + 10_000, "f2": NOW + 10_000}
    est = forward(snap, ends, specs, RuntimeModel())
    assert est["gang"].start_at == NOW + 300


def test_quota_bounds_the_estimate_and_history_gives_runtimes() -> None:
    # Queue of 8 GPUs on a 16-GPU cluster: the second waiter waits for the first, whose
    # runtime comes from history (median of 200 s for 8-GPU jobs of queue q).
    spec_a, a = running("a", 8, "n1", range(8), 100)
    w1 = make_job("w1").queue("q").gpus(8).obj()
    w2 = make_job("w2").queue("q").gpus(8).obj()
    snap = snapshot_of([w1, w2], [a], nodes=2, quota_gpus=8)
    model = RuntimeModel.from_history([("q", 8000, 100.0), ("q", 8000, 200.0), ("q", 8000, 900.0)])
    est = forward(snap, {"a": NOW + 100}, {"a": (spec_a, 0)}, model)
    assert est["w1"].start_at == NOW + 100
    assert est["w2"].start_at == NOW + 300
    assert est["w2"].waits_on == "QuotaExceeded"


def test_a_job_that_can_never_fit_has_no_estimate() -> None:
    wide = make_job("wide").queue("q").gpus(16).obj()
    est = forward(snapshot_of([wide]), {}, {}, RuntimeModel())
    assert est["wide"].start_at is None
    assert est["wide"].waits_on == "NeverFits"


def test_runtime_model_falls_back_from_shape_to_queue_to_all() -> None:
    model = RuntimeModel.from_history([("q", 1000, 10.0), ("q", 2000, 30.0), ("r", 1000, 100.0)])
    assert model.runtime_s(make_job("x").queue("q").gpus(1).obj()) == 10.0
    assert model.runtime_s(make_job("x").queue("q").gpus(4).obj()) == 20.0
    assert model.runtime_s(make_job("x").queue("s").gpus(4).obj()) == 30.0
    assert model.runtime_s(make_job("x").queue("s").max_runtime(5).obj()) == 5.0
    assert RuntimeModel().runtime_s(make_job("x").queue("s").obj()) == 3600.0


def test_a_group_speaks_for_a_job_only_with_min_group_runtimes() -> None:
    # q/1 GPU has one runtime (10 s), q has three (10, 30, 50), everything four (+100).
    history = [("q", 1000, 10.0), ("q", 2000, 30.0), ("q", 2000, 50.0), ("r", 1000, 100.0)]
    spec = make_job("x").queue("q").gpus(1).obj()
    assert RuntimeModel.from_history(history).runtime_s(spec) == 10.0
    assert RuntimeModel.from_history(history, min_group=2).runtime_s(spec) == 30.0
    assert RuntimeModel.from_history(history, min_group=4).runtime_s(spec) == 40.0


def test_a_size_group_speaks_before_the_gpu_group_once_it_holds_size_min_group() -> None:
    # Jobs of one queue and GPU count but two sizes: 2 CPUs ran 10 s, 8 CPUs ran 1000 s.
    small, large = ((2000, 4 << 30), (8000, 16 << 30))
    history = [("q", 1000, 10.0, *small)] * 3 + [("q", 1000, 1000.0, *large)] * 2
    spec = make_job("x").queue("q").gpus(1).cpu(8).memory("16Gi").obj()
    assert (spec.total_request.cpu_milli, spec.total_request.memory_bytes) == large
    assert RuntimeModel.from_history(history).runtime_s(spec) == 10.0  # off: q/1 GPU
    assert RuntimeModel.from_history(history, size_min_group=1).runtime_s(spec) == 1000.0
    # the size group holds 2 runtimes: with 3 wanted, the GPU group speaks again
    assert RuntimeModel.from_history(history, size_min_group=3).runtime_s(spec) == 10.0
    # entries without a size count in the GPU and queue groups only
    bare = RuntimeModel.from_history([("q", 1000, 50.0)], size_min_group=1)
    assert bare.runtime_s(spec) == 50.0
    # the estimator's default reads history by size
    default = RuntimeModel.from_history(history, size_min_group=DEFAULT_SIZE_MIN_GROUP)
    assert default.runtime_s(spec) == 1000.0


def test_a_running_job_runs_on_as_the_runtimes_longer_than_its_age() -> None:
    # Runtimes 10, 20, 40, 80: a job that has run 30 s is one of the 40 or 80 s ones.
    model = RuntimeModel.from_history([("q", 1000, t) for t in (10.0, 20.0, 40.0, 80.0)])
    spec = make_job("x").queue("q").gpus(1).obj()
    assert [model.remaining_s(spec, 30.0, q) for q in (0.0, 0.5, 1.0)] == [10.0, 30.0, 50.0]
    assert model.remaining_s(spec, 80.0) == 80.0  # outlived them all: as long again
    assert model.remaining_s(make_job("y").queue("q").gpus(1).max_runtime(100).obj(), 30) == 70


def test_the_forward_run_is_bounded() -> None:
    # Ten 8-GPU jobs queue behind each other on one node; a budget of 3 cycles (now, +100,
    # +200) estimates the first two and leaves the rest unknown, rather than running on.
    spec_a, a = running("a", 8, "n1", range(8), 100)
    waiting = [make_job(f"w{i}").queue("q").gpus(8).max_runtime(100).obj() for i in range(10)]
    snap = snapshot_of(waiting, [a])
    full = forward(snap, {"a": NOW + 100}, {"a": (spec_a, 0)}, RuntimeModel())
    assert [full[f"w{i}"].start_at for i in range(10)] == [NOW + 100 * (i + 1) for i in range(10)]
    bounded = forward(snap, {"a": NOW + 100}, {"a": (spec_a, 0)}, RuntimeModel(), max_cycles=3)
    assert [bounded[f"w{i}"].start_at for i in range(4)] == [NOW + 100, NOW + 200, None, None]


def chain_behind_one_node() -> tuple[Snapshot, JobSpec, RuntimeModel]:
    """One 8-GPU node held by ``a`` (just started); w1..w3 and then ``x`` wait for it, one
    after another. History: most runs take 1 s, two of five take 100 s."""
    a_spec, a = running("a", 8, "n1", range(8), None)
    waiting = [make_job(n).queue("q").gpus(8).obj() for n in ("w1", "w2", "w3", "x")]
    history = [("q", 8000, t) for t in (1.0, 1.0, 1.0, 100.0, 100.0)]
    return snapshot_of(waiting, [a]), a_spec, RuntimeModel.from_history(history)


def test_sampled_runtimes_see_that_a_sum_of_skewed_runtimes_is_long() -> None:
    snap, a_spec, model = chain_behind_one_node()
    specs = {"a": (a_spec, 0)}
    running = {"a": (a_spec, 0.0)}
    medians = sampled(snap, running, specs, model, RunOptions(samples=1))
    # median runtimes: four jobs of 1 s each ahead of x
    assert medians["x"].start_at == NOW + 4.0
    # drawn: a quantile above 0.5 is a runtime between 1 and 100 s (interpolated), above
    # 0.75 the 100 s; P(all four before x drawn under 0.5) = 0.5**4, so the median run holds
    # a long one
    drawn = sampled(snap, running, specs, model, RunOptions(samples=7))
    assert drawn["x"].start_at is not None and drawn["x"].start_at >= NOW + 50.0
    # each estimate is one run's start: the order of the chain holds
    starts = [drawn[n].start_at for n in ("w1", "w2", "w3", "x")]
    assert all(s is not None for s in starts)


def test_sampled_estimates_are_deterministic_for_a_seed() -> None:
    snap, a_spec, model = chain_behind_one_node()
    args = (snap, {"a": (a_spec, 0.0)}, {"a": (a_spec, 0)}, model)
    assert sampled(*args, RunOptions(seed=3)) == sampled(*args, RunOptions(seed=3))


def test_without_history_one_run_with_defaults_is_made() -> None:
    snap, a_spec, _ = chain_behind_one_node()
    args = (snap, {"a": (a_spec, 0.0)}, {"a": (a_spec, 0)}, RuntimeModel())
    # no history: every job runs the default hour, drawn or not
    assert sampled(*args, RunOptions(samples=7))["x"].start_at == NOW + 4 * 3600.0


def test_runtime_quantiles_interpolate_and_the_median_is_the_default() -> None:
    model = RuntimeModel.from_history([("q", 1000, t) for t in (10.0, 20.0, 40.0, 80.0)])
    spec = make_job("x").queue("q").gpus(1).obj()
    assert model.runtime_s(spec) == 30.0
    assert (model.runtime_s(spec, 0.0), model.runtime_s(spec, 1.0)) == (10.0, 80.0)
    # running 25 s: the runtimes longer than that are 40 and 80
    assert model.remaining_s(spec, 25.0) == 35.0
    assert model.remaining_s(spec, 25.0, 1.0) == 55.0


SampledArgs = tuple[
    Snapshot, dict[str, tuple[JobSpec, float]], dict[str, tuple[JobSpec, int]], RuntimeModel
]


def held_node_and_a_low_waiter() -> tuple[SampledArgs, JobSpec]:
    """One 8-GPU node held by ``a`` (priority 9: nothing preempts it) until +100; ``low``
    (priority 0, 100 s) waits for it. Returns sampled's first four arguments, and a
    priority-5 8-GPU job of 100 s to expect."""
    spec_a, a = running("a", 8, "n1", range(8), 100, priority=9)
    low = make_job("low").queue("q").gpus(8).max_runtime(100).obj()
    high = make_job("high").queue("q").gpus(8).priority(5).max_runtime(100).obj()
    args: SampledArgs = (
        snapshot_of([low], [a]),
        {"a": (spec_a, 0.0)},
        {"a": (spec_a, 0)},
        RuntimeModel(),
    )
    return args, high


def test_an_expected_arrival_of_higher_priority_goes_first() -> None:
    # A priority-5 job expected at +50 (submitted 50 s into the last repeat window) starts
    # at +100 and holds the node for 100 s, so low starts at +200. Without it: +100.
    args, high = held_node_and_a_low_waiter()
    assert sampled(*args)["low"].start_at == NOW + 100
    coming = PendingWorkload(high, 1 << 40, NOW + 50)
    expected = sampled(*args, RunOptions(arrivals=[coming]))
    assert set(expected) == {"low"}  # the expected arrival gets no estimate of its own
    assert expected["low"].start_at == NOW + 200


def test_an_arrival_takes_free_capacity_when_it_comes() -> None:
    # The node is free until an 8-GPU job arrives at +30; a gang of two 8-GPU pods waits on
    # the 8-GPU node beside it (n2, held by ``a`` until +100): the arrival takes n1 at +30,
    # so the gang waits for both ends (+130), not for a's end alone (+100).
    spec_a, a = running("a", 8, "n2", range(8), 100, priority=9)
    gang = make_job("gang").queue("q").gpus(8).replicas(2).max_runtime(100).obj()
    snap = snapshot_of([gang], [a], nodes=2)
    coming = make_job("c").queue("q").gpus(8).priority(5).max_runtime(100).obj()
    args: SampledArgs = (snap, {"a": (spec_a, 0.0)}, {"a": (spec_a, 0)}, RuntimeModel())
    assert sampled(*args)["gang"].start_at == NOW + 100
    later = sampled(*args, RunOptions(arrivals=[PendingWorkload(coming, 1 << 40, NOW + 30)]))
    assert later["gang"].start_at == NOW + 130


def test_arrivals_are_drawn_at_the_recent_rate_within_one_span() -> None:
    specs = [make_job(f"r{i}").queue("q").gpus(1).priority(i % 2).obj() for i in range(20)]
    model = ArrivalModel(tuple(specs), span_s=200.0)
    assert model.rate_per_s == 0.1
    drawn = list(model.draw(random.Random(1), NOW))
    times = [w.not_before for w in drawn]
    assert times == sorted(times) and times[0] > NOW and times[-1] <= NOW + 200.0
    assert 8 <= len(drawn) <= 35  # Poisson(20): outside this with probability < 0.3 %
    assert all(NEXT in w.spec.name for w in drawn)
    assert len({w.spec.name for w in drawn}) == len(drawn)
    assert {w.spec.name.split(NEXT)[0] for w in drawn} <= {s.name for s in specs}
    assert list(model.draw(random.Random(1), NOW)) == drawn  # a seed draws the same
    assert list(ArrivalModel((), 100.0).draw(random.Random(1), NOW)) == []


def test_only_submissions_that_can_overtake_a_waiter_are_expected() -> None:
    whole = make_job("whole").queue("q").gpus(1).obj()
    frac = make_job("frac").queue("q").gpus(0.5).obj()
    high = make_job("high").queue("q").gpus(2).priority(5).obj()
    wide = make_job("wide").queue("q").gpus(2).obj()
    cpu = make_job("cpu").queue("q").obj()
    # a fraction fits a gap a whole GPU does not; higher priority goes first; a job as wide
    # or wider of the same priority, or one without GPUs, queues behind
    assert [can_overtake(s, whole) for s in (frac, high, wide, cpu, whole)] == [
        True,
        True,
        False,
        False,
        False,
    ]
    assert not can_overtake(wide, high) and can_overtake(whole, high)  # fewer devices
    model = ArrivalModel((frac, high, wide, cpu, frac), span_s=100.0)
    kept = overtaking(model, [whole])
    assert [s.name for s in kept.recent] == ["frac", "high", "frac"]
    assert kept.rate_per_s == 0.03  # the same span: the rate of the kept ones
    assert overtaking(model, []).recent == ()


def test_expected_higher_priority_work_delays_a_low_priority_wait() -> None:
    # Ten priority-5 jobs of 100 s were submitted in the last 100 s: about ten more are
    # expected in the next 100 s, each going before low, so low's median start moves from
    # +100 to about +1100. The median of 7 runs is far from both ends of Poisson(10).
    args, high = held_node_and_a_low_waiter()
    model = ArrivalModel(tuple([high] * 10), span_s=100.0)
    assert sampled(*args)["low"].start_at == NOW + 100
    expected = sampled(*args, RunOptions(arrival_model=model))
    start = expected["low"].start_at
    assert start is not None and NOW + 600 <= start <= NOW + 1700


def test_estimating_only_some_jobs_gives_them_the_same_estimates() -> None:
    # Each run draws from its own generator: runs that stop once x has started (``only``)
    # draw for x exactly what the full runs do.
    snap, a_spec, _ = chain_behind_one_node()
    model = RuntimeModel.from_history([("q", 8000, t) for t in (3.0, 7.0, 20.0, 55.0, 150.0)])
    args = (snap, {"a": (a_spec, 0.0)}, {"a": (a_spec, 0)}, model)
    for seed in range(3):
        full = sampled(*args, RunOptions(samples=7, seed=seed))
        for name in ("w1", "w2", "w3"):
            assert sampled(*args, RunOptions(samples=7, seed=seed, only=[name])) == {
                name: full[name]
            }
    assert set(forward_runs(*args, RunOptions(samples=5, only=["w1", "nobody"]))[0]) == {"w1"}


def test_ranked_picks_the_start_at_a_rank_of_the_runs() -> None:
    runs = [
        {"x": Estimate("x", NOW + s, "Unschedulable"), "y": Estimate("y", None, "")}
        for s in (50.0, 10.0, 40.0, 30.0, 20.0)
    ]
    assert ranked(runs)["x"].start_at == NOW + 30.0  # the median
    assert ranked(runs, 0.0)["x"].start_at == NOW + 10.0
    assert ranked(runs, 0.75)["x"].start_at == NOW + 40.0
    assert ranked(runs, 1.0)["x"].start_at == NOW + 50.0
    assert ranked(runs[:4], 0.5)["x"].start_at == NOW + 30.0  # 10 30 40 50: the lower median
    assert ranked(runs)["y"].start_at is None


def test_jobs_asking_whole_gpus_can_be_told_a_later_rank() -> None:
    whole = make_job("whole").queue("q").gpus(1).obj()
    part = make_job("part").queue("q").gpus(0.5).obj()
    cpu = make_job("cpu").queue("q").obj()
    snap = snapshot_of([whole, part, cpu])
    assert whole_gpu_ranks(snap, 0.84) == {"whole": 0.84}
    runs = [
        {n: Estimate(n, NOW + s, "Unschedulable") for n in ("whole", "part")}
        for s in (10.0, 20.0, 30.0, 40.0, 50.0)
    ]
    out = ranked(runs, 0.5, whole_gpu_ranks(snap, 1.0))
    assert (out["whole"].start_at, out["part"].start_at) == (NOW + 50.0, NOW + 30.0)


def test_sampled_tells_whole_gpu_jobs_their_rank_of_the_runs() -> None:
    snap, a_spec, model = chain_behind_one_node()  # every job asks 8 whole GPUs
    args = (snap, {"a": (a_spec, 0.0)}, {"a": (a_spec, 0)}, model)
    runs = forward_runs(*args, RunOptions(samples=7))
    latest = max(r["x"].start_at or 0.0 for r in runs)
    assert sampled(*args, RunOptions(samples=7), whole_gpu_rank_q=1.0)["x"].start_at == latest
    assert sampled(*args, RunOptions(samples=7))["x"] == ranked(runs)["x"]
    assert ranked(runs)["x"].start_at != latest  # the median run is not the latest here
