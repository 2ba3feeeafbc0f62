"""Fluent builders for domain objects and snapshots (Kueue's MakeWorkload(...).Obj() style)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from phalanx.model.objects import (
    NODE_TOPOLOGY,
    DeviceShare,
    FlavorQuotas,
    GpuDevice,
    JobSpec,
    Node,
    PodPlacement,
    PodSet,
    PreemptionPolicy,
    Queue,
    ResourceFlavor,
    ResourceQuota,
    RestartPolicy,
    RestartPolicyKind,
    Taint,
    TopologyConstraint,
    TopologyMode,
)
from phalanx.model.resources import (
    CPU,
    GPU,
    MEMORY,
    UNLIMITED,
    Resources,
    cpu_milli,
    gpu_milli,
    gpu_quota_milli,
    memory_bytes,
)
from phalanx.scheduling.snapshot import (
    AdmittedWorkload,
    PendingWorkload,
    PlacedPod,
    Reservation,
    SchedulerConfig,
    Snapshot,
)

Quantity = str | int | float


class NodeBuilder:
    """``make_node("n1").gpus(8).cpu(32).memory("256Gi").label("rack", "r1").obj()``"""

    def __init__(self, name: str) -> None:
        self._node = Node(
            name,
            Resources(cpu_milli(32), memory_bytes("256Gi"), 0),
            labels={NODE_TOPOLOGY: name},
        )

    def cpu(self, value: Quantity) -> NodeBuilder:
        self._node = replace(
            self._node, allocatable=replace(self._node.allocatable, cpu_milli=cpu_milli(value))
        )
        return self

    def memory(self, value: Quantity) -> NodeBuilder:
        self._node = replace(
            self._node,
            allocatable=replace(self._node.allocatable, memory_bytes=memory_bytes(value)),
        )
        return self

    def gpus(self, count: int, model: str = "H100") -> NodeBuilder:
        devices = tuple(GpuDevice(i, f"GPU-{self._node.name}-{i}", model) for i in range(count))
        labels = dict(self._node.labels)
        if count:
            labels.update({"nvidia.com/gpu.product": model, "nvidia.com/gpu.count": str(count)})
        self._node = replace(
            self._node,
            gpus=devices,
            labels=labels,
            allocatable=replace(self._node.allocatable, gpu_milli=count * 1000),
        )
        return self

    def label(self, key: str, value: str) -> NodeBuilder:
        self._node = replace(self._node, labels={**self._node.labels, key: value})
        return self

    def taint(self, key: str, value: str = "", effect: str = "NoSchedule") -> NodeBuilder:
        self._node = replace(self._node, taints=(*self._node.taints, Taint(key, value, effect)))
        return self

    def not_ready(self) -> NodeBuilder:
        self._node = replace(self._node, is_ready=False)
        return self

    def quarantined(self) -> NodeBuilder:
        self._node = replace(self._node, is_quarantined=True)
        return self

    def obj(self) -> Node:
        return self._node


class FlavorBuilder:
    """``make_flavor("h100").label("nvidia.com/gpu.product", "H100").obj()``"""

    def __init__(self, name: str) -> None:
        self._flavor = ResourceFlavor(name, {})

    def label(self, key: str, value: str) -> FlavorBuilder:
        self._flavor = replace(self._flavor, node_labels={**self._flavor.node_labels, key: value})
        return self

    def obj(self) -> ResourceFlavor:
        return self._flavor


class QueueBuilder:
    """``make_queue("a").cohort("c").quota("default", gpu=8, cpu=64, memory="512Gi").obj()``"""

    def __init__(self, name: str) -> None:
        self._queue = Queue(name, ())

    def cohort(self, name: str) -> QueueBuilder:
        self._queue = replace(self._queue, cohort=name)
        return self

    def weight(self, weight: int) -> QueueBuilder:
        self._queue = replace(self._queue, weight=weight)
        return self

    def no_preemption(self) -> QueueBuilder:
        self._queue = replace(
            self._queue, within_queue_preemption=PreemptionPolicy.NEVER, reclaim_within_cohort=False
        )
        return self

    def quota(
        self,
        flavor: str = "default",
        *,
        gpu: Quantity = 0,
        cpu: Quantity = 1000,
        memory: Quantity = "100Ti",
        gpu_borrowing_limit: Quantity | None = None,
        gpu_lending_limit: Quantity | None = None,
    ) -> QueueBuilder:
        resources = {
            CPU: ResourceQuota(cpu_milli(cpu)),
            MEMORY: ResourceQuota(memory_bytes(memory)),
            GPU: ResourceQuota(
                gpu_quota_milli(gpu),
                UNLIMITED if gpu_borrowing_limit is None else gpu_quota_milli(gpu_borrowing_limit),
                UNLIMITED if gpu_lending_limit is None else gpu_quota_milli(gpu_lending_limit),
            ),
        }
        self._queue = replace(
            self._queue, flavors=(*self._queue.flavors, FlavorQuotas(flavor, resources))
        )
        return self

    def obj(self) -> Queue:
        if not self._queue.flavors:
            return replace(
                QueueBuilder(self._queue.name).quota(gpu=1000).obj(), cohort=self._queue.cohort
            )
        return self._queue


class JobBuilder:
    """``make_job("train").queue("a").gpus(8).replicas(4).priority(10).obj()``

    Calls after ``pod_set(...)`` shape that pod set; before, the default pod set ``main``.
    """

    def __init__(self, name: str) -> None:
        self._job = JobSpec(
            name, "default", (PodSet("main", 1, Resources(cpu_milli(1), 0, 0), ("true",)),)
        )

    def _edit_last(self, **changes: object) -> JobBuilder:
        sets = list(self._job.pod_sets)
        sets[-1] = replace(sets[-1], **changes)  # type: ignore[arg-type]
        self._job = replace(self._job, pod_sets=tuple(sets))
        return self

    def _edit_resources(self, **changes: int) -> JobBuilder:
        return self._edit_last(resources=replace(self._job.pod_sets[-1].resources, **changes))

    def queue(self, name: str) -> JobBuilder:
        self._job = replace(self._job, queue=name)
        return self

    def priority(self, value: int) -> JobBuilder:
        self._job = replace(self._job, priority=value)
        return self

    def pod_set(self, name: str, replicas: int = 1) -> JobBuilder:
        base = PodSet(name, replicas, Resources(cpu_milli(1), 0, 0), ("true",))
        if len(self._job.pod_sets) == 1 and self._job.pod_sets[0].name == "main":
            self._job = replace(self._job, pod_sets=(base,))
        else:
            self._job = replace(self._job, pod_sets=(*self._job.pod_sets, base))
        return self

    def replicas(self, count: int) -> JobBuilder:
        return self._edit_last(replicas=count)

    def gpus(self, value: Quantity) -> JobBuilder:
        return self._edit_resources(gpu_milli=gpu_milli(value))

    def cpu(self, value: Quantity) -> JobBuilder:
        return self._edit_resources(cpu_milli=cpu_milli(value))

    def memory(self, value: Quantity) -> JobBuilder:
        return self._edit_resources(memory_bytes=memory_bytes(value))

    def command(self, *argv: str) -> JobBuilder:
        return self._edit_last(command=tuple(argv))

    def env(self, **values: str) -> JobBuilder:
        return self._edit_last(env={**self._job.pod_sets[-1].env, **values})

    def min_available(self, count: int) -> JobBuilder:
        self._job = replace(self._job, min_available=count)
        return self

    def topology(self, key: str = NODE_TOPOLOGY, *, required: bool = True) -> JobBuilder:
        mode = TopologyMode.REQUIRED if required else TopologyMode.PREFERRED
        self._job = replace(self._job, topology=TopologyConstraint(key, mode))
        return self

    def restarts(self, max_restarts: int, backoff_s: float = 0.1) -> JobBuilder:
        self._job = replace(
            self._job,
            restart_policy=RestartPolicy(
                RestartPolicyKind.ON_FAILURE, max_restarts, backoff_s, 60.0
            ),
        )
        return self

    def max_runtime(self, seconds: float) -> JobBuilder:
        self._job = replace(self._job, max_runtime_s=seconds)
        return self

    def obj(self) -> JobSpec:
        return self._job


def make_node(name: str) -> NodeBuilder:
    return NodeBuilder(name)


def make_flavor(name: str = "default") -> FlavorBuilder:
    return FlavorBuilder(name)


def make_queue(name: str) -> QueueBuilder:
    return QueueBuilder(name)


def make_job(name: str) -> JobBuilder:
    return JobBuilder(name)


def make_admitted(
    job: JobSpec,
    placements: Iterable[tuple[str, Iterable[int]]],
    *,
    flavor: str = "default",
    admitted_at: float = 0.0,
    milli: int = 1000,
    terminating: bool = False,
    last_checkpoint_at: float | None = None,
) -> AdmittedWorkload:
    """An admitted workload whose pods (in pod-set order) sit on the given (node, device
    indices); each device holds ``milli`` (or the pod's fraction when it asks for one)."""
    pods: list[PlacedPod] = []
    specs = [(ps, i) for ps in job.pod_sets for i in range(ps.replicas)]
    for (ps, i), (node, devices) in zip(specs, placements, strict=True):
        share = ps.resources.gpu_milli if ps.resources.is_fractional_gpu else milli
        shares = tuple(DeviceShare(d, share) for d in devices)
        pods.append(PlacedPod(PodPlacement(ps.name, i, node, shares), ps.resources))
    return AdmittedWorkload(
        job.name,
        job.queue,
        flavor,
        job.priority,
        tuple(pods),
        admitted_at,
        terminating,
        last_checkpoint_at,
    )


def make_snapshot(
    *,
    nodes: Iterable[Node] = (),
    queues: Iterable[Queue] = (),
    pending: Iterable[JobSpec] = (),
    admitted: Iterable[AdmittedWorkload] = (),
    flavors: Iterable[ResourceFlavor] | None = None,
    reservations: Iterable[Reservation] = (),
    now: float = 1000.0,
    config: SchedulerConfig | None = None,
) -> Snapshot:
    """A snapshot; pending jobs get FIFO sequence numbers in the order given."""
    return Snapshot(
        now=now,
        nodes=tuple(nodes),
        flavors=tuple(flavors) if flavors is not None else (make_flavor("default").obj(),),
        queues=tuple(queues),
        pending=tuple(PendingWorkload(job, seq) for seq, job in enumerate(pending)),
        admitted=tuple(admitted),
        reservations=tuple(reservations),
        config=config or SchedulerConfig(),
    )


def queue_manifests(
    name: str = "q",
    *,
    gpu: Quantity = 8,
    cpu: Quantity = 64,
    memory: str = "1Ti",
    flavor: str = "default",
) -> list[dict[str, object]]:
    """Manifests of a flavor matching every node and a queue with a quota on it, ready for
    ``ControlPlane.apply`` or ``Client.apply``."""
    return [
        {
            "apiVersion": "phalanx.dev/v1alpha1",
            "kind": "ResourceFlavor",
            "metadata": {"name": flavor},
            "spec": {},
        },
        {
            "apiVersion": "phalanx.dev/v1alpha1",
            "kind": "Queue",
            "metadata": {"name": name},
            "spec": {
                "flavors": [
                    {
                        "name": flavor,
                        "resources": {"cpu": cpu, "memory": memory, "nvidia.com/gpu": gpu},
                    }
                ]
            },
        },
    ]


def job_manifest(
    name: str,
    *,
    queue: str = "q",
    replicas: int = 1,
    resources: dict[str, Quantity] | None = None,
    labels: dict[str, str] | None = None,
    command: Iterable[str] = ("true",),
    pod_set: str = "main",
) -> dict[str, object]:
    """The manifest of a one-pod-set Job (``replicas`` pods running ``command`` and asking
    for ``resources``), ready for ``ControlPlane.apply`` or ``Client.apply``."""
    metadata: dict[str, object] = {"name": name}
    if labels is not None:
        metadata["labels"] = dict(labels)
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Job",
        "metadata": metadata,
        "spec": {
            "queue": queue,
            "podSets": [
                {
                    "name": pod_set,
                    "replicas": replicas,
                    "command": list(command),
                    "resources": dict(resources or {}),
                }
            ],
        },
    }
