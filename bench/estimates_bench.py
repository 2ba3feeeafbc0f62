"""Benchmark: accuracy of start-time estimates (phalanx.ops.estimates) on the openb trace in
the simulator, under queueing load.

The production control plane runs the trace in virtual time (full mode, sim backend) on a
cut-down cluster (``--nodes``: the first N openb nodes) with arrivals ``--speedup`` times
closer together, so that jobs queue. Right after each arrival the estimator runs on the live
control plane, as ``phalanx get jobs -o wide`` would; each pending job's first estimate is kept (what a user asking right after submitting
would have been told). After the run, for jobs that waited at least ``--min-wait-s`` from that
moment: error = |estimated wait - actual wait| / actual wait. Prints the median and p90, and
the share of jobs that got no estimate.

``--measure M`` (default: all of ``--limit``): only the first M jobs' estimates are measured,
while all ``--limit`` jobs arrive. With ``--limit`` = M the submissions stop at the last
measured job, and the waits that pass after it drain a backlog with nothing new arriving,
which a real cluster's users do not allow (it favours an estimator that expects no later
submissions); with ``--limit`` well above M, later jobs keep arriving and can overtake the
measured ones. The estimates are the same either way (each pass sees only what was
submitted by then); the actual starts are not. A run prints, in simulated hours from the
first submission, when the measured and all submissions stop, when the measured jobs start,
and how many start after the last submission: at 10× on 6 nodes the cluster is overloaded,
and some ``be`` jobs start only once submissions stop however many follow, so their waits
still end with the recording (docs/operations.md, "Arrivals that go on after the measured
jobs", has the figures of ``--limit 1000 --measure 200``).

``--history trace`` (default): the estimator also knows the runtimes of the trace's jobs that
finished before the window's first arrival, as a control plane that had run the trace so far
would (``none``: only of jobs finished during the run, as a server started empty).

``--runtimes history`` (default): runtimes come from the jobs that already finished (same
queue and size, else same queue and GPU count, else same queue, else all), as the estimator
does for jobs without maxRuntime. ``--runtimes oracle``: every job carries maxRuntime = its true
runtime + 1 s (perfect walltime requests, as Slurm users are asked for), isolating the error of
the forward simulation itself.

``--samples N`` (default: the estimator's): forward runs per estimate with runtimes drawn
from history (1: one run with median runtimes, the estimator before). ``--repeat-s N``:
assume the submissions of the last N s come again (``estimate_plane(repeat_s=...)``).
``--arrival-window-s N``: expect later submissions at the rate and mix of the last N s
(``estimate_plane(arrival_window_s=...)``). ``--min-group N``: a queue/GPU group's runtimes
speak for a job once it holds N. ``--config NAME:key=value,...`` (repeatable): measure several
estimator configurations on one run (keys ``samples``, ``repeat``, ``window``,
``min_group``, and the replay's keys below); the simulation does not depend on them. Passes
at which every pending job already has its first estimate are skipped (only first estimates
are measured).
``--runtimes peek-running`` (diagnosis only): running jobs end at their true ends, which no
control plane knows. ``--buckets``: the errors split by queue, GPU request, sign, and
whether a later arrival (of higher, or same or lower priority) started first.

``--record FILE``: run the simulation only, writing what the estimator reads at each pass
(``plane_inputs`` and the runtime history) and every job's submission and actual start (about
15 s; 30-45 s with ``--limit 1000``); with ``--measure``, only the passes at which a measured
job gets its first estimate, so the replay measures the same jobs. ``--replay FILE --config
…``: measure estimators on that recording, each pass in time order with only what the plane
knew then; the forward runs of each (samples, repeat, window,
min_group, size, overtake) are kept beside it (``FILE.runs-…``), so ranks (``rank``,
``rank_whole``) and the corrections (``priority``, ``calibrate``, ``class``, ``cmin``) are
measured again in seconds. ``size=N``: runtimes of the same queue and whole size (GPUs, CPUs,
memory) speak for a job once they are N (0: never); ``overtake=1`` (replay only): the
``window`` model expects only the submissions that can overtake a waiting job
(``phalanx.ops.arrivals.overtaking``); ``load=N`` (replay only): split the errors by the
overload flag (``Estimate.higher_priority_load`` over the last N s at least ``load_rho``,
default 1) and count the jobs of each side that start only after the last submission;
``peek=1`` (replay only, a diagnosis): running jobs end at their true ends, as the forward
runs see them when every running workload reports a steady pace and its total steps
(``report_progress(step, total_steps=N)``).
The kept runs hold pickled ``Estimate`` objects: delete ``FILE.runs-*`` after a change to it.
A key not given in ``--config`` takes the estimator's default. See docs/operations.md.

    .venv/bin/python bench/estimates_bench.py [--skip 2000] [--limit 200] [--nodes 6] [--speedup 10] [--runtimes oracle] [--samples 7] [--buckets]
    .venv/bin/python bench/estimates_bench.py --record /tmp/openb.rec
    .venv/bin/python bench/estimates_bench.py --record /tmp/openb.rec --limit 1000 --measure 200
    .venv/bin/python bench/estimates_bench.py --replay /tmp/openb.rec --config new: --config old:rank_whole=-1
"""

