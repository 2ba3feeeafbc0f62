"""Read models the control plane hands to the API: plain dataclasses, no I/O.

Times are epoch seconds (float) or None when the moment has not happened yet.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from phalanx.model.objects import DeviceShare, JobPhase, Node, PodPhase
from phalanx.model.reasons import Reason
from phalanx.model.resources import Resources

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class MetadataView:
    """What every stored object carries, Kubernetes style: ``resource_version`` is the
    store's revision of its last write, ``generation`` counts spec changes, ``uid`` is fixed
    for the object's life; ``owner_references`` are ``{kind, name, uid}`` mappings."""

    name: str
    uid: str
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    owner_references: tuple[Mapping[str, object], ...]
    resource_version: int
    generation: int
    created_at: float


@dataclass(frozen=True, slots=True)
class EventView:
    """Something that happened to a job, kubectl-events style: ``reason`` is a code of the
    reasons catalogue (docs/reasons.md), ``facts`` its numbers, ``message`` them in words."""

    at: float
    type: str  # "Normal" | "Warning"
    reason: str  # CamelCase, e.g. Admitted, Preempted, Restarting
    message: str
    facts: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PodView:
    """One attempt of one pod of a job."""

    pod_id: str
    pod_set: str
    index: int
    attempt: int
    node: str
    devices: tuple[DeviceShare, ...]
    phase: PodPhase
    exit_code: int | None = None
    reason: str = ""
    started_at: float | None = None
    finished_at: float | None = None


@dataclass(frozen=True, slots=True)
class ProgressView:
    """What a training workload reported through phalanx.train: the step it reached in the
    current attempt and its last completed checkpoint (any attempt)."""

    step: int | None = None
    reported_at: float | None = None
    checkpoint_step: int | None = None
    checkpoint_at: float | None = None
    checkpoint_path: str = ""
    #: the steps the run takes in all, when the workload said
    total_steps: int | None = None
    #: when the run should end at this attempt's pace (``JobProgress.expected_end_at``)
    expected_end_at: float | None = None


@dataclass(frozen=True, slots=True)
class JobView:
    """A job with its status: phase, why it is there (``reason_code``, ``message`` and
    ``reason_facts``: a Reason as stored), where its pods are, what happened. ``pod_count``
    and ``request`` (all its pods together) come from its spec: 0 and nothing when the stored
    manifest no longer parses."""

    name: str
    manifest: Mapping[str, object]
    queue: str
    priority: int
    phase: JobPhase
    message: str
    reason_code: str
    created_at: float
    admitted_at: float | None
    started_at: float | None
    finished_at: float | None
    flavor: str
    attempt: int
    restarts: int
    metadata: MetadataView
    pods: tuple[PodView, ...] = ()
    events: tuple[EventView, ...] = ()
    progress: ProgressView | None = None
    reason_facts: Mapping[str, object] = field(default_factory=dict)
    pod_count: int = 0
    request: Resources = field(default_factory=Resources)


@dataclass(frozen=True, slots=True)
class FlavorUsage:
    """A queue's use of one flavor against its quota."""

    flavor: str
    used: Resources
    nominal: Resources


@dataclass(frozen=True, slots=True)
class QueueView:
    """A queue with its quota use and how many jobs wait and run in it."""

    name: str
    manifest: Mapping[str, object]
    cohort: str
    usage: tuple[FlavorUsage, ...]
    pending: int
    admitted: int
    metadata: MetadataView


@dataclass(frozen=True, slots=True)
class FlavorView:
    """A resource flavor: its stored manifest and metadata."""

    manifest: Mapping[str, object]
    metadata: MetadataView


@dataclass(frozen=True, slots=True)
class NodeFailureView:
    """A node-side pod failure: evidence against a node."""

    at: float
    job: str
    attempt: int
    pod: str
    reason: str


@dataclass(frozen=True, slots=True)
class QuarantineView:
    """Why and until when a node is kept out of placement: ``reason`` is the message of the
    ``code`` (``Quarantined``) with its ``facts``."""

    since: float
    until: float | None
    reason: str
    code: str = "Quarantined"
    facts: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class NodeView:
    """A node with what is in use on it and by whom, and the evidence against it."""

    node: Node
    used: Resources
    device_used_milli: Mapping[int, int] = field(default_factory=dict)
    pods: tuple[str, ...] = ()
    quarantine: QuarantineView | None = None
    failures: tuple[NodeFailureView, ...] = ()


@dataclass(frozen=True, slots=True)
class ApplyResult:
    """Outcome of applying one manifest: ``created``, ``configured`` or ``unchanged``;
    ``warnings``: why a job, although accepted, can never be admitted as things stand
    (``NeverFits``, ``ExceedsQueueLimit``, ``FlavorNotFound``)."""

    kind: str
    name: str
    action: str
    warnings: tuple[Reason, ...] = ()


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list: ``continue_token`` fetches the next ("" on the last page);
    ``resource_version`` is the store's revision when the page was read (a watch from it
    misses nothing)."""

    items: tuple[T, ...]
    continue_token: str
    resource_version: int
