"""The Python API of the simulator: ``simulate(SimulationRequest) -> SimulationReport``.

Loads the trace, the cluster and the queues, runs every (policy, seed) pair in the chosen mode
(in parallel worker processes when asked; results do not depend on it) and collects the
figures. ``phalanx simulate`` is a thin layer over this.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Literal

import yaml

from phalanx.model.objects import Queue, ResourceFlavor
from phalanx.model.specs import SpecError, parse_manifest
from phalanx.scheduling.plugins import POLICIES
from phalanx.simulation.arrival import ArrivalResult, run_arrival
from phalanx.simulation.full import FullResult, run_full
from phalanx.simulation.openb import load_openb_pods, parse_qos_overrides
from phalanx.simulation.session_replay import run_session_replay
from phalanx.simulation.trace import Trace, TraceError, TraceJob, load_nodes, load_trace
from phalanx.simulation.world import World, build_world

Mode = Literal["arrival", "full"]
#: Full mode's engines: the production control plane (default), or the fast session replay.
Engine = Literal["controllers", "session"]

#: Our policy names -> the policy names in the published openb results.
PUBLISHED_NAMES: Mapping[str, str] = {
    "random": "Random",
    "dot-product": "DotProd",
    "gpu-packing": "GpuPacking",
    "best-fit": "BestFit",
    "fgd": "FGD",
}


@dataclass(frozen=True, slots=True)
class SimulationRequest:
    """What to simulate. ``nodes``: a cluster file (openb node CSV or our YAML); ``queues``: a
    YAML file of Queue and ResourceFlavor manifests (default: one unlimited queue per trace
    queue); ``order``: arrival-only job order, ``creation`` or ``shuffled`` (seeded);
    ``engine``: full mode through the production control plane (``controllers``, full.py) or
    the faster approximation without it (``session``, session_replay.py)."""

    trace: str
    nodes: str
    policies: tuple[str, ...] = ("fragmentation-aware",)
    seeds: tuple[int, ...] = (42,)
    mode: Mode = "arrival"
    engine: Engine = "controllers"
    queues: str | None = None
    order: Literal["creation", "shuffled"] = "creation"
    inflation: float = 1.3
    score_weights: Mapping[str, float] = field(default_factory=dict)
    qos: tuple[str, ...] = ()
    limit: int | None = None
    workers: int = 1
    published: str | None = None


@dataclass(frozen=True, slots=True)
class SimulationReport:
    """Every run's figures, plus published figures to compare with (policy, load) -> %."""

    request: SimulationRequest
    arrival: tuple[ArrivalResult, ...] = ()
    full: tuple[FullResult, ...] = ()
    published: Mapping[tuple[str, int], float] = field(default_factory=dict)

    def mean_allocation(self, policy: str, load_pct: int) -> float:
        """Mean over seeds of the allocation % at ``load_pct`` % arrived load."""
        values = [r.allocation_at(load_pct) for r in self.arrival if r.policy == policy]
        return sum(values) / len(values) if values else 0.0

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict of the whole report."""
        return {
            "request": asdict(self.request),
            "arrival": [asdict(r) for r in self.arrival],
            "full": [asdict(r) for r in self.full],
            "published": [
                {"policy": p, "arrived_load_pct": load, "gpu_allocation_pct": v}
                for (p, load), v in sorted(self.published.items())
            ],
        }


def load_queues(path: str) -> tuple[list[Queue], list[ResourceFlavor]]:
    """Return the Queue and ResourceFlavor manifests of a YAML file (other kinds ignored).

    Raises TraceError naming the file and the problem.
    """
    try:
        docs = [d for d in yaml.safe_load_all(Path(path).read_text()) if d]
    except (OSError, yaml.YAMLError) as exc:
        raise TraceError(f"{path}: cannot read the queues file: {exc}") from exc
    queues: list[Queue] = []
    flavors: list[ResourceFlavor] = []
    for doc in docs:
        try:
            obj = parse_manifest(doc, path)
        except SpecError as exc:
            raise TraceError(str(exc)) from exc
        if isinstance(obj, Queue):
            queues.append(obj)
        elif isinstance(obj, ResourceFlavor):
            flavors.append(obj)
    return queues, flavors


def load_published(path: str, workload: str | None = None) -> dict[tuple[str, int], float]:
    """Mean published allocation % by (our policy name, arrived load %): the long format of
    the openb ``published_fgd_allocation_default.csv`` or the FGD artifact's wide per-seed table
    (rows of ``workload``, a trace file's stem); see ``report.read_published``."""
    from phalanx.simulation.report import read_published

    return read_published(path, {v: k for k, v in PUBLISHED_NAMES.items()}, workload)


def prepare(request: SimulationRequest) -> tuple[World, tuple[TraceJob, ...]]:
    """Load the trace, cluster and queues of ``request``; raises TraceError or ValueError."""
    if request.engine not in ("controllers", "session"):
        raise ValueError(f"unknown engine {request.engine!r}; valid: controllers, session")
    for policy in request.policies:
        if policy not in POLICIES:
            raise ValueError(
                f"unknown placement policy {policy!r}; valid: {', '.join(sorted(POLICIES))}"
            )
    trace: Trace
    if request.qos:
        trace = load_openb_pods(request.trace, parse_qos_overrides(list(request.qos)))
    else:
        trace = load_trace(request.trace)
    jobs = trace.jobs[: request.limit] if request.limit else trace.jobs
    nodes = load_nodes(request.nodes)
    queues, flavors = load_queues(request.queues) if request.queues else ([], [])
    world = build_world(nodes, jobs, queues, flavors, may_preempt=request.mode == "full")
    return world, jobs


def _run_one(request: SimulationRequest, policy: str, seed: int) -> ArrivalResult | FullResult:
    world, jobs = prepare(request)
    if request.mode == "arrival":
        return run_arrival(
            world,
            jobs,
            policy,
            seed,
            inflation=request.inflation,
            shuffle=request.order == "shuffled",
            score_weights=request.score_weights,
        )
    if request.engine == "session":
        return run_session_replay(world, jobs, policy, seed, score_weights=request.score_weights)
    return run_full(world, jobs, policy, seed, score_weights=request.score_weights)


def simulate(
    request: SimulationRequest, progress: Callable[[int, int], None] | None = None
) -> SimulationReport:
    """Run every (policy, seed) of ``request`` and return the report.

    Raises TraceError (bad trace, cluster or queues file) or ValueError (unknown policy).
    """
    prepare(request)  # fail fast, in this process, on bad input
    runs = [(p, s) for p in request.policies for s in request.seeds]
    results: list[ArrivalResult | FullResult] = []
    if request.workers > 1 and len(runs) > 1:
        with ProcessPoolExecutor(max_workers=request.workers) as pool:
            futures = [pool.submit(_run_one, request, p, s) for p, s in runs]
            for i, future in enumerate(futures):
                results.append(future.result())
                if progress is not None:
                    progress(i + 1, len(runs))
    else:
        for i, (p, s) in enumerate(runs):
            results.append(_run_one(request, p, s))
            if progress is not None:
                progress(i + 1, len(runs))
    published = (
        load_published(request.published, Path(request.trace).stem) if request.published else {}
    )
    return SimulationReport(
        request,
        tuple(r for r in results if isinstance(r, ArrivalResult)),
        tuple(r for r in results if isinstance(r, FullResult)),
        published,
    )


def summary_rows(report: SimulationReport) -> list[dict[str, str]]:
    """One row per policy for the side-by-side table (means over seeds)."""
    rows: list[dict[str, str]] = []
    policies: Sequence[str] = report.request.policies
    if report.request.mode == "arrival":
        for policy in policies:
            runs = [r for r in report.arrival if r.policy == policy]
            row = {
                "policy": policy,
                "seeds": str(len(runs)),
                "alloc@100%": f"{report.mean_allocation(policy, 100):.2f}",
                "alloc@130%": f"{report.mean_allocation(policy, 130):.2f}",
                "frag%": f"{sum(r.fragmentation_pct for r in runs) / len(runs):.2f}",
                "failed": f"{sum(r.failed for r in runs) / len(runs):.0f}",
            }
            if report.published:
                for load in (100, 130):
                    value = report.published.get((policy, load))
                    row[f"published@{load}%"] = f"{value:.2f}" if value is not None else "-"
            rows.append(row)
        if report.published and "fgd" not in policies and ("fgd", 100) in report.published:
            row = {"policy": "FGD (published)", "seeds": "10"}
            row["alloc@100%"] = row["published@100%"] = f"{report.published[('fgd', 100)]:.2f}"
            row["alloc@130%"] = row["published@130%"] = f"{report.published[('fgd', 130)]:.2f}"
            row["frag%"] = row["failed"] = "-"
            rows.append(row)
        return rows
    for policy in policies:
        fulls = [r for r in report.full if r.policy == policy]
        n = len(fulls)

        rows.append(
            {
                "policy": policy,
                "seeds": str(n),
                "jct mean s": f"{_mean([r.jct_s.mean for r in fulls]):.0f}",
                "jct p50 s": f"{_mean([r.jct_s.p50 for r in fulls]):.0f}",
                "jct p99 s": f"{_mean([r.jct_s.p99 for r in fulls]):.0f}",
                "wait mean s": f"{_mean([r.queue_delay_s.mean for r in fulls]):.0f}",
                "makespan s": f"{_mean([r.makespan_s for r in fulls]):.0f}",
                "gpu alloc %": f"{_mean([r.gpu_allocation_pct for r in fulls]):.2f}",
                "jain": f"{_mean([r.jain_fairness for r in fulls]):.3f}",
                "preemptions": f"{_mean([float(r.preemptions) for r in fulls]):.0f}",
                "unfinished": f"{_mean([float(r.unfinished) for r in fulls]):.0f}",
            }
        )
    return rows


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