from __future__ import annotations

import argparse
import pickle
import statistics
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from phalanx.backends.sim import SimWorkload
from phalanx.model.objects import JobPhase, JobSpec, ResourceQuota
from phalanx.model.resources import CPU, GPU, MEMORY
from phalanx.model.specs import job_to_manifest
from phalanx.ops.arrivals import arrivals_again, overtaking, recent_model
from phalanx.ops.calibration import EstimateLog, job_class, priority_load, stretch
from phalanx.ops.estimates import (
    DEFAULT_ARRIVAL_WINDOW_S,
    DEFAULT_CALIBRATE,
    DEFAULT_PRIORITY_WINDOW_S,
    DEFAULT_RANK_Q,
    DEFAULT_SAMPLES,
    DEFAULT_SIZE_MIN_GROUP,
    DEFAULT_WHOLE_GPU_RANK_Q,
    OVERLOADED,
    Estimate,
    Finished,
    RunOptions,
    RuntimeModel,
    estimate_plane,
    forward_runs,
    plane_inputs,
    ranked,
    runtime_history,
    scaled,
    whole_gpu_ranks,
)
from phalanx.scheduling import SchedulerConfig, Snapshot
from phalanx.simulation.driver import Arrival, Driver, config_manifests
from phalanx.simulation.full import SIM_COMMAND
from phalanx.simulation.openb import load_openb_nodes, load_openb_pods
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
        true = self.true_s.get(spec.name)
        if true is None:  # never ended in the recording: as history says
            return RuntimeModel.remaining_s(self, spec, elapsed_s, q)
        return max(0.0, true - elapsed_s)


