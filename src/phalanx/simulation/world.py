"""The simulated cluster's configuration: nodes, flavors and queues for a trace.

GPU model restrictions become flavors: every distinct set of allowed models gets a flavor
``models-<key>`` selecting the nodes of those models (through one label per set on the nodes),
and a job with that restriction goes to ``<queue>-models-<key>``, a copy of its queue whose only
flavor is that one (same quotas, same cohort). ``<key>`` is the models, lowercased, with
anything but letters and digits as ``-``, joined by ``-`` (names the control plane accepts). Jobs without a restriction use the queue as given. Without a queues
file every queue the trace names is created with unlimited quota on the ``default`` flavor
(all nodes), in one cohort.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace

from phalanx.model.objects import (
    FlavorQuotas,
    JobSpec,
    Node,
    PreemptionPolicy,
    Queue,
    ResourceFlavor,
    ResourceQuota,
)
from phalanx.model.resources import CPU, GPU, MEMORY, UNLIMITED
from phalanx.simulation.trace import GPU_MODEL_LABEL, TraceJob

DEFAULT_FLAVOR = "default"
_MODELS_LABEL_PREFIX = "sim.phalanx.dev/models-"


@dataclass(frozen=True, slots=True)
class World:
    """Everything the scheduler sees that does not change during a run."""

    nodes: tuple[Node, ...]
    flavors: tuple[ResourceFlavor, ...]
    queues: tuple[Queue, ...]


def _models_key(models: frozenset[str]) -> str:
    return "-".join(sorted(re.sub(r"[^a-z0-9]+", "-", m.lower()).strip("-") for m in models))


def unlimited_queue(
    name: str, flavor: str = DEFAULT_FLAVOR, cohort: str = "sim", *, may_preempt: bool = True
) -> Queue:
    """A queue with unlimited quota of every resource on ``flavor``; ``may_preempt=False``
    (arrival-only runs) turns preemption off and leaves the queue outside any cohort."""
    quota = ResourceQuota(UNLIMITED)
    return Queue(
        name,
        (FlavorQuotas(flavor, {CPU: quota, MEMORY: quota, GPU: quota}),),
        cohort=cohort if may_preempt else "",
        within_queue_preemption=(
            PreemptionPolicy.LOWER_PRIORITY if may_preempt else PreemptionPolicy.NEVER
        ),
        reclaim_within_cohort=may_preempt,
    )


def build_world(
    nodes: Sequence[Node],
    jobs: Sequence[TraceJob],
    queues: Sequence[Queue] = (),
    flavors: Sequence[ResourceFlavor] = (),
    *,
    may_preempt: bool = True,
) -> World:
    """Return nodes (with model-set labels), flavors and queues for running ``jobs``;
    ``may_preempt`` applies to the queues created here (not to those given)."""
    model_sets = sorted({j.gpu_models for j in jobs if j.gpu_models}, key=_models_key)
    labelled = []
    for node in nodes:
        extra = {
            _MODELS_LABEL_PREFIX + _models_key(s): "true"
            for s in model_sets
            if node.labels.get(GPU_MODEL_LABEL) in s
        }
        labelled.append(replace(node, labels={**node.labels, **extra}) if extra else node)
    all_flavors = {f.name: f for f in flavors}
    all_flavors.setdefault(DEFAULT_FLAVOR, ResourceFlavor(DEFAULT_FLAVOR))
    for s in model_sets:
        key = _models_key(s)
        all_flavors[f"models-{key}"] = ResourceFlavor(
            f"models-{key}", {_MODELS_LABEL_PREFIX + key: "true"}
        )
    by_name = {q.name: q for q in queues}
    for job in jobs:
        if job.queue not in by_name:
            by_name[job.queue] = unlimited_queue(job.queue, may_preempt=may_preempt)
    for job in jobs:
        if job.gpu_models:
            name = queue_for(job)
            if name not in by_name:
                base = by_name[job.queue]
                quotas = base.flavors[0].resources if base.flavors else {}
                flavor = f"models-{_models_key(job.gpu_models)}"
                by_name[name] = replace(base, name=name, flavors=(FlavorQuotas(flavor, quotas),))
    return World(
        tuple(labelled),
        tuple(sorted(all_flavors.values(), key=lambda f: f.name)),
        tuple(sorted(by_name.values(), key=lambda q: q.name)),
    )


def queue_for(job: TraceJob) -> str:
    """The queue a trace job is submitted to (see the module docstring)."""
    return f"{job.queue}-models-{_models_key(job.gpu_models)}" if job.gpu_models else job.queue


def job_labels(job: TraceJob) -> dict[str, str]:
    """The labels of a trace job's Job: its user, if the trace names one."""
    return {"sim.phalanx.dev/user": job.user} if job.user else {}


def job_spec(job: TraceJob) -> JobSpec:
    """The JobSpec the scheduler sees for a trace job."""
    labels = job_labels(job)
    return JobSpec(job.name, queue_for(job), job.pod_sets, priority=job.priority, labels=labels)
