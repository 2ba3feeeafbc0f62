"""Benchmark: one arrival-only seed of the openb default trace at 130 % (about 10,800 jobs on
1,213 nodes) per policy, through the production scheduler (a SchedulingSession).

Prints placements per second and wall time per policy. Not a test: nothing is asserted.

    .venv/bin/python bench/sim_arrival.py [--seed 42] [--order creation|shuffled] [policy ...]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from phalanx.simulation.arrival import run_arrival
from phalanx.simulation.openb import load_openb_nodes, load_openb_pods
from phalanx.simulation.world import build_world

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "openb"
#: best-fit first: the others are compared with it.
POLICIES = ["best-fit", "random", "dot-product", "gpu-packing", "fgd", "fragmentation-aware"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("policies", nargs="*", default=POLICIES)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--order", choices=["creation", "shuffled"], default="creation")
    parser.add_argument("--data", type=Path, default=DATA)
    args = parser.parse_args()
    nodes = load_openb_nodes(args.data / "openb_node_list_gpu_node.csv")
    trace = load_openb_pods(args.data / "openb_pod_list_default.csv")
    world = build_world(nodes, trace.jobs, may_preempt=False)
    print(f"{len(nodes)} nodes, {len(trace.jobs)} jobs, seed {args.seed}, order {args.order}")
    print(
        f"{'policy':<22}{'jobs':>7}{'placed':>8}{'wall s':>8}{'cpu s':>8}{'jobs/s':>8}"
        f"{'x best-fit':>11}{'alloc@100':>10}{'alloc@130':>10}"
    )
    # jobs/s from the process's CPU time: on a shared machine wall time measures the neighbours.
    best_fit_rate = 0.0
    for policy in args.policies:
        started, cpu_started = time.perf_counter(), time.process_time()
        result = run_arrival(world, trace.jobs, policy, args.seed, shuffle=args.order == "shuffled")
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        jobs = result.placed + result.failed
        rate = jobs / cpu
        if policy == "best-fit":
            best_fit_rate = rate
        ratio = f"{best_fit_rate / rate:.2f}" if best_fit_rate else "-"
        print(
            f"{policy:<22}{jobs:>7}{result.placed:>8}{wall:>8.1f}{cpu:>8.1f}{rate:>8.0f}{ratio:>11}"
            f"{result.allocation_at(100):>10.2f}{result.allocation_at(130):>10.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
