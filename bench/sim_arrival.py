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
POLICIES = ["random", "best-fit", "dot-product", "gpu-packing", "fgd", "fragmentation-aware"]


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
        f"{'policy':<22}{'jobs':>7}{'placed':>8}{'wall s':>8}{'jobs/s':>8}{'alloc@100':>10}{'alloc@130':>10}"
    )
    for policy in args.policies:
        started = time.perf_counter()
        result = run_arrival(world, trace.jobs, policy, args.seed, shuffle=args.order == "shuffled")
        wall = time.perf_counter() - started
        jobs = result.placed + result.failed
        print(
            f"{policy:<22}{jobs:>7}{result.placed:>8}{wall:>8.1f}{jobs / wall:>8.0f}"
            f"{result.allocation_at(100):>10.2f}{result.allocation_at(130):>10.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
