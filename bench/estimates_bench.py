"""Benchmark: accuracy of start-time estimates (phalanx.ops.estimates) on the openb trace in
the simulator, under queueing load.

The production control plane runs the trace in virtual time (full mode, sim backend) on a
cut-down cluster (``--nodes``: the first N openb nodes) with arrivals ``--speedup`` times
closer together, so that jobs queue. Right after each arrival the estimator runs on the live
control plane, as ``phalanx get jobs -o wide`` would; each pending job's first estimate is kept (what a user asking right after submitting
would have been told). After the run, for jobs that waited at least ``--min-wait-s`` from that
moment: error = |estimated wait - actual wait| / actual wait. Prints the median and p90, and
the share of jobs that got no estimate.

``--history trace`` (default): the estimator also knows the runtimes of the trace's jobs that
finished before the window's first arrival, as a control plane that had run the trace so far
would (``none``: only of jobs finished during the run, as a server started empty).

``--runtimes history`` (default): running jobs end at the median runtime of jobs that already
finished (same queue and GPU count, else same queue, else all), as the estimator does for
jobs without maxRuntime. ``--runtimes oracle``: every job carries maxRuntime = its true
runtime + 1 s (perfect walltime requests, as Slurm users are asked for), isolating the error of
the forward simulation itself.

``--samples N`` (default: the estimator's): forward runs per estimate with runtimes drawn
from history (1: one run with median runtimes, the estimator before). ``--repeat-s N``:
assume the submissions of the last N s come again (``estimate_plane(repeat_s=...)``).
``--arrival-window-s N``: expect later submissions at the rate and mix of the last N s
(``estimate_plane(arrival_window_s=...)``). ``--min-group N``: a queue/GPU group's runtimes
speak for a job once it holds N. ``--config NAME:key=value,...`` (repeatable): measure several
estimator configurations on one run (keys ``samples``, ``repeat``, ``window``,
``min_group``); the simulation does not depend on them. Passes at which every pending job
already has its first estimate are skipped (only first estimates are measured).
``--runtimes peek-running`` (diagnosis only): running jobs end at their true ends, which no
control plane knows. ``--buckets``: the errors split by queue, GPU request, sign, and
whether a later arrival (of higher, or same or lower priority) started first.

    .venv/bin/python bench/estimates_bench.py [--skip 2000] [--limit 200] [--nodes 6] [--speedup 10] [--runtimes oracle] [--samples 7] [--buckets]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from phalanx.backends.sim import SimWorkload
from phalanx.model.objects import JobPhase, JobSpec, ResourceQuota
from phalanx.model.resources import CPU, GPU, MEMORY
from phalanx.model.specs import job_to_manifest
from phalanx.ops.estimates import (
    DEFAULT_ARRIVAL_WINDOW_S,
    DEFAULT_SAMPLES,
    RuntimeModel,
    estimate_plane,
    runtime_history,
)
from phalanx.scheduling import SchedulerConfig
from phalanx.simulation.driver import Arrival, Driver, config_manifests
from phalanx.simulation.full import SIM_COMMAND
from phalanx.simulation.openb import load_openb_nodes, load_openb_pods
from phalanx.simulation.trace import TraceJob
from phalanx.simulation.world import build_world, job_spec
from phalanx.store.records import JobRecord

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "openb"


@dataclass(frozen=True, slots=True)
class PeekRunning(RuntimeModel):
    """Diagnosis only (``--runtimes peek-running``): running jobs end at their true ends, which
    no control plane knows; pending jobs' runtimes still come from history. The difference to
    ``history`` is the error due to running jobs' ends."""

    true_s: Mapping[str, float] = field(default_factory=dict)

    def remaining_s(self, spec: JobSpec, elapsed_s: float, q: float = 0.5) -> float:
        return max(0.0, self.true_s[spec.name] - elapsed_s)


