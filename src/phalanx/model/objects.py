"""Domain objects: nodes and GPU devices, flavors, queues, jobs and their states.

Pure data: frozen, slotted dataclasses with tuples and mappings. No I/O, clock or randomness;
times are plain floats (seconds since the epoch) handed in by whoever observed them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from phalanx.model.resources import UNLIMITED, Resources

#: How long an admitted attempt may take to have all its pods running (``startupTimeout``).
DEFAULT_STARTUP_TIMEOUT_S = 600.0


@dataclass(frozen=True, slots=True)
class GpuDevice:
    """One GPU on a node, as NVML or the device plugin reports it."""

    index: int
    uuid: str = ""
    model: str = ""
    memory_bytes: int = 0


@dataclass(frozen=True, slots=True)
class Taint:
    """A node taint; only ``NoSchedule``/``NoExecute`` taints keep pods off a node."""

    key: str
    value: str = ""
    effect: str = "NoSchedule"


@dataclass(frozen=True, slots=True)
class SecretKeyRef:
    """An environment variable whose value is one key of a Secret, read when the pod
    launches (``env[].valueFrom.secretKeyRef``). ``is_optional``: a missing Secret or key
    leaves the variable unset instead of failing the pod."""

    secret: str
    key: str
    is_optional: bool = False


@dataclass(frozen=True, slots=True)
class Toleration:
    """Lets a pod land on a node with a matching taint (empty key with Exists matches all)."""

    key: str = ""
    operator: str = "Equal"
    value: str = ""
    effect: str = ""

    def tolerates(self, taint: Taint) -> bool:
        """Return whether this toleration matches ``taint``."""
        if self.effect and self.effect != taint.effect:
            return False
        if self.operator == "Exists":
            return not self.key or self.key == taint.key
        return self.key == taint.key and self.value == taint.value


@dataclass(frozen=True, slots=True)
class Node:
    """A node as observed from a backend: what it can hold and where it sits."""

    name: str
    allocatable: Resources
    gpus: tuple[GpuDevice, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    taints: tuple[Taint, ...] = ()
    is_ready: bool = True
    is_quarantined: bool = False
    #: Why the backend itself considers the node broken (e.g. a critical GPU XID); non-empty
    #: makes the controllers quarantine the node at once.
    unhealthy_reason: str = ""

    @property
    def gpu_model(self) -> str:
        """The model of the node's first GPU, or "" for a CPU-only node."""
        return self.gpus[0].model if self.gpus else ""


