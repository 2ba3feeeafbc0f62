"""Benchmark: full mode (arrivals and completions in virtual time, queues, preemption) on the
openb default trace. Prints wall and CPU time, ticks and the report's headline figures.

The default engine runs the production control plane (store, reconcilers, scheduler) on the sim
backend; ``--engine session`` replays through a SchedulingSession without the controllers
(fast, an approximation; see docs/simulation.md). The control plane takes about 0.1 s of CPU
per job of this trace (it rebuilds its snapshot and scheduler state every tick): use
``--limit`` to time a prefix.

    .venv/bin/python bench/sim_full.py [--engine controllers|session] [--limit N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from phalanx.simulation.full import run_full
from phalanx.simulation.openb import load_openb_nodes, load_openb_pods
from phalanx.simulation.session_replay import run_session_replay
from phalanx.simulation.world import build_world

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "openb"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--policy", default="fragmentation-aware")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--engine", choices=("controllers", "session"), default="controllers")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    nodes = load_openb_nodes(args.data / "openb_node_list_gpu_node.csv")
    trace = load_openb_pods(args.data / "openb_pod_list_default.csv")
    jobs = trace.jobs[: args.limit] if args.limit else trace.jobs
    world = build_world(nodes, jobs)
    run = run_full if args.engine == "controllers" else run_session_replay
    started, cpu = time.perf_counter(), time.process_time()
    r = run(world, jobs, args.policy, args.seed)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    cycles = sum(c for _, c, _, _ in r.latency)
    print(
        f"{len(nodes)} nodes, {len(jobs)} jobs, policy {args.policy}, engine {args.engine}: "
        f"wall {wall:.1f} s, CPU {cpu:.1f} s, {cycles} cycles"
    )
    print(f"completed {r.completed}, unfinished {r.unfinished}, preemptions {r.preemptions}")
    print(f"JCT mean {r.jct_s.mean:.0f} s, p50 {r.jct_s.p50:.0f} s, p99 {r.jct_s.p99:.0f} s")
    print(f"queueing delay mean {r.queue_delay_s.mean:.0f} s, p99 {r.queue_delay_s.p99:.0f} s")
    print(
        f"makespan {r.makespan_s:.0f} s, time-weighted GPU allocation {r.gpu_allocation_pct:.2f} %"
    )
    print(f"queue shares {dict(r.queue_share)}, Jain {r.jain_fairness:.3f}")
    print("decision latency per cycle (pending <=, cycles, mean ms, max ms):")
    for bucket, n, mean_ms, max_ms in r.latency:
        print(f"  {bucket:>6} {n:>7} {mean_ms:>8.2f} {max_ms:>8.2f}")


if __name__ == "__main__":
    main()