@dataclass(frozen=True, slots=True)
class Config:
    """One way of estimating, measured on the same run as the others."""

    name: str
    samples: int
    repeat_s: float
    arrival_window_s: float
    min_group: int
    rank_q: float = DEFAULT_RANK_Q
    priority_window_s: float = DEFAULT_PRIORITY_WINDOW_S
    calibrate: int = DEFAULT_CALIBRATE
    by_class: int = 0
    calibrate_min_wait_s: float = 0.0
    #: the rank told jobs asking whole GPUs (-1: rank_q)
    rank_whole_q: float = -1.0 if DEFAULT_WHOLE_GPU_RANK_Q is None else DEFAULT_WHOLE_GPU_RANK_Q
    #: runtimes of the same queue and whole size speak once they are this many (0: never)
    size_min_group: int = DEFAULT_SIZE_MIN_GROUP
    #: 1: expected arrivals (``window``) only of the submissions that can overtake a waiter
    overtake: int = 0
    #: > 0: split the errors by whether the higher-priority work submitted in this many
    #: seconds past asked at least ``load_rho`` of the cluster at the first estimate (the
    #: product's ``Estimate.is_overloaded`` with its defaults: load=1800, load_rho=1)
    load_window_s: float = 0.0
    load_rho: float = OVERLOADED
    #: 1 (diagnosis, replay only): running jobs end at their true ends (``PeekRunning``), as
    #: when every running workload reports a steady pace and its total steps; pending jobs'
    #: runtimes still come from history
    peek: int = 0

    KEYS = (
        "samples",
        "repeat",
        "window",
        "min_group",
        "rank",
        "priority",
        "calibrate",
        "class",
        "cmin",
        "rank_whole",
        "size",
        "overtake",
        "load",
        "load_rho",
        "peek",
    )

    def runtime_model(
        self, history: list[Finished], kind: type[RuntimeModel] = RuntimeModel
    ) -> RuntimeModel:
        """The runtime model this configuration reads ``history`` with."""
        return kind.from_history(
            history, min_group=self.min_group, size_min_group=self.size_min_group
        )

    @classmethod
    def parse(cls, text: str, default: Config) -> Config:
        """``NAME:key=value,...`` with keys ``KEYS`` (the rest as ``default``). Raises
        SystemExit naming a bad item."""
        name, _, items = text.partition(":")
        values: dict[str, float] = {}
        for item in filter(None, items.split(",")):
            key, sep, value = item.partition("=")
            if not sep or key not in cls.KEYS:
                raise SystemExit(
                    f"--config {text!r}: {item!r} is not key=value with key one of "
                    f"{', '.join(cls.KEYS)}"
                )
            values[key] = float(value)
        return cls(
            name or "config",
            int(values.get("samples", default.samples)),
            values.get("repeat", default.repeat_s),
            values.get("window", default.arrival_window_s),
            int(values.get("min_group", default.min_group)),
            values.get("rank", default.rank_q),
            values.get("priority", default.priority_window_s),
            int(values.get("calibrate", default.calibrate)),
            int(values.get("class", default.by_class)),
            values.get("cmin", default.calibrate_min_wait_s),
            values.get("rank_whole", default.rank_whole_q),
            int(values.get("size", default.size_min_group)),
            int(values.get("overtake", default.overtake)),
            values.get("load", default.load_window_s),
            values.get("load_rho", default.load_rho),
            int(values.get("peek", default.peek)),
        )


@dataclass(slots=True)
class Pass:
    """What the estimator reads at one estimate pass (``plane_inputs`` and the plane's runtime
    history), and the pending jobs that get their first estimate there."""

    now: float
    snapshot: Snapshot
    running: dict[str, tuple[JobSpec, float]]
    specs: dict[str, tuple[JobSpec, int]]
    history: list[Finished]
    new: tuple[str, ...]


@dataclass(slots=True)
class Recording:
    """One simulation (``--record``): its flags, the history known before it, each estimate
    pass, every job's submission (time, id, spec) and final record (its actual start)."""

    flags: dict[str, object]
    seed: list[Finished]
    passes: list[Pass]
    submitted: list[tuple[float, int, JobSpec]]
    records: dict[str, JobRecord]


