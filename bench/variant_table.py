"""The variant table: every generated workload variant (``phalanx.simulation.variants``) x
placement policies x seeds, arrival-only at 130 % with the pods shuffled (the published
methodology), mean allocation at 100 % and 130 % of arrived load, the default - fgd delta and
the seeds on which the default wins; plus the default trace against the published figures and
each policy's placement speed (jobs/s, and against best-fit on the same variant).

Each finished run is appended to ``<out>/runs.csv``; a rerun skips the runs already there, so
an interrupted table resumes, and ``--table-only`` prints what has run.

    .venv/bin/python bench/variant_table.py --seeds 42-51 --out /tmp/variants [--workers 2]
    .venv/bin/python bench/variant_table.py --write-csv DIR   # the variants as openb pod lists
"""

from __future__ import annotations

import argparse
import csv
import os
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from phalanx.simulation.api import load_published
from phalanx.simulation.arrival import run_arrival
from phalanx.simulation.openb import load_openb_nodes, load_openb_pods
from phalanx.simulation.variants import make_variant, variant_names, write_openb_csv
from phalanx.simulation.world import build_world

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "openb"
POLICIES = ["best-fit", "fgd", "fragmentation-aware"]
DEFAULT = "fragmentation-aware"
FIELDS = ["variant", "policy", "seed", "alloc100", "alloc130", "jobs", "wall_s"]


def _seeds(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def _run(data: Path, variant: str, policy: str, seed: int) -> dict[str, str]:
    nodes = load_openb_nodes(data / "openb_node_list_gpu_node.csv")
    trace = load_openb_pods(data / "openb_pod_list_default.csv")
    jobs = make_variant(variant, trace.jobs, nodes).jobs
    world = build_world(nodes, jobs, may_preempt=False)
    started = time.process_time()
    result = run_arrival(world, jobs, policy, seed, shuffle=True)
    wall = time.process_time() - started
    return {
        "variant": variant,
        "policy": policy,
        "seed": str(seed),
        "alloc100": f"{result.allocation_at(100):.4f}",
        "alloc130": f"{result.allocation_at(130):.4f}",
        "jobs": str(result.placed + result.failed),
        "wall_s": f"{wall:.3f}",
    }


def _load(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def render(
    rows: list[dict[str, str]], variants: list[str], published: dict[tuple[str, int], float]
) -> str:
    """The table as Markdown from the per-run rows."""
    by: dict[tuple[str, str], dict[int, dict[str, str]]] = {}
    for r in rows:
        by.setdefault((r["variant"], r["policy"]), {})[int(r["seed"])] = r
    head = (
        "| variant | seeds | best-fit @100 | fgd @100 | default @100 | Δ @100 | wins @100 "
        "| best-fit @130 | fgd @130 | default @130 | Δ @130 | wins @130 |"
    )
    lines = [head, "|" + "---|" * 12]
    speed = ["", "| variant | policy | jobs/s (CPU time) | × best-fit |", "|---|---|---:|---:|"]
    for v in variants:
        runs = {p: by.get((v, p), {}) for p in POLICIES}
        common = sorted(set(runs["fgd"]) & set(runs[DEFAULT]))
        cells = [v, str(len(common))]
        for load in (100, 130):
            key = f"alloc{load}"
            means = [_mean([float(r[key]) for r in runs[p].values()]) for p in POLICIES]
            d = [float(runs[DEFAULT][s][key]) - float(runs["fgd"][s][key]) for s in common]
            wins = sum(1 for x in d if x > 0)
            ties = sum(1 for x in d if x == 0)
            cells += [f"{m:.2f}" for m in means]
            cells += [
                f"{_mean(d):+.2f}" if d else "-",
                f"{wins}/{len(d)}" + (f" ({ties} tied)" if ties else ""),
            ]
        lines.append("| " + " | ".join(cells) + " |")
        bf = runs["best-fit"]
        bf_rate = _mean([int(r["jobs"]) / float(r["wall_s"]) for r in bf.values()]) if bf else 0
        for p in POLICIES:
            if runs[p]:
                rate = _mean([int(r["jobs"]) / float(r["wall_s"]) for r in runs[p].values()])
                ratio = f"{bf_rate / rate:.2f}" if bf_rate else "-"
                speed.append(f"| {v} | {p} | {rate:,.0f} | {ratio} |")
    if published:
        lines += ["", "| default trace | @100 | @130 |", "|---|---:|---:|"]
        for p in POLICIES:
            runs = by.get(("default", p), {})
            if runs:
                lines.append(
                    f"| {p} (ours) | {_mean([float(r['alloc100']) for r in runs.values()]):.2f} "
                    f"| {_mean([float(r['alloc130']) for r in runs.values()]):.2f} |"
                )
        for p in ("best-fit", "fgd"):
            if (p, 100) in published:
                lines.append(
                    f"| {p} (published) | {published[(p, 100)]:.2f} | {published[(p, 130)]:.2f} |"
                )
    return "\n".join(lines + speed) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seeds", default="42-51")
    parser.add_argument("--variants", default=",".join(variant_names()))
    parser.add_argument("--policies", default=",".join(POLICIES))
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--out", type=Path, default=Path("/tmp/variants"))
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--table-only", action="store_true")
    parser.add_argument("--write-csv", type=Path, help="write each variant as an openb pod list")
    args = parser.parse_args()
    variants = args.variants.split(",")
    if args.write_csv:
        nodes = load_openb_nodes(args.data / "openb_node_list_gpu_node.csv")
        trace = load_openb_pods(args.data / "openb_pod_list_default.csv")
        for v in variants:
            variant = make_variant(v, trace.jobs, nodes)
            write_openb_csv(variant.jobs, args.write_csv / f"openb_pod_list_{v}.csv")
            mix = ", ".join(f"{k} {x:.1f}%" for k, x in variant.mix().items())
            print(f"{v}: {len(variant.jobs)} pods; {mix}")
        return
    args.out.mkdir(parents=True, exist_ok=True)
    runs_csv = args.out / "runs.csv"
    done = {(r["variant"], r["policy"], r["seed"]) for r in _load(runs_csv)}
    todo = [
        (v, p, s)
        for s in _seeds(args.seeds)  # seed by seed: an interrupted table covers every variant
        for v in variants
        for p in args.policies.split(",")
        if (v, p, str(s)) not in done
    ]
    if not args.table_only and todo:
        new = not runs_csv.exists()
        with runs_csv.open("a", newline="") as f:
            writer = csv.DictWriter(f, FIELDS)
            if new:
                writer.writeheader()
            with ProcessPoolExecutor(max(1, args.workers)) as pool:
                futures = [pool.submit(_run, args.data, v, p, s) for v, p, s in todo]
                for i, future in enumerate(futures, 1):
                    row = future.result()
                    writer.writerow(row)
                    f.flush()
                    os.fsync(f.fileno())
                    print(f"[{i}/{len(todo)}] {row}", flush=True)
    published_csv = args.data / "published_fgd_allocation_default.csv"
    published = load_published(str(published_csv)) if published_csv.exists() else {}
    table = render(_load(runs_csv), variants, published)
    (args.out / "table.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
