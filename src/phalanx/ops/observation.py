"""What the doctor and the estimates look at: one read of the control plane's read side.

``observe(plane)`` reads jobs (with events for those whose history matters: failed, restarted,
preempted), queues with their parsed specs, flavors, nodes, Services, PipelineRuns and measured
GPU utilisation, at one moment. The analyzers
(doctor.py, workloads.py) are pure functions of an ``Observation``; tests build one by hand.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from phalanx.controllers.plane import ControlPlane
from phalanx.controllers.views import JobView, NodeView, QueueView
from phalanx.model.objects import JobPhase, Node, Queue, ResourceFlavor
from phalanx.model.resources import GPU_MILLI_PER_DEVICE
from phalanx.ops.gpu_usage import DeviceUsage, UsageSources, read_usage
from phalanx.ops.workloads import RunFacts, ServiceFacts, read_runs, read_services


@dataclass(frozen=True, slots=True)
class Observation:
    """Jobs, queues, flavors and nodes as read at ``now`` (epoch seconds of the plane's
    clock). ``queue_specs``: parsed queues by name (quotas, cohort); ``flavors``: parsed."""

    now: float
    jobs: tuple[JobView, ...]
    queues: tuple[QueueView, ...]
    queue_specs: Mapping[str, Queue]
    flavors: tuple[ResourceFlavor, ...]
    nodes: tuple[NodeView, ...]
    #: Names of jobs whose start estimate is known: name → (estimated start, waits on, the
    #: load of the higher-priority work submitted lately: ``Estimate.higher_priority_load``).
    estimates: Mapping[str, tuple[float | None, str, float]] = field(default_factory=dict)
    #: Services with their replicas, and PipelineRuns with their steps.
    services: tuple[ServiceFacts, ...] = ()
    runs: tuple[RunFacts, ...] = ()
    #: Measured utilisation of GPU devices (gpu_usage.device_key): NVML or DCGM.
    gpu_usage: Mapping[str, DeviceUsage] = field(default_factory=dict)

    def job(self, name: str) -> JobView | None:
        """The job named ``name``, if observed."""
        return next((j for j in self.jobs if j.name == name), None)

    def node(self, name: str) -> NodeView | None:
        """The node named ``name``, if observed."""
        return next((n for n in self.nodes if n.node.name == name), None)

    def flavor_nodes(self, flavor: str) -> list[NodeView]:
        """Nodes whose labels match ``flavor`` (ready or not)."""
        spec = next((f for f in self.flavors if f.name == flavor), None)
        if spec is None:
            return []
        return [n for n in self.nodes if spec.matches(n.node.labels)]


def free_gpus(view: NodeView) -> int:
    """Whole GPUs of a node nobody uses (0 for a node that is not ready or quarantined)."""
    node: Node = view.node
    if not node.is_ready or node.is_quarantined:
        return 0
    return sum(1 for d in node.gpus if view.device_used_milli.get(d.index, 0) == 0)


def node_gpus(view: NodeView) -> int:
    """GPUs of a node."""
    return len(view.node.gpus)


def gpu_count(milli: int) -> float:
    """Thousandths of a device as devices."""
    return milli / GPU_MILLI_PER_DEVICE


#: Phases whose history (events) the doctor reads on a scan.
_HISTORY = (JobPhase.FAILED, JobPhase.PREEMPTED)


def observe(
    plane: ControlPlane,
    *,
    jobs: Sequence[str] | None = None,
    recent_s: float = 86_400.0,
    usage: UsageSources | None = None,
) -> Observation:
    """Read the control plane once. ``jobs``: only these jobs (with their events), else every
    job that is active, or ended within ``recent_s`` (events only for those with a history of
    failures or preemptions), with Services, PipelineRuns and measured GPU utilisation
    (``usage``; default: from the environment, see gpu_usage.py). Raises NotFoundError for a
    job in ``jobs`` that does not exist."""
    now = plane.clock()
    queries = plane.queries
    if jobs is not None:
        views = tuple(queries.get_job(name) for name in jobs)
    else:
        picked: list[JobView] = []
        for view in queries.list_jobs():
            if view.phase.is_terminal and (view.finished_at or 0.0) < now - recent_s:
                continue
            # Failed, restarted or preempted (pending again after an attempt): with events.
            has_history = view.phase in _HISTORY or view.restarts or view.attempt
            picked.append(queries.get_job(view.name) if has_history else view)
        views = tuple(picked)
    return Observation(
        now=now,
        jobs=views,
        queues=tuple(queries.list_queues()),
        queue_specs={q.name: q for q in plane.specs.queues(plane.store)},
        flavors=tuple(plane.specs.flavors(plane.store)),
        nodes=tuple(queries.list_nodes()),
        services=read_services(plane),
        runs=read_runs(plane),
        gpu_usage=read_usage(usage or UsageSources.from_env()),
    )
