"""Benchmark: one schedule() cycle on 5,000 nodes (8 GPUs each) with 1k/5k/10k pending jobs of
mixed shapes (fractional, 1, 2, 4, 8 GPUs; some 4-pod gangs). Prints pods placed per second,
cycle time and peak memory. Not a test: figures vary with the machine.

    python bench/schedule_bench.py [--nodes 5000] [--pending 1000,5000,10000] [--policy ...]
"""

from __future__ import annotations

import argparse
import random
import resource
import time
import tracemalloc

from phalanx.scheduling import SchedulerConfig, schedule
from phalanx.testing import make_job, make_node, make_queue, make_snapshot

SHAPES = [(0.25, 1), (0.5, 1), (1, 1), (2, 1), (4, 1), (8, 1), (8, 4), (2, 4)]
WEIGHTS = [10, 10, 30, 15, 10, 10, 5, 10]


def build(nodes: int, pending: int, seed: int, policy: str):  # type: ignore[no-untyped-def]
    rnd = random.Random(seed)
    node_list = [
        make_node(f"node-{i:05d}").gpus(8).cpu(128).memory("1Ti").label("rack", f"r{i // 32}").obj()
        for i in range(nodes)
    ]
    queues = [
        make_queue(f"team-{k}")
        .cohort("all")
        .quota(gpu=nodes * 8, cpu=nodes * 128, memory="100Pi")
        .obj()
        for k in range(4)
    ]
    jobs = []
    for i in range(pending):
        gpus, replicas = rnd.choices(SHAPES, WEIGHTS)[0]
        jobs.append(
            make_job(f"job-{i:05d}")
            .queue(f"team-{i % 4}")
            .priority(rnd.choice([0, 0, 0, 10]))
            .gpus(gpus)
            .cpu(max(1, int(gpus * 4)))
            .memory("8Gi")
            .replicas(replicas)
            .obj()
        )
    return make_snapshot(
        nodes=node_list, queues=queues, pending=jobs, config=SchedulerConfig(policy=policy)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=5000)
    parser.add_argument("--pending", default="1000,5000,10000")
    parser.add_argument("--policy", default="fragmentation-aware")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"schedule() on {args.nodes} nodes x 8 GPUs, policy {args.policy}")
    print(
        f"{'pending':>8} {'pods':>7} {'placed':>7} {'cycle_s':>8} {'pods/s':>9} {'us/job':>8} {'peak_MiB':>9}"
    )
    base_per_job = None
    for pending in [int(x) for x in args.pending.split(",")]:
        snapshot = build(args.nodes, pending, args.seed, args.policy)
        pods = sum(w.spec.pod_count for w in snapshot.pending)
        tracemalloc.start()
        started = time.perf_counter()
        decisions = schedule(snapshot)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        # tracemalloc slows allocation-heavy code; time once more without it.
        started = time.perf_counter()
        schedule(snapshot)
        elapsed = min(elapsed, time.perf_counter() - started)
        placed = sum(len(a.placements) for a in decisions.admissions)
        per_job = elapsed / pending * 1e6
        base_per_job = base_per_job or per_job
        print(
            f"{pending:>8} {pods:>7} {placed:>7} {elapsed:>8.3f} {placed / elapsed:>9.0f} {per_job:>8.1f} {peak / 2**20:>9.1f}"
            f"   (us/job x{per_job / base_per_job:.2f} vs first row)"
        )
    print(f"max RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
