"""Request and reply of the scheduler: ``Snapshot`` in, ``Decisions`` out (plain data)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from phalanx.model.objects import DeviceShare, JobSpec, Node, PodPlacement, Queue, ResourceFlavor
from phalanx.model.reasons import Reason, ReasonCode
from phalanx.model.resources import Resources


@dataclass(frozen=True, slots=True)
class PendingWorkload:
    """A job waiting for admission. ``seq`` orders submissions (FIFO); ``not_before`` holds a
    job back until that time (restart backoff)."""

    spec: JobSpec
    seq: int
    not_before: float = 0.0


@dataclass(frozen=True, slots=True)
class PlacedPod:
    """A pod of an admitted workload: where it is and what it holds."""

    placement: PodPlacement
    resources: Resources


@dataclass(frozen=True, slots=True)
class AdmittedWorkload:
    """A job holding capacity and quota. ``is_terminating``: being stopped (preempted or
    cancelled); it still holds what it has but can no longer be chosen as a victim.
    ``last_checkpoint_at``: when the workload last reported a completed checkpoint (None:
    never, in this attempt or any earlier one); with ``admitted_at`` it bounds the work a
    preemption would lose."""

    name: str
    queue: str
    flavor: str
    priority: int
    pods: tuple[PlacedPod, ...]
    admitted_at: float
    is_terminating: bool = False
    last_checkpoint_at: float | None = None

    @property
    def gpus(self) -> float:
        """GPUs held by all pods together (fractions count as fractions)."""
        return sum(pod.resources.gpu_milli for pod in self.pods) / 1000

    def unsaved_since(self) -> float:
        """When the work a preemption would lose began: the later of this attempt's admission
        and the last checkpoint."""
        if self.last_checkpoint_at is None:
            return self.admitted_at
        return max(self.admitted_at, self.last_checkpoint_at)

    def lost_gpu_s(self, now: float) -> float:
        """GPU-seconds of work lost if the workload stopped at ``now``: its GPUs times the
        time since its last checkpoint (or since admission, without one)."""
        return self.gpus * max(0.0, now - self.unsaved_since())

    @property
    def total(self) -> Resources:
        """Resources held by all pods together."""
        out = Resources()
        for pod in self.pods:
            out = out + pod.resources
        return out


@dataclass(frozen=True, slots=True)
class Reservation:
    """Capacity on a node held by something phalanx does not schedule (e.g. foreign pods)."""

    node: str
    resources: Resources
    devices: tuple[DeviceShare, ...] = ()


@dataclass(frozen=True, slots=True)
class SchedulerConfig:
    """Tunables of the cycle. ``policy`` names a placement policy (see plugins.POLICIES);
    ``max_candidates`` bounds how many feasible nodes are scored per pod, like
    kube-scheduler's percentageOfNodesToScore."""

    policy: str = "fragmentation-aware"
    max_candidates: int = 8
    score_weights: Mapping[str, float] = field(default_factory=dict)
    #: Seeds the seeded plugins (``random``): the same seed, the same decisions.
    seed: int = 0


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the scheduler may look at, at time ``now``."""

    now: float
    nodes: tuple[Node, ...]
    flavors: tuple[ResourceFlavor, ...]
    queues: tuple[Queue, ...]
    pending: tuple[PendingWorkload, ...]
    admitted: tuple[AdmittedWorkload, ...] = ()
    reservations: tuple[Reservation, ...] = ()
    config: SchedulerConfig = field(default_factory=SchedulerConfig)


@dataclass(frozen=True, slots=True)
class Admission:
    """Admit ``job`` on ``flavor`` with a node and devices for every pod in ``placements``."""

    job: str
    queue: str
    flavor: str
    placements: tuple[PodPlacement, ...]


@dataclass(frozen=True, slots=True)
class Preemption:
    """Stop ``victim`` so that ``preemptor`` can be admitted; ``reason`` (``Preempted``) says
    why, with the numbers: priorities, queues, what the preemptor needs, what the victim
    loses."""

    victim: str
    preemptor: str
    reason: Reason

    @property
    def message(self) -> str:
        return self.reason.message


@dataclass(frozen=True, slots=True)
class PendingReason:
    """Why ``job`` stays pending: a Reason with the numbers that make it so."""

    job: str
    reason: Reason

    @property
    def code(self) -> ReasonCode:
        return self.reason.code

    @property
    def message(self) -> str:
        return self.reason.message


@dataclass(frozen=True, slots=True)
class Decisions:
    """The scheduler's reply: what to admit, what to preempt, and why the rest waits."""

    admissions: tuple[Admission, ...] = ()
    preemptions: tuple[Preemption, ...] = ()
    pending: tuple[PendingReason, ...] = ()

    def reason_for(self, job: str) -> PendingReason | None:
        """Return the pending reason for ``job``, if it is pending."""
        for reason in self.pending:
            if reason.job == job:
                return reason
        return None