def pass_runs(
    config: Config, rec: Recording, p: Pass, only: tuple[str, ...] | None
) -> list[dict[str, Estimate]]:
    """``config``'s forward runs at pass ``p`` of ``rec``, from what the plane knew then (as
    ``estimate_plane`` would make them there)."""
    model = config.runtime_model(p.history + rec.seed)
    if config.peek:
        model = replace(
            config.runtime_model(p.history + rec.seed, PeekRunning),
            true_s={
                n: r.finished_at - r.started_at
                for n, r in rec.records.items()
                if r.finished_at is not None and r.started_at is not None
            },
        )
    known = [(at, i, spec) for at, i, spec in rec.submitted if at <= p.now]
    arrival_model = (
        recent_model(
            [(at, spec) for at, _, spec in known], p.now, config.arrival_window_s, known[0][0]
        )
        if config.arrival_window_s > 0 and known
        else None
    )
    if arrival_model is not None and config.overtake:
        arrival_model = overtaking(arrival_model, [w.spec for w in p.snapshot.pending])
    options = RunOptions(
        samples=config.samples,
        arrivals=arrivals_again(known, p.now, config.repeat_s) if config.repeat_s > 0 else (),
        arrival_model=arrival_model,
        only=only,
    )
    return forward_runs(p.snapshot, p.running, p.specs, model, options)


def adjusted(
    config: Config,
    rec: Recording,
    p: Pass,
    runs: list[dict[str, Estimate]],
    log: EstimateLog,
) -> dict[str, Estimate]:
    """``config``'s estimates at pass ``p`` from its forward ``runs``: ranked, stretched by
    later work of higher priority, calibrated by the errors of earlier estimates (``log``:
    this configuration's first estimates; it learns of the jobs started by now)."""
    whole = whole_gpu_ranks(p.snapshot, config.rank_whole_q) if config.rank_whole_q >= 0 else None
    estimates = ranked(runs, config.rank_q, whole)
    if config.priority_window_s > 0:
        rho = pass_loads(config, rec, p, config.priority_window_s)
        estimates = scaled(estimates, p.now, {n: stretch(r) for n, r in rho.items()})
    if config.calibrate > 0:
        log.started(
            {
                n: r.started_at
                for n, r in rec.records.items()
                if r.started_at is not None and r.started_at <= p.now
            }
        )
        classes = {w.spec.name: job_class(w.spec) for w in p.snapshot.pending}
        log.note(estimates, p.now, classes if config.by_class else None)
        estimates = scaled(
            estimates,
            p.now,
            {
                n: log.calibration(classes.get(n) if config.by_class else None).factor
                for n in estimates
            },
        )
    return estimates


def overloaded_jobs(config: Config, rec: Recording, p: Pass) -> set[str]:
    """The pending jobs of pass ``p`` whose estimates ``config`` flags: the higher-priority
    work submitted in its ``load`` window asks at least ``load_rho`` of the cluster (as
    ``estimate_plane`` sets ``Estimate.higher_priority_load``)."""
    if config.load_window_s <= 0:
        return set()
    rho = pass_loads(config, rec, p, config.load_window_s)
    return {n for n, r in rho.items() if round(r, 2) >= config.load_rho}


def pass_loads(config: Config, rec: Recording, p: Pass, window_s: float) -> dict[str, float]:
    """``priority_load`` of each job pending at pass ``p``, over the ``window_s`` seconds of
    submissions before it, with ``config``'s runtime model of what had finished by then."""
    model = config.runtime_model(p.history + rec.seed)
    known = [(at, spec) for at, _, spec in rec.submitted if at <= p.now]
    return priority_load(known, p.snapshot, model, window_s)


