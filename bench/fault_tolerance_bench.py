"""Benchmark: GPU-hours lost to failures and preemptions on a synthetic 1,000-job trace with
injected node failures, in virtual time, driving the real scheduler (``schedule()``).

Three policies see the same trace and the same node failures:
  1. restart-from-zero: a killed job (node failure or preemption) starts over; victims are
     chosen without checkpoint information (most recently admitted first);
  2. checkpoint restarts: a killed job resumes from its last checkpoint (every
     ``--checkpoint-min`` minutes of progress); victims still chosen blind;
  3. checkpoint-aware: as 2, and the snapshot carries each job's last checkpoint, so the
     scheduler preempts the victims that lose the least work (phalanx's default).
Lost work of a killed job = its GPUs x its progress since the last checkpoint (since the start
of the attempt without checkpoints). Not a test: the figures depend on the seed and sizes.

This driver is self-contained (a small virtual-time loop around the pure core) because the
simulator package was still being written; it uses nothing but ``phalanx.scheduling``.

    python bench/fault_tolerance_bench.py [--jobs 1000] [--nodes 32] [--seed 7]
"""

from __future__ import annotations

import argparse
import math
import random
import time
from dataclasses import dataclass, field, replace

from phalanx.model.objects import JobSpec, Node, PodPlacement, ResourceFlavor
from phalanx.scheduling import SchedulerConfig, schedule
from phalanx.scheduling.snapshot import AdmittedWorkload, PendingWorkload, PlacedPod, Snapshot
from phalanx.testing import make_job, make_node, make_queue

HOUR = 3600.0
SHAPES = [(1, 1), (2, 1), (4, 1), (8, 1), (8, 2), (8, 4)]  # (GPUs per pod, pods)
WEIGHTS = [20, 20, 20, 25, 10, 5]


@dataclass(slots=True)
class TraceJob:
    spec: JobSpec
    arrival: float
    work_s: float  # running time it needs, uninterrupted


@dataclass(slots=True)
class Running:
    placements: tuple[PodPlacement, ...]
    started: float
    resume_s: float  # progress it resumed from
    admitted_at: float


@dataclass(slots=True)
class Outcome:
    lost_failure_gpu_h: float = 0.0
    lost_preempt_gpu_h: float = 0.0
    kills_failure: int = 0
    kills_preempt: int = 0
    finished: int = 0
    makespan_h: float = 0.0
    cycles: int = 0
    wall_s: float = 0.0


@dataclass(slots=True)
class Run:
    """One policy's run over the trace."""

    jobs: list[TraceJob]
    nodes: list[Node]
    failures: list[tuple[float, int]]
    checkpoint_s: float | None  # None: restart from zero
    is_checkpoint_aware: bool
    repair_s: float
    tick_s: float
    out: Outcome = field(default_factory=Outcome)

    def gpus(self, job: TraceJob) -> float:
        return job.spec.total_request.gpu_milli / 1000

    def progress(self, r: Running, now: float) -> float:
        return r.resume_s + (now - r.started)

    def saved(self, progress_s: float) -> float:
        if self.checkpoint_s is None:
            return 0.0
        return math.floor(progress_s / self.checkpoint_s) * self.checkpoint_s

    def run(self) -> Outcome:
        started_wall = time.perf_counter()
        queue = make_queue("q").quota(gpu=100_000, cpu=10**6).obj()
        flavors = (ResourceFlavor("default"),)
        by_name = {j.spec.name: j for j in self.jobs}
        seq = {j.spec.name: i for i, j in enumerate(self.jobs)}
        arrivals = sorted(self.jobs, key=lambda j: j.arrival)
        failures = list(self.failures)
        pending: dict[str, float] = {}  # name -> progress to resume from
        running: dict[str, Running] = {}
        down_until: dict[str, float] = {}
        now, next_arrival = 0.0, 0
        done = 0
        again = False
        while done < len(self.jobs):
            changed, again = again, False
            # 1. arrivals
            while next_arrival < len(arrivals) and arrivals[next_arrival].arrival <= now:
                pending[arrivals[next_arrival].spec.name] = 0.0
                next_arrival += 1
                changed = True
            # 2. completions
            for name, r in list(running.items()):
                if self.progress(r, now) >= by_name[name].work_s:
                    del running[name]
                    done += 1
                    changed = True
            # 3. node repairs and failures
            for node, until in list(down_until.items()):
                if until <= now:
                    del down_until[node]
                    changed = True
            while failures and failures[0][0] <= now:
                _, index = failures.pop(0)
                node = self.nodes[index].name
                if node in down_until:
                    continue
                down_until[node] = now + self.repair_s
                for name, r in list(running.items()):
                    if any(p.node == node for p in r.placements):
                        self.kill(by_name[name], r, now, pending, is_failure=True)
                        del running[name]
                changed = True
            # 4. schedule (only when something changed: decisions depend on nothing else)
            if changed and pending:
                snapshot = self.snapshot(
                    now, queue, flavors, pending, running, down_until, seq, by_name
                )
                decisions = schedule(snapshot)
                self.out.cycles += 1
                for p in decisions.preemptions:
                    victim = running.pop(p.victim, None)
                    if victim is not None:
                        self.kill(by_name[p.victim], victim, now, pending, is_failure=False)
                for a in decisions.admissions:
                    resume = pending.pop(a.job)
                    running[a.job] = Running(a.placements, now, resume, now)
                if decisions.preemptions:
                    again = True  # the preemptors fit now: schedule again at the same instant
                    continue
            now += self.tick_s
        self.out.finished = done
        self.out.makespan_h = now / HOUR
        self.out.wall_s = time.perf_counter() - started_wall
        return self.out

    def kill(
        self, job: TraceJob, r: Running, now: float, pending: dict[str, float], *, is_failure: bool
    ) -> None:
        progress = self.progress(r, now)
        resume = self.saved(progress)
        lost = self.gpus(job) * (progress - resume) / HOUR
        if is_failure:
            self.out.lost_failure_gpu_h += lost
            self.out.kills_failure += 1
        else:
            self.out.lost_preempt_gpu_h += lost
            self.out.kills_preempt += 1
        pending[job.spec.name] = resume

    def snapshot(self, now, queue, flavors, pending, running, down_until, seq, by_name):  # type: ignore[no-untyped-def]
        nodes = tuple(replace(n, is_ready=False) if n.name in down_until else n for n in self.nodes)
        admitted = []
        for name, r in running.items():
            spec = by_name[name].spec
            sizes = {ps.name: ps.resources for ps in spec.pod_sets}
            last_ckpt = None
            if self.is_checkpoint_aware and self.checkpoint_s is not None:
                saved = self.saved(self.progress(r, now))
                if saved > r.resume_s:
                    last_ckpt = r.started + (saved - r.resume_s)
                elif r.resume_s > 0:
                    last_ckpt = r.started  # resumed from a checkpoint: nothing unsaved yet
            admitted.append(
                AdmittedWorkload(
                    name,
                    "q",
                    "default",
                    spec.priority,
                    tuple(PlacedPod(p, sizes[p.pod_set]) for p in r.placements),
                    r.admitted_at,
                    False,
                    last_ckpt,
                )
            )
        return Snapshot(
            now=now,
            nodes=nodes,
            flavors=flavors,
            queues=(queue,),
            pending=tuple(PendingWorkload(by_name[n].spec, seq[n]) for n in pending),
            admitted=tuple(admitted),
            config=SchedulerConfig(),
        )


