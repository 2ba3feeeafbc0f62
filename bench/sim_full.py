"""Benchmark: full mode (arrivals and completions in virtual time, queues, preemption) on the
openb default trace. Prints wall and CPU time, ticks and the report's headline figures.

The default engine runs the production control plane (store, reconcilers, scheduler) on the sim
backend, with the in-memory store (``--store sqlite://``: the SQL store on in-memory SQLite);
``--engine session`` replays through a SchedulingSession without the controllers (fast, an
approximation; see docs/simulation.md). The control plane takes about 1 ms of CPU per job of
this trace on the in-memory store (about 40 ms on SQLite): use ``--limit`` to time a prefix.

    .venv/bin/python bench/sim_full.py [--engine controllers|session] [--store URL] [--limit N]
        [--digest]

``--digest`` prints ``simulation.full.outcome_digest`` of the run (timed with it): equal
digests before and after a change to the controllers or the scheduler show that it decides
the same (the same placements, times and events).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from phalanx.simulation.driver import MEMORY_STORE_URL
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
    parser.add_argument(
        "--store",
        default=MEMORY_STORE_URL,
        help="store of the controllers engine: memory:// (default) or a URL such as sqlite://",
    )
    parser.add_argument(
        "--digest",
        action="store_true",
        help="print a digest of every decision recorded (controllers engine), to check that "
        "a change to the control plane or the scheduler decides the same",
    )
    args = parser.parse_args()
    nodes = load_openb_nodes(args.data / "openb_node_list_gpu_node.csv")
    trace = load_openb_pods(args.data / "openb_pod_list_default.csv")
    jobs = trace.jobs[: args.limit] if args.limit else trace.jobs
    world = build_world(nodes, jobs)
    started, cpu = time.perf_counter(), time.process_time()
    if args.engine == "controllers":
        r = run_full(world, jobs, args.policy, args.seed, store_url=args.store, digest=args.digest)
    else:
        r = run_session_replay(world, jobs, args.policy, args.seed)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    cycles = sum(c for _, c, _, _ in r.latency)
    print(
        f"{len(nodes)} nodes, {len(jobs)} jobs, policy {args.policy}, engine {args.engine}"
        f"{f' (store {args.store})' if args.engine == 'controllers' else ''}: "
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
    if r.digest:
        print(f"outcome digest {r.digest}")


if __name__ == "__main__":
    main()