def replay(args: argparse.Namespace, configs: list[Config]) -> None:
    """Measure ``configs`` on a ``--record`` file, each estimating every pass in time order.
    The forward runs of each (samples, repeat, window, min_group) are made once and kept
    beside the file (``FILE.runs-…``): ranking, stretching and calibration are redone on
    them."""
    rec: Recording = pickle.loads(args.replay.read_bytes())
    print(f"replay of {args.replay}: {rec.flags}, {len(rec.passes)} estimate passes")
    measure = rec.flags.get("measure", rec.flags["limit"])
    print_spans(rec, {spec.name for _, _, spec in rec.submitted[: int(str(measure))]})
    for config in configs:
        key = (
            f"s{config.samples}-r{config.repeat_s:g}-w{config.arrival_window_s:g}"
            f"-g{config.min_group}-z{config.size_min_group}-o{config.overtake}{'-p1' if config.peek else ''}{'-all' if args.all_jobs else ''}"
        )
        kept = args.replay.with_name(f"{args.replay.name}.runs-{key}")
        if kept.exists():
            all_runs, runs_cpu = pickle.loads(kept.read_bytes())
        else:
            before = time.process_time()
            all_runs = [
                [
                    {n: e for n, e in r.items() if n in p.new}
                    for r in pass_runs(config, rec, p, None if args.all_jobs else p.new)
                ]
                for p in rec.passes
            ]
            runs_cpu = time.process_time() - before
            kept.write_bytes(pickle.dumps((all_runs, runs_cpu)))
        first: dict[str, tuple[float, float | None, str]] = {}
        log = EstimateLog(max(1, config.calibrate), config.calibrate_min_wait_s)
        before = time.process_time()
        overloaded: set[str] = set()
        for p, runs in zip(rec.passes, all_runs, strict=True):
            flagged = overloaded_jobs(config, rec, p)
            for name, e in adjusted(config, rec, p, runs, log).items():
                if name not in first:
                    first[name] = (p.now, e.start_at, e.waits_on)
                    if name in flagged:
                        overloaded.add(name)
        cpu = runs_cpu + time.process_time() - before
        report(config, first, rec.records, args.min_wait_s)
        if config.load_window_s > 0:
            report_overloaded(overloaded, first, rec.records, args.min_wait_s, rec.submitted[-1][0])
        print(f"  CPU per estimate pass: {cpu / max(1, len(rec.passes)):.3f} s")
        if args.buckets:
            by_name = {spec.name: (spec, at) for at, _, spec in rec.submitted}
            print_buckets(rows_of(first, rec.records, args.min_wait_s), by_name, rec.records)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--skip", type=int, default=2000, help="start at job N of the trace")
    parser.add_argument("--limit", type=int, default=200, help="this many jobs of the trace")
    parser.add_argument(
        "--measure",
        type=int,
        metavar="M",
        help="measure the estimates of the first M jobs only, while all --limit jobs arrive "
        "(default: all of them)",
    )
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
        "min_group, size, and the replay's keys; the rest from the flags above) on the same "
        "run; repeatable",
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
    parser.add_argument(
        "--record",
        type=Path,
        metavar="FILE",
        help="run the simulation only, writing each estimate pass's inputs and every job's "
        "actual start to FILE (for --replay)",
    )
    parser.add_argument(
        "--replay",
        type=Path,
        metavar="FILE",
        help="measure the configurations on a --record file instead of simulating",
    )
    parser.add_argument(
        "--all-jobs",
        action="store_true",
        help="with --replay: estimate every pending job at each pass, as the live bench does "
        "(default: only those without a first estimate, the same answers in less time)",
    )
    args = parser.parse_args()
    flags = Config("flags", args.samples, args.repeat_s, args.arrival_window_s, args.min_group)
    configs = [Config.parse(c, flags) for c in args.config] or [flags]
    if args.replay:
        replay(args, configs)
        return
    if any(c.peek for c in configs) and not args.record:
        raise SystemExit(
            "--config: peek is measured with --replay only (live: --runtimes peek-running)"
        )
    if any(c.overtake for c in configs) and not args.record:
        raise SystemExit(
            "--config: overtake is measured with --replay only (estimate_plane has no such "
            "setting: it was measured worse, see docs/operations.md)"
        )
    if sum(c.calibrate > 0 for c in configs) > 1 and not args.record:
        raise SystemExit(
            "--config: calibrate is set in more than one configuration; a live run keeps one "
            "log of first estimates per plane, so measure them with --replay (or one at a time)"
        )
    nodes = load_openb_nodes(args.data / "openb_node_list_gpu_node.csv")[: args.nodes]
    jobs = load_openb_pods(args.data / "openb_pod_list_default.csv").jobs[
        args.skip : args.skip + args.limit
    ]
    if args.measure is None or not 0 < args.measure <= len(jobs):
        args.measure = len(jobs)
    # Only these jobs' first estimates count; the later ones arrive and can overtake them.
    measured = {j.name for j in jobs[: args.measure]}
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
    seed: list[Finished] = [
        (j.queue, r.gpu_milli, j.runtime_s, r.cpu_milli, r.memory_bytes)
        for j in earlier
        if j.submit_s + j.runtime_s < jobs[0].submit_s and args.history == "trace"
        for r in (job_spec(j).total_request,)
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
    passes: list[Pass] = []
    seen: set[str] = set()
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
                if r.phase == JobPhase.PENDING.value and r.name in measured
            }
            if args.record:
                if waiting <= seen:
                    continue
                now = driver.clock.now
                snapshot, running, specs = plane_inputs(driver.plane, now)
                new = tuple(
                    w.spec.name
                    for w in snapshot.pending
                    if w.spec.name in measured and w.spec.name not in seen
                )
                seen.update(new)
                passes.append(
                    Pass(now, snapshot, running, specs, runtime_history(driver.plane), new)
                )
                samples += 1
                continue
            if all(waiting <= firsts[c.name].keys() for c in configs):
                continue
            samples += 1
            now = driver.clock.now
            for config in configs:
                before = time.process_time()
                history = runtime_history(driver.plane) + seed
                model = (
                    replace(config.runtime_model(history, PeekRunning), true_s=true_runtime)
                    if args.runtimes == "peek-running"
                    else config.runtime_model(history)
                )
                estimates = estimate_plane(
                    driver.plane,
                    model,
                    samples=config.samples,
                    repeat_s=config.repeat_s,
                    arrival_window_s=config.arrival_window_s,
                    rank_q=config.rank_q,
                    whole_gpu_rank_q=config.rank_whole_q if config.rank_whole_q >= 0 else None,
                    priority_window_s=config.priority_window_s,
                    calibrate=config.calibrate,
                )
                estimate_cpu[config.name] += time.process_time() - before
                first = firsts[config.name]
                for name, e in estimates.items():
                    if name in measured:
                        first.setdefault(name, (now, e.start_at, e.waits_on))
        driver.run()  # every job has arrived and had its first estimate
        records = {r.name: r for r in driver.store.list_jobs()}
        submitted = [
            (r.created_at, r.id, driver.plane.specs.job(r)) for r in driver.store.list_jobs()
        ]
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    if args.record:
        recording = Recording(
            {
                k: getattr(args, k)
                for k in ("skip", "limit", "measure", "nodes", "speedup", "history")
            },
            seed,
            passes,
            sorted(submitted, key=lambda s: (s[0], s[1])),
            records,
        )
        args.record.write_bytes(pickle.dumps(recording, protocol=pickle.HIGHEST_PROTOCOL))
        print(
            f"{len(nodes)} nodes, {len(jobs)} jobs ({args.measure} measured): {samples} estimate "
            f"passes recorded to {args.record} in {wall:.1f} s wall, {cpu:.1f} s CPU"
        )
        print_spans(recording, measured)
        return
    print(
        f"{len(nodes)} nodes, {len(jobs)} jobs ({args.measure} measured), runtimes "
        f"{args.runtimes}: wall {wall:.1f} s, "
        f"CPU {cpu:.1f} s, {samples} estimate passes per configuration"
    )
    for config in configs:
        report(config, firsts[config.name], records, args.min_wait_s)
        print(f"  CPU per estimate pass: {estimate_cpu[config.name] / max(1, samples):.3f} s")
        if args.buckets:
            by_name = {j.name: (job_spec(j), a.at) for j, a in zip(jobs, arrivals, strict=True)}
            print_buckets(rows_of(firsts[config.name], records, args.min_wait_s), by_name, records)