@dataclass(frozen=True, slots=True)
class Config:
    """One way of estimating, measured on the same run as the others."""

    name: str
    samples: int
    repeat_s: float
    arrival_window_s: float
    min_group: int

    @classmethod
    def parse(cls, text: str, default: Config) -> Config:
        """``NAME:key=value,...`` with keys samples, repeat, window, min_group (the rest as
        ``default``). Raises SystemExit naming a bad item."""
        name, _, items = text.partition(":")
        values: dict[str, float] = {}
        for item in filter(None, items.split(",")):
            key, sep, value = item.partition("=")
            if not sep or key not in ("samples", "repeat", "window", "min_group"):
                raise SystemExit(
                    f"--config {text!r}: {item!r} is not key=value with key samples, repeat, "
                    "window or min_group"
                )
            values[key] = float(value)
        return cls(
            name or "config",
            int(values.get("samples", default.samples)),
            values.get("repeat", default.repeat_s),
            values.get("window", default.arrival_window_s),
            int(values.get("min_group", default.min_group)),
        )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip", type=int, default=2000, help="start at job N of the trace")
    parser.add_argument("--limit", type=int, default=200, help="this many jobs of the trace")
    parser.add_argument("--nodes", type=int, default=6, help="first N nodes of the cluster")
    parser.add_argument(
        "--speedup", type=float, default=10.0, help="arrivals this many times closer together"
    )
    parser.add_argument("--min-wait-s", type=float, default=60.0)
    parser.add_argument(
        "--runtimes", choices=("history", "oracle", "peek-running"), default="history"
    )
    parser.add_argument(
        "--samples",
        type=int,
        default=DEFAULT_SAMPLES,
        help="forward runs per estimate, runtimes drawn from history (1: median runtimes)",
    )
    parser.add_argument(
        "--repeat-s",
        type=float,
        default=0.0,
        help="expect the jobs submitted in the last N s to be submitted again (0: none)",
    )
    parser.add_argument(
        "--arrival-window-s",
        type=float,
        default=DEFAULT_ARRIVAL_WINDOW_S,
        help="expect later submissions at the rate and mix of the last N s (0: none)",
    )
    parser.add_argument(
        "--min-group",
        type=int,
        default=1,
        help="runtimes of a queue/GPU group speak for a job once the group holds N",
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="NAME:key=value,...",
        help="measure this estimator configuration (keys: samples, repeat, window, "
        "min_group; the rest from the flags above) on the same run; repeatable",
    )
    parser.add_argument(
        "--buckets", action="store_true", help="print the errors bucketed by kind of job"
    )
    parser.add_argument(
        "--history",
        choices=("trace", "none"),
        default="trace",
        help="trace: the estimator starts knowing the runtimes of the trace's jobs that "
        "finished before the window; none: only of jobs finished during the run",
    )
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    nodes = load_openb_nodes(args.data / "openb_node_list_gpu_node.csv")[: args.nodes]
    jobs = load_openb_pods(args.data / "openb_pod_list_default.csv").jobs[
        args.skip : args.skip + args.limit
    ]
    world = build_world(nodes, jobs)
    # The simulator's queues have unlimited quota; write it as a large finite one, which
    # queue manifests accept (the cluster is far smaller: quota never binds either way).
    large = {CPU: 10**8, MEMORY: 1 << 50, GPU: 10**7}
    world = replace(
        world,
        queues=tuple(
            replace(
                q,
                flavors=tuple(
                    replace(fq, resources={r: ResourceQuota(n) for r, n in large.items()})
                    for fq in q.flavors
                ),
            )
            for q in world.queues
        ),
    )
    # The control plane's history: a server that had run the trace so far would know the
    # runtimes of the jobs that finished before the window's first arrival (and only those).
    earlier = load_openb_pods(args.data / "openb_pod_list_default.csv").jobs[: args.skip]
    seed = [
        (j.queue, job_spec(j).total_request.gpu_milli, j.runtime_s)
        for j in earlier
        if j.submit_s + j.runtime_s < jobs[0].submit_s and args.history == "trace"
    ]
    arrivals = []
    for j in jobs:
        spec = job_spec(j)
        spec = replace(
            spec, pod_sets=tuple(replace(ps, command=SIM_COMMAND) for ps in spec.pod_sets)
        )
        if args.runtimes == "oracle":
            spec = replace(spec, max_runtime_s=j.runtime_s + 1.0)
        at = jobs[0].submit_s + (j.submit_s - jobs[0].submit_s) / args.speedup
        arrivals.append(Arrival(at, job_to_manifest(spec), SimWorkload(j.runtime_s)))
    true_runtime = {j.name: j.runtime_s for j in jobs}
    flags = Config("flags", args.samples, args.repeat_s, args.arrival_window_s, args.min_group)
    configs = [Config.parse(c, flags) for c in args.config] or [flags]
    # config -> job -> (asked at, estimated start, what it waited on then)
    firsts: dict[str, dict[str, tuple[float, float | None, str]]] = {c.name: {} for c in configs}
    estimate_cpu = {c.name: 0.0 for c in configs}
    samples = 0
    started, cpu = time.perf_counter(), time.process_time()
    with Driver(
        world.nodes,
        config_manifests(world.queues, world.flavors),
        arrivals,
        scheduler=SchedulerConfig(),
        defer_completions=False,
    ) as driver:
        for t in sorted({a.at for a in arrivals}):
            driver.run(until=t)
            # Only first estimates count: a pass that would give no pending job its first
            # one is left out (every answer is the same either way).
            waiting = {
                r.name
                for r in driver.plane.world.read().jobs.values()
                if r.phase == JobPhase.PENDING.value
            }
            if all(waiting <= firsts[c.name].keys() for c in configs):
                continue
            samples += 1
            now = driver.clock.now
            for config in configs:
                before = time.process_time()
                history = runtime_history(driver.plane) + seed
                model = (
                    replace(
                        PeekRunning.from_history(history, min_group=config.min_group),
                        true_s=true_runtime,
                    )
                    if args.runtimes == "peek-running"
                    else RuntimeModel.from_history(history, min_group=config.min_group)
                )
                estimates = estimate_plane(
                    driver.plane,
                    model,
                    samples=config.samples,
                    repeat_s=config.repeat_s,
                    arrival_window_s=config.arrival_window_s,
                )
                estimate_cpu[config.name] += time.process_time() - before
                first = firsts[config.name]
                for name, e in estimates.items():
                    first.setdefault(name, (now, e.start_at, e.waits_on))
        driver.run()  # every job has arrived and had its first estimate
        records = {r.name: r for r in driver.store.list_jobs()}
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(
        f"{len(nodes)} nodes, {len(jobs)} jobs, runtimes {args.runtimes}: wall {wall:.1f} s, "
        f"CPU {cpu:.1f} s, {samples} estimate passes per configuration"
    )
    for config in configs:
        report(config, firsts[config.name], records, args.min_wait_s)
        print(f"  CPU per estimate pass: {estimate_cpu[config.name] / max(1, samples):.3f} s")
        if args.buckets:
            print_buckets(
                rows_of(firsts[config.name], records, args.min_wait_s), jobs, arrivals, records
            )