def make_trace(
    args: argparse.Namespace,
) -> tuple[list[TraceJob], list[Node], list[tuple[float, int]]]:
    rnd = random.Random(args.seed)
    nodes = [
        make_node(f"node-{i:03d}").gpus(8).cpu(128).memory("1Ti").obj() for i in range(args.nodes)
    ]
    jobs = []
    t = 0.0
    mean_gap = args.arrival_hours * HOUR / args.jobs
    for i in range(args.jobs):
        t += rnd.expovariate(1 / mean_gap)
        gpus, pods = rnd.choices(SHAPES, WEIGHTS)[0]
        priority = 10 if rnd.random() < args.high_priority else 0
        spec = (
            make_job(f"job-{i:04d}").queue("q").gpus(gpus).replicas(pods).priority(priority).obj()
        )
        work = min(
            24 * HOUR, max(300.0, rnd.lognormvariate(math.log(args.median_hours * HOUR), 1.0))
        )
        jobs.append(TraceJob(spec, t, work))
    failures = []
    horizon = args.arrival_hours * HOUR * 3
    rate = args.nodes / (args.mtbf_hours * HOUR)  # cluster-wide failures per second
    f = 0.0
    while True:
        f += rnd.expovariate(rate)
        if f > horizon:
            break
        failures.append((f, rnd.randrange(args.nodes)))
    return jobs, nodes, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--nodes", type=int, default=32, help="8-GPU nodes")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--arrival-hours", type=float, default=96.0)
    parser.add_argument("--median-hours", type=float, default=2.0, help="median job runtime")
    parser.add_argument(
        "--high-priority", type=float, default=0.25, help="share of priority-10 jobs"
    )
    parser.add_argument("--mtbf-hours", type=float, default=100.0, help="per node")
    parser.add_argument("--repair-hours", type=float, default=1.0)
    parser.add_argument("--checkpoint-min", type=float, default=30.0)
    parser.add_argument("--tick-s", type=float, default=60.0)
    args = parser.parse_args()
    jobs, nodes, failures = make_trace(args)
    gpu_h = sum(j.spec.total_request.gpu_milli / 1000 * j.work_s for j in jobs) / HOUR
    print(
        f"trace: {len(jobs)} jobs ({gpu_h:,.0f} GPU-h of work), {len(nodes)} nodes x 8 GPUs, "
        f"{len(failures)} injected node failures (MTBF {args.mtbf_hours:g} h/node, repair "
        f"{args.repair_hours:g} h), {args.high_priority:.0%} high-priority jobs, checkpoints "
        f"every {args.checkpoint_min:g} min, seed {args.seed}"
    )
    policies = [
        ("restart-from-zero", None, False),
        ("checkpoint restarts, blind victims", args.checkpoint_min * 60, False),
        ("checkpoint restarts + aware victims", args.checkpoint_min * 60, True),
    ]
    results = []
    print(
        f"{'policy':<38}{'lost: failures':>16}{'preemptions':>13}{'total GPU-h':>13}{'kills f/p':>11}{'makespan':>10}{'wall':>7}"
    )
    for label, ckpt, aware in policies:
        out = Run(jobs, nodes, failures, ckpt, aware, args.repair_hours * HOUR, args.tick_s).run()
        total = out.lost_failure_gpu_h + out.lost_preempt_gpu_h
        results.append(total)
        print(
            f"{label:<38}{out.lost_failure_gpu_h:>16,.1f}{out.lost_preempt_gpu_h:>13,.1f}"
            f"{total:>13,.1f}{out.kills_failure:>6}/{out.kills_preempt:<4}{out.makespan_h:>9.1f}h"
            f"{out.wall_s:>6.1f}s"
        )
    base, best = results[0], results[-1]
    print(
        f"GPU-hours lost: restart-from-zero {base:,.1f} vs checkpoint-aware {best:,.1f}: "
        f"ratio {base / best if best else float('inf'):.1f}x"
    )


if __name__ == "__main__":
    main()