def print_spans(rec: Recording, measured: set[str]) -> None:
    """When the submissions stop against when the measured jobs start (simulated hours from
    the first submission): while submissions go on, later work can still overtake a waiting
    job; once they stop, a backlog drains with nothing new."""
    t0 = rec.submitted[0][0]
    last = rec.submitted[-1][0]
    last_measured = max(at for at, _, spec in rec.submitted if spec.name in measured)
    starts = sorted(
        started
        for name in measured
        if name in rec.records and (started := rec.records[name].started_at) is not None
    )
    if not starts:
        return
    after = sum(1 for t in starts if t > last)
    print(
        f"  simulated hours from the first submission: measured jobs submitted until "
        f"{(last_measured - t0) / 3600:.2f}, all until {(last - t0) / 3600:.2f}; measured "
        f"jobs start until {(starts[-1] - t0) / 3600:.2f} (median "
        f"{(statistics.median(starts) - t0) / 3600:.2f}), {after} of {len(starts)} after the "
        f"last submission, {len(measured) - len(starts)} never"
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
        f"window {config.arrival_window_s:g} s, min group {config.min_group} (size "
        f"{config.size_min_group}), rank "
        f"{config.rank_q:g} (whole GPUs {config.rank_whole_q:g}), priority window {config.priority_window_s:g} s, calibrate "
        f"{config.calibrate}{' by class' if config.by_class else ''} (waits >= "
        f"{config.calibrate_min_wait_s:g} s): "
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


def report_overloaded(
    overloaded: set[str],
    first: Mapping[str, tuple[float, float | None, str]],
    records: Mapping[str, JobRecord],
    min_wait_s: float,
    last_submitted: float,
) -> None:
    """The errors split by the flag: the jobs whose first estimate said that higher-priority
    work arrived faster than the cluster served it, and the rest; their actual waits, how
    many flagged jobs started within ``min_wait_s`` (told "later" wrongly), and how many of
    each started only after the last submission (``last_submitted``)."""
    for label, names in (
        ("flagged overloaded", overloaded),
        ("not flagged", set(first) - overloaded),
    ):
        rows = rows_of({n: first[n] for n in names}, records, min_wait_s)
        started = [
            at - first[n][0]
            for n in names
            if n in records and (at := records[n].started_at) is not None
        ]
        soon = sum(w < min_wait_s for w in started)
        after_last = sum(
            1
            for n in names
            if n in records and (records[n].started_at or float("inf")) > last_submitted
        )
        if not rows:
            print(f"  {label}: {len(names)} jobs, none waited >= {min_wait_s:g} s")
            continue
        errors = [abs(signed) for _, signed, _, _ in rows]
        print(
            f"  {label}: {len(names)} jobs ({len(rows)} waited >= {min_wait_s:g} s, {soon} "
            f"started sooner, {len(names) - len(started)} never); median error "
            f"{statistics.median(errors) * 100:.1f} % (p90 {percentile(errors, 0.9) * 100:.1f} %, "
            f"median signed {statistics.median(s for _, s, _, _ in rows) * 100:+.1f} %); "
            f"median actual wait {statistics.median(a for _, _, a, _ in rows):.0f} s; "
            f"{after_last} started after the last submission or never"
        )


def print_buckets(
    rows: list[Row],
    by_name: Mapping[str, tuple[JobSpec, float]],
    records: Mapping[str, JobRecord],
) -> None:
    """Errors bucketed: by queue, GPU request, what the job waited on, the sign of the error,
    and whether a job that arrived after it started before it (a later arrival the estimate
    could not know: higher priority, or a smaller job backfilled)."""
    buckets: dict[str, list[float]] = {}

    def put(key: str, signed: float) -> None:
        buckets.setdefault(key, []).append(signed)

    for name, signed, _actual, waits_on in rows:
        job, arrived = by_name[name]
        started = records[name].started_at or 0.0
        gpu = job.total_request.gpu_milli
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