@dataclass(frozen=True, slots=True)
class ResourceFlavor:
    """A kind of node, selected by labels (e.g. ``nvidia.com/gpu.product: H100``)."""

    name: str
    node_labels: Mapping[str, str] = field(default_factory=dict)

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Return whether a node with ``labels`` belongs to this flavor."""
        return all(labels.get(key) == value for key, value in self.node_labels.items())


@dataclass(frozen=True, slots=True)
class ResourceQuota:
    """Quota for one resource of one flavor in one queue.

    ``borrowing_limit``: how much above nominal the queue may borrow from its cohort
    (UNLIMITED when unset). ``lending_limit``: how much of its unused nominal quota others in
    the cohort may borrow (UNLIMITED when unset, i.e. all of it).
    """

    nominal: int
    borrowing_limit: int = UNLIMITED
    lending_limit: int = UNLIMITED


@dataclass(frozen=True, slots=True)
class FlavorQuotas:
    """A flavor a queue may use, with a quota per resource name (missing means 0)."""

    flavor: str
    resources: Mapping[str, ResourceQuota] = field(default_factory=dict)

    def quota(self, resource: str) -> ResourceQuota:
        """Return the quota for ``resource`` (nominal 0 when the queue lists none)."""
        return self.resources.get(resource, ResourceQuota(nominal=0, borrowing_limit=0))


class PreemptionPolicy(StrEnum):
    """Which running workloads a pending one may preempt."""

    NEVER = "Never"
    LOWER_PRIORITY = "LowerPriority"


@dataclass(frozen=True, slots=True)
class QueueAccess:
    """Who may submit to a queue (``spec.access``): these users, and members of these
    groups; operators and admins always may. Both empty: operators and admins only."""

    users: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Queue:
    """A queue with per-flavor quotas, an optional cohort to borrow from and lend to.
    ``access`` None: anyone may submit (the default)."""

    name: str
    flavors: tuple[FlavorQuotas, ...]
    cohort: str = ""
    weight: int = 1
    within_queue_preemption: PreemptionPolicy = PreemptionPolicy.LOWER_PRIORITY
    reclaim_within_cohort: bool = True
    access: QueueAccess | None = None


class TopologyMode(StrEnum):
    """Whether a topology constraint must hold or is only preferred."""

    REQUIRED = "Required"
    PREFERRED = "Preferred"


#: Topology key meaning "the same node".
NODE_TOPOLOGY = "kubernetes.io/hostname"


@dataclass(frozen=True, slots=True)
class TopologyConstraint:
    """Keep all pods of a gang in one domain: one node, or nodes sharing a label value."""

    key: str = NODE_TOPOLOGY
    mode: TopologyMode = TopologyMode.REQUIRED

    @property
    def is_same_node(self) -> bool:
        """Whether the domain is a single node."""
        return self.key == NODE_TOPOLOGY


class RestartPolicyKind(StrEnum):
    """When a failed job is started again."""

    NEVER = "Never"
    ON_FAILURE = "OnFailure"


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    """Restart a failed job as a whole, with exponential backoff between attempts."""

    kind: RestartPolicyKind = RestartPolicyKind.NEVER
    max_restarts: int = 3
    backoff_s: float = 1.0
    max_backoff_s: float = 60.0

    def backoff_for(self, restart_count: int) -> float:
        """Return the delay before restart number ``restart_count`` (1-based)."""
        return float(min(self.max_backoff_s, self.backoff_s * 2 ** max(0, restart_count - 1)))


class OnFailure(StrEnum):
    """What a failure of one cause does to a job."""

    #: Counts against ``maxRestarts`` with exponential backoff (application errors, hangs).
    RESTART_COUNTED = "Restart"
    #: Restart from the last checkpoint without counting against ``maxRestarts``.
    RESTART_FREE = "RestartUncounted"
    #: Fail the job at once.
    FAIL = "Fail"


@dataclass(frozen=True, slots=True)
class FailurePolicy:
    """What happens when a pod fails, by cause (``spec.failurePolicy``).

    - application error (non-zero exit): governed by ``restartPolicy`` (counted, backoff);
    - ``on_oom``: OOM-kill; fails fast by default (restarting would OOM again);
    - ``on_node_failure``: node lost, not ready, quarantined or faulty; restarts elsewhere
      without counting against ``maxRestarts`` by default;
    - ``hang_timeout_s``: no progress report for this long restarts the gang (counted);
    - ``termination_grace_s``: SIGTERM → this long → SIGKILL on cancel, preemption and
      restarts (None: the control plane's default);
    - ``enforce_memory``: local backend only: kill a pod whose processes together use more
      resident memory than its memory request, reported as an OOM-kill (Kubernetes always
      enforces the container's limit).
    """

    on_oom: OnFailure = OnFailure.FAIL
    on_node_failure: OnFailure = OnFailure.RESTART_FREE
    hang_timeout_s: float | None = None
    termination_grace_s: float | None = None
    enforce_memory: bool = False


@dataclass(frozen=True, slots=True)
class PodSet:
    """A group of identical pods of a job: same command, same per-pod resources."""

    name: str
    replicas: int
    resources: Resources
    command: tuple[str, ...] = ()
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    working_dir: str = ""
    image: str = ""
    tolerations: tuple[Toleration, ...] = ()
    #: Variables whose values come from Secrets at launch (never stored with the job).
    secret_env: Mapping[str, SecretKeyRef] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class JobSpec:
    """What a user asked for: the job's pod sets and how to queue, place and restart them."""

    name: str
    queue: str
    pod_sets: tuple[PodSet, ...]
    namespace: str = "default"
    priority: int = 0
    min_available: int | None = None
    topology: TopologyConstraint | None = None
    max_runtime_s: float | None = None
    restart_policy: RestartPolicy = field(default_factory=RestartPolicy)
    labels: Mapping[str, str] = field(default_factory=dict)
    failure_policy: FailurePolicy = field(default_factory=FailurePolicy)
    #: Passed on to the job's pods (on Kubernetes: pod annotations).
    annotations: Mapping[str, str] = field(default_factory=dict)
    #: Kubernetes: the PersistentVolumeClaim that holds PHALANX_CHECKPOINT_DIR ("": none).
    checkpoint_claim: str = ""
    #: An admitted attempt whose pods are not all running this long after admission is
    #: restarted or failed by its policy (``spec.startupTimeout``).
    startup_timeout_s: float = DEFAULT_STARTUP_TIMEOUT_S

    @property
    def pod_count(self) -> int:
        """Total pods across pod sets."""
        return sum(ps.replicas for ps in self.pod_sets)

    @property
    def gang_minimum(self) -> int:
        """Pods that must be placed together for the job to be admitted."""
        return self.pod_count if self.min_available is None else self.min_available

    @property
    def total_request(self) -> Resources:
        """Resources of all pods together."""
        total = Resources()
        for ps in self.pod_sets:
            total = total + ps.resources.scaled(ps.replicas)
        return total


class JobPhase(StrEnum):
    """Job lifecycle: Pending → Admitted → Running → Succeeded | Failed | Preempted | Cancelled.

    Preempted is transient: once its pods have stopped the job goes back to Pending.
    """

    PENDING = "Pending"
    ADMITTED = "Admitted"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    PREEMPTED = "Preempted"
    CANCELLED = "Cancelled"

    @property
    def is_terminal(self) -> bool:
        """Whether the job will never run again."""
        return self in (JobPhase.SUCCEEDED, JobPhase.FAILED, JobPhase.CANCELLED)

    @property
    def holds_resources(self) -> bool:
        """Whether the job's pods count against capacity and quota."""
        return self in (JobPhase.ADMITTED, JobPhase.RUNNING, JobPhase.PREEMPTED)


class PodPhase(StrEnum):
    """One attempt of one pod: Pending → Running → Succeeded | Failed; Lost if it vanished."""

    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    STOPPED = "Stopped"
    LOST = "Lost"

    @property
    def is_finished(self) -> bool:
        """Whether the pod's process is gone."""
        return self in (PodPhase.SUCCEEDED, PodPhase.FAILED, PodPhase.STOPPED, PodPhase.LOST)


@dataclass(frozen=True, slots=True)
class DeviceShare:
    """A GPU device index and the thousandths of it a pod holds (1000 = the whole device)."""

    index: int
    milli: int


@dataclass(frozen=True, slots=True)
class PodPlacement:
    """Where one pod of a gang goes: a node and concrete GPU devices."""

    pod_set: str
    index: int
    node: str
    devices: tuple[DeviceShare, ...] = ()

    @property
    def pod_key(self) -> tuple[str, int]:
        """(pod set, index), unique within a job."""
        return (self.pod_set, self.index)
