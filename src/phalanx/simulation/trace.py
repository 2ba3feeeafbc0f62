"""Traces: jobs with submit times, runtimes and pod-set shapes, and the cluster they run on.

Our own trace format (for users' traces), CSV or YAML:

- CSV, one row per pod set; rows sharing ``name`` form one job (a gang). Columns:
  ``name, submit_s, runtime_s, queue, user, priority, pod_set, replicas, cpu, memory, gpu,
  gpu_models`` (``pod_set``, ``user``, ``priority``, ``gpu_models`` optional; quantities in
  Kubernetes notation: ``cpu`` 500m or 8, ``memory`` 16Gi, ``gpu`` 0.5 or 8; ``gpu_models``
  ``|``-separated allowed GPU models).
- YAML: ``jobs:`` a list of ``{name, submit_s, runtime_s, queue, user, priority, gpu_models,
  podSets: [{name, replicas, resources: {cpu, memory, nvidia.com/gpu}}]}``.

Cluster specs: the openb node CSV, or YAML ``nodes:`` a list of ``{name | prefix + count, cpu,
memory, gpus, model, labels}``. The Alibaba openb loader lives in ``openb.py``.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from phalanx.model.objects import GpuDevice, Node, PodSet
from phalanx.model.resources import Resources, cpu_milli, gpu_milli, memory_bytes

#: Node label carrying the GPU model (as NVIDIA's GPU Operator labels ``gpu.product``).
GPU_MODEL_LABEL = "nvidia.com/gpu.product"


class TraceError(ValueError):
    """A trace or cluster file that cannot be read; the message names the file, row and fix."""


@dataclass(frozen=True, slots=True)
class TraceJob:
    """One job of a trace: when it arrives, how long it runs once started, and its pods."""

    name: str
    submit_s: float
    runtime_s: float
    queue: str
    pod_sets: tuple[PodSet, ...]
    user: str = ""
    priority: int = 0
    #: GPU models the job may run on; empty means any.
    gpu_models: frozenset[str] = frozenset()

    @property
    def gpu_milli(self) -> int:
        """GPU thousandths the whole job requests."""
        return sum(ps.resources.gpu_milli * ps.replicas for ps in self.pod_sets)


@dataclass(frozen=True, slots=True)
class Trace:
    """Jobs in submission order (ties keep file order)."""

    jobs: tuple[TraceJob, ...]
    source: str = ""
    notes: tuple[str, ...] = field(default=())


def make_node(name: str, cpu: int, memory: int, gpus: int, model: str = "", **labels: str) -> Node:
    """Return a virtual node with ``gpus`` devices of ``model`` (labelled with the model)."""
    node_labels = {**labels}
    if model:
        node_labels[GPU_MODEL_LABEL] = model
    return Node(
        name,
        Resources(cpu, memory, gpus * 1000),
        tuple(GpuDevice(i, f"{name}-gpu{i}", model) for i in range(gpus)),
        node_labels,
    )


def load_nodes(path: str | Path) -> tuple[Node, ...]:
    """Return the nodes of a cluster file: the openb node CSV (``sn,cpu_milli,memory_mib,gpu,
    model``) or our YAML spec. Raises TraceError naming the problem."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        from phalanx.simulation.openb import load_openb_nodes

        return load_openb_nodes(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise TraceError(f"{path}: cannot read the cluster spec: {exc}") from exc
    items = doc.get("nodes") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise TraceError(f"{path}: expected a mapping with a 'nodes:' list")
    nodes: list[Node] = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise TraceError(f"{path}: nodes[{i}] must be a mapping")
        try:
            count = int(item.get("count", 1))
            prefix = str(item.get("prefix", item.get("name", f"node-{i}")))
            labels = {str(k): str(v) for k, v in dict(item.get("labels", {})).items()}
            for k in range(count):
                name = str(item["name"]) if "name" in item and count == 1 else f"{prefix}-{k}"
                nodes.append(
                    make_node(
                        name,
                        cpu_milli(item.get("cpu", 0)),
                        memory_bytes(item.get("memory", 0)),
                        int(item.get("gpus", 0)),
                        str(item.get("model", "")),
                        **labels,
                    )
                )
        except (TypeError, ValueError, KeyError) as exc:
            raise TraceError(f"{path}: nodes[{i}]: {exc}") from exc
    return tuple(nodes)


def load_trace(path: str | Path) -> Trace:
    """Return the trace in ``path``: our CSV or YAML format (see the module docstring).

    Raises TraceError naming the file, the row or field and the fix.
    """
    path = Path(path)
    if path.suffix.lower() in (".yaml", ".yml"):
        return _load_yaml(path)
    return _load_csv(path)


def _resources(where: str, cpu: object, memory: object, gpu: object) -> Resources:
    try:
        return Resources(
            cpu_milli(str(cpu or 0)), memory_bytes(str(memory or 0)), gpu_milli(str(gpu or 0))
        )
    except ValueError as exc:
        raise TraceError(f"{where}: {exc}") from exc


def _models(value: object) -> frozenset[str]:
    return frozenset(m.strip() for m in str(value or "").split("|") if m.strip())


def _load_csv(path: Path) -> Trace:
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise TraceError(f"{path}: {exc}") from exc
    if rows and "num_gpu" in rows[0]:
        from phalanx.simulation.openb import load_openb_pods

        return load_openb_pods(path)
    groups: dict[str, list[tuple[int, dict[str, str]]]] = {}
    for line, row in enumerate(rows, start=2):
        missing = [c for c in ("name", "submit_s", "runtime_s", "queue") if not row.get(c)]
        if missing:
            raise TraceError(f"{path}:{line}: missing {', '.join(missing)}; see docs/simulation.md")
        groups.setdefault(row["name"], []).append((line, row))
    jobs = []
    for name, items in groups.items():
        line, first = items[0]
        pod_sets = []
        for k, (row_line, row) in enumerate(items):
            where = f"{path}:{row_line}"
            pod_sets.append(
                PodSet(
                    row.get("pod_set") or f"ps{k}",
                    int(row.get("replicas") or 1),
                    _resources(where, row.get("cpu"), row.get("memory"), row.get("gpu")),
                )
            )
        try:
            jobs.append(
                TraceJob(
                    name,
                    float(first["submit_s"]),
                    float(first["runtime_s"]),
                    first["queue"],
                    tuple(pod_sets),
                    first.get("user") or "",
                    int(first.get("priority") or 0),
                    _models(first.get("gpu_models")),
                )
            )
        except ValueError as exc:
            raise TraceError(f"{path}:{line}: {exc}") from exc
    return Trace(_ordered(jobs), str(path))


def _load_yaml(path: Path) -> Trace:
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise TraceError(f"{path}: cannot read the trace: {exc}") from exc
    items = doc.get("jobs") if isinstance(doc, dict) else None
    if not isinstance(items, list):
        raise TraceError(f"{path}: expected a mapping with a 'jobs:' list")
    jobs = []
    for i, item in enumerate(items):
        where = f"{path}: jobs[{i}]"
        if not isinstance(item, dict) or "name" not in item:
            raise TraceError(f"{where}: must be a mapping with a name")
        pod_sets = []
        for k, ps in enumerate(item.get("podSets") or []):
            res = dict(ps.get("resources") or {})
            pod_sets.append(
                PodSet(
                    str(ps.get("name", f"ps{k}")),
                    int(ps.get("replicas", 1)),
                    _resources(
                        f"{where}.podSets[{k}]",
                        res.get("cpu"),
                        res.get("memory"),
                        res.get("nvidia.com/gpu"),
                    ),
                )
            )
        if not pod_sets:
            raise TraceError(f"{where}: needs at least one entry in podSets")
        try:
            jobs.append(
                TraceJob(
                    str(item["name"]),
                    float(item.get("submit_s", 0)),
                    float(item.get("runtime_s", 0)),
                    str(item.get("queue", "default")),
                    tuple(pod_sets),
                    str(item.get("user", "")),
                    int(item.get("priority", 0)),
                    _models(item.get("gpu_models")),
                )
            )
        except (TypeError, ValueError) as exc:
            raise TraceError(f"{where}: {exc}") from exc
    return Trace(_ordered(jobs), str(path))


def _ordered(jobs: Sequence[TraceJob]) -> tuple[TraceJob, ...]:
    return tuple(sorted(jobs, key=lambda j: j.submit_s))
