"""Workload variants of a trace, built the way Weng et al. (ATC '23) build theirs from the openb
default trace: the same pods, resampled so that one kind of workload is a larger or smaller
share. Used to check that a placement policy wins on more than the one mix it was developed on.

Families (``<family><P>``, ``P`` a percentage):

- ``cpu<P>``: GPU jobs kept; CPU-only jobs drawn from the trace's CPU-only jobs until they
  request ``P`` % of all CPU the trace requests (the openb default: about 22 %).
- ``gpushare<P>``: CPU-only jobs kept; as many GPU jobs as the trace has, ``P`` % of them drawn
  from its GPU-sharing (fractional) jobs, the rest from its other GPU jobs (default: 44 %).
- ``multigpu<P>``: every job kept; copies of multi-GPU jobs added until multi-GPU jobs request
  ``P`` % of all GPU thousandths (default: 7 %).
- ``gpuspec<P>``: every job kept; ``P`` % of the GPU jobs get a GPU model constraint: one model,
  drawn with probability proportional to its GPU count among the models whose nodes could
  hold the job alone (default: none).

Draws cycle through seeded permutations of the source pool (every job is used once before any
is used twice), so a variant is a fixed function of (trace, nodes, name, seed); copies are named
``<job>-<family><k>`` and keep the source job's submit time (the list stays in submit order).
Randomness lives here, seeded; the scheduling core stays pure.
"""

from __future__ import annotations

import csv
import random
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from phalanx.model.objects import Node
from phalanx.simulation.trace import GPU_MODEL_LABEL, TraceError, TraceJob

#: Families and the proportions the variant table uses (percent).
FAMILIES: dict[str, tuple[int, ...]] = {
    "cpu": (10, 35, 50),
    "gpushare": (20, 60, 80, 100),
    "multigpu": (20, 35, 50),
    "gpuspec": (10, 20, 33),
}

#: Seed of the variant draws (a variant is a fixed trace, like the published variant files).
VARIANT_SEED = 2023

_NAME = re.compile(r"^(cpu|gpushare|multigpu|gpuspec)(\d+)$")


@dataclass(frozen=True, slots=True)
class Variant:
    """One generated workload: its name, its jobs (submit order) and what it contains."""

    name: str
    jobs: tuple[TraceJob, ...]

    def mix(self) -> dict[str, float]:
        """The shares that define the families, in percent: CPU-only jobs' CPU of all CPU,
        GPU-sharing jobs of GPU jobs, multi-GPU jobs' GPU of all GPU, constrained GPU jobs."""
        return workload_mix(self.jobs)


def variant_names() -> list[str]:
    """Every variant of the table, family by family, ``default`` first."""
    return ["default"] + [f"{f}{p}" for f, ps in FAMILIES.items() for p in ps]


def _kind(job: TraceJob) -> str:
    milli = [ps.resources.gpu_milli for ps in job.pod_sets]
    if not any(milli):
        return "cpu"
    if max(milli) > 1000:
        return "multi"
    if len(job.pod_sets) == 1 and job.pod_sets[0].replicas == 1 and milli[0] < 1000:
        return "share"
    return "one"


def _cpu(job: TraceJob) -> int:
    return sum(ps.resources.cpu_milli * ps.replicas for ps in job.pod_sets)


def workload_mix(jobs: Sequence[TraceJob]) -> dict[str, float]:
    """See ``Variant.mix``."""
    kinds = [_kind(j) for j in jobs]
    cpu_all = sum(_cpu(j) for j in jobs) or 1
    gpu_all = sum(j.gpu_milli for j in jobs) or 1
    gpu_jobs = [j for j, k in zip(jobs, kinds, strict=True) if k != "cpu"]
    n_gpu = len(gpu_jobs) or 1
    return {
        "cpu": 100.0
        * sum(_cpu(j) for j, k in zip(jobs, kinds, strict=True) if k == "cpu")
        / cpu_all,
        "gpushare": 100.0 * kinds.count("share") / n_gpu,
        "multigpu": 100.0
        * sum(j.gpu_milli for j, k in zip(jobs, kinds, strict=True) if k == "multi")
        / gpu_all,
        "gpuspec": 100.0 * sum(1 for j in gpu_jobs if j.gpu_models) / n_gpu,
    }


def _draws(pool: Sequence[TraceJob], rng: random.Random) -> Iterator[TraceJob]:
    """Jobs of ``pool`` in seeded permutations, one after another, forever."""
    while True:
        order = list(pool)
        rng.shuffle(order)
        yield from order