Row = tuple[str, float, float, str]  # job, signed error, actual wait, waits on


def rows_of(
    first: Mapping[str, tuple[float, float | None, str]],
    records: Mapping[str, JobRecord],
    min_wait_s: float,
) -> list[Row]:
    """The jobs that waited at least ``min_wait_s`` from their first estimate and got one."""
    rows = []
    for name, (asked, estimated, waits_on) in first.items():
        record = records.get(name)
        if record is None or record.started_at is None or estimated is None:
            continue
        actual = record.started_at - asked
        if actual >= min_wait_s:
            rows.append((name, ((estimated - asked) - actual) / actual, actual, waits_on))
    return rows


def report(
    config: Config,
    first: Mapping[str, tuple[float, float | None, str]],
    records: Mapping[str, JobRecord],
    min_wait_s: float,
) -> None:
    """Print the accuracy of one configuration's first estimates."""
    never = sum(1 for n in first if records.get(n) is None or records[n].started_at is None)
    waited = [
        n
        for n, (asked, _, _) in first.items()
        if n in records
        and records[n].started_at is not None
        and (records[n].started_at or 0.0) - asked >= min_wait_s
    ]
    unknown = sum(1 for n in waited if first[n][1] is None)
    errors = [abs(signed) for _, signed, _, _ in rows_of(first, records, min_wait_s)]
    signed = [s for _, s, _, _ in rows_of(first, records, min_wait_s)]
    print(
        f"[{config.name}] samples {config.samples}, repeat {config.repeat_s:g} s, arrival "
        f"window {config.arrival_window_s:g} s, min group {config.min_group}: "
        f"jobs estimated while pending {len(first)}, never started {never}, waited >= "
        f"{min_wait_s:g} s {len(waited)}, no estimate {unknown}"
    )
    if errors:
        print(
            f"  |estimate - actual| / actual wait: median {statistics.median(errors) * 100:.1f} %, "
            f"p90 {percentile(errors, 0.9) * 100:.1f} %, within 20 %: "
            f"{sum(e <= 0.2 for e in errors) / len(errors) * 100:.0f} % of {len(errors)} jobs; "
            f"median signed {statistics.median(signed) * 100:+.1f} %"
        )


def print_buckets(
    rows: list[Row],
    jobs: list[TraceJob],
    arrivals: list[Arrival],
    records: Mapping[str, JobRecord],
) -> None:
    """Errors bucketed: by queue, GPU request, what the job waited on, the sign of the error,
    and whether a job that arrived after it started before it (a later arrival the estimate
    could not know: higher priority, or a smaller job backfilled)."""
    by_name = {j.name: (j, a.at) for j, a in zip(jobs, arrivals, strict=True)}
    buckets: dict[str, list[float]] = {}

    def put(key: str, signed: float) -> None:
        buckets.setdefault(key, []).append(signed)

    for name, signed, _actual, waits_on in rows:
        job, arrived = by_name[name]
        started = records[name].started_at or 0.0
        gpu = job_spec(job).total_request.gpu_milli
        overtaken = [
            o
            for o, at in by_name.values()
            if at > arrived and (records[o.name].started_at or float("inf")) < started
        ]
        higher = [o for o in overtaken if o.priority > job.priority]
        put("all", signed)
        put(f"queue {job.queue}", signed)
        put("gpu 0" if gpu == 0 else "gpu < 1" if gpu < 1000 else f"gpu {gpu // 1000}", signed)
        put(f"waits on {waits_on}", signed)
        put("estimate early" if signed < 0 else "estimate late", signed)
        put(
            "overtaken by a later higher-priority arrival"
            if higher
            else "overtaken by a later arrival (same or lower priority)"
            if overtaken
            else "not overtaken",
            signed,
        )
    print(f"{'bucket':<56} {'jobs':>5} {'median |err|':>13} {'median signed':>14}")
    for key, values in sorted(buckets.items()):
        print(
            f"{key:<56} {len(values):>5} {statistics.median(abs(v) for v in values) * 100:>12.1f}%"
            f" {statistics.median(values) * 100:>+13.1f}%"
        )


if __name__ == "__main__":
    main()