def make_variant(
    name: str, jobs: Sequence[TraceJob], nodes: Sequence[Node], seed: int = VARIANT_SEED
) -> Variant:
    """Return the variant ``name`` (``default`` or ``<family><P>``, see the module docstring)
    of ``jobs`` on ``nodes``.

    Raises ValueError naming the valid forms, or when the trace has no job of the kind the
    family needs.
    """
    if name == "default":
        return Variant(name, tuple(jobs))
    m = _NAME.match(name)
    if m is None:
        raise ValueError(
            f"unknown workload variant {name!r}; use default or <family><percent> with family "
            f"one of {', '.join(FAMILIES)} (e.g. gpushare60)"
        )
    family, pct = m.group(1), int(m.group(2))
    if pct > 100:
        raise ValueError(f"variant {name!r}: the percentage must be at most 100")
    share = pct / 100.0
    rng = random.Random(f"{seed}:{name}")
    kinds = [_kind(j) for j in jobs]
    by_kind: dict[str, list[TraceJob]] = {}
    for job, kind in zip(jobs, kinds, strict=True):
        by_kind.setdefault(kind, []).append(job)

    def pool(*names: str) -> list[TraceJob]:
        out = [j for k in names for j in by_kind.get(k, [])]
        if not out:
            raise ValueError(f"variant {name!r}: the trace has no {'/'.join(names)} jobs")
        return out

    copies = 0

    def copy(job: TraceJob) -> TraceJob:
        nonlocal copies
        copies += 1
        return replace(job, name=f"{job.name}-{family}{copies}")

    out: list[TraceJob]
    if family == "cpu":
        gpu_jobs = [j for j, k in zip(jobs, kinds, strict=True) if k != "cpu"]
        gpu_cpu = sum(_cpu(j) for j in gpu_jobs)
        target = share / (1.0 - share) * gpu_cpu if share < 1 else float("inf")
        out = list(gpu_jobs)
        total = 0
        draws = _draws(pool("cpu"), rng) if share else iter(())
        for job in draws:
            if total + _cpu(job) / 2 > target:
                break
            total += _cpu(job)
            out.append(copy(job))
    elif family == "gpushare":
        n_gpu = sum(1 for k in kinds if k != "cpu")
        n_share = round(share * n_gpu)
        out = [j for j, k in zip(jobs, kinds, strict=True) if k == "cpu"]
        if n_share:
            shares = _draws(pool("share"), rng)
            out += [copy(next(shares)) for _ in range(n_share)]
        if n_gpu - n_share:
            others = _draws(pool("one", "multi"), rng)
            out += [copy(next(others)) for _ in range(n_gpu - n_share)]
    elif family == "multigpu":
        out = list(jobs)
        multi = sum(j.gpu_milli for j, k in zip(jobs, kinds, strict=True) if k == "multi")
        rest = sum(j.gpu_milli for j in jobs) - multi
        target = share / (1.0 - share) * rest if share < 1 else float("inf")
        for job in _draws(pool("multi"), rng):
            if multi + job.gpu_milli / 2 > target:
                break
            multi += job.gpu_milli
            out.append(copy(job))
    else:  # gpuspec
        out = list(jobs)
        gpu_idx = [i for i, k in enumerate(kinds) if k != "cpu"]
        chosen = rng.sample(gpu_idx, round(share * len(gpu_idx)))
        for i in sorted(chosen):
            models = _hosting_models(out[i], nodes)
            if not models:
                continue
            names = sorted(models)
            pick = rng.choices(names, weights=[models[n] for n in names])[0]
            out[i] = replace(out[i], gpu_models=frozenset({pick}))
    out.sort(key=lambda j: j.submit_s)
    return Variant(name, tuple(out))


def _hosting_models(job: TraceJob, nodes: Sequence[Node]) -> dict[str, int]:
    """GPU models whose nodes could hold every pod of ``job`` alone, with their GPU counts."""
    out: dict[str, int] = {}
    for node in nodes:
        model = node.labels.get(GPU_MODEL_LABEL, "")
        if not model or not node.gpus:
            continue
        cap = node.allocatable
        if all(
            ps.resources.cpu_milli <= cap.cpu_milli
            and ps.resources.memory_bytes <= cap.memory_bytes
            and ps.resources.gpu_milli <= len(node.gpus) * 1000
            for ps in job.pod_sets
        ):
            out[model] = out.get(model, 0) + len(node.gpus)
    return out


_MIB = 1 << 20


def write_openb_csv(jobs: Sequence[TraceJob], path: str | Path) -> None:
    """Write one-pod ``jobs`` as an openb pod list (``phalanx simulate`` reads it back).

    Raises TraceError for a job that is not one pod (the openb format has one pod a row).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(
            [
                *("name", "cpu_milli", "memory_mib", "num_gpu", "gpu_milli", "gpu_spec"),
                *("qos", "creation_time", "deletion_time"),
            ]
        )
        for job in jobs:
            if len(job.pod_sets) != 1 or job.pod_sets[0].replicas != 1:
                raise TraceError(f"{path}: job {job.name} is not one pod; openb has one a row")
            r = job.pod_sets[0].resources
            num, milli = (
                (r.gpu_milli // 1000, 1000)
                if r.gpu_milli >= 1000
                else ((1, r.gpu_milli) if r.gpu_milli else (0, 0))
            )
            w.writerow(
                [
                    job.name,
                    r.cpu_milli,
                    r.memory_bytes // _MIB,
                    num,
                    milli,
                    "|".join(sorted(job.gpu_models)),
                    _QOS_BY_QUEUE.get(job.queue, "BE"),
                    f"{job.submit_s:g}",
                    f"{job.submit_s + job.runtime_s:g}",
                ]
            )


_QOS_BY_QUEUE = {"guaranteed": "Guaranteed", "ls": "LS", "burstable": "Burstable", "be": "BE"}
