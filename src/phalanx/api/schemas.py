"""Pydantic response and request schemas of the REST API, and their conversion from views.

The control plane's read models (``controllers.views``) are plain dataclasses; this module is
the one place they become JSON: resource amounts in Kubernetes notation (``500m``, ``16Gi``),
GPU devices as ``[{index, milli}]``, times both as epoch seconds and as ISO 8601 strings.
Field names are snake_case and mirror the TypedDicts of ``phalanx.client`` one to one (a test
checks that). Must not import client or cli.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from pydantic import BaseModel, Field

from phalanx.controllers.views import (
    ApplyResult,
    EventView,
    FlavorUsage,
    JobView,
    NodeView,
    PodView,
    QueueView,
)
from phalanx.model.objects import DeviceShare, JobPhase, PodPhase
from phalanx.model.reasons import Reason
from phalanx.model.resources import Resources
from phalanx.model.specs import SpecError, parse_job


def iso_time(at: float | None) -> str | None:
    """Return ``at`` (epoch seconds) as an ISO 8601 UTC string, or None."""
    if at is None:
        return None
    return datetime.fromtimestamp(at, tz=UTC).isoformat().replace("+00:00", "Z")


class DeviceOut(BaseModel):
    """A GPU device a pod holds, in thousandths (1000 = the whole device)."""

    index: int
    milli: int


class ReasonOut(BaseModel):
    """Why: a stable ``code`` from the reasons catalogue (docs/reasons.md), the ``facts`` with
    the numbers, and the ``message`` rendered from them."""

    code: str
    message: str
    facts: dict[str, object]


class EventOut(BaseModel):
    """Something that happened to a job: ``reason`` is the code, ``facts`` its numbers."""

    at: float
    at_iso: str
    type: str
    reason: str
    message: str
    facts: dict[str, object] = {}


class PodOut(BaseModel):
    """One attempt of one pod; ``name`` is ``<podset>-<index>`` (what ``logs --pod`` takes)."""

    pod_id: str
    name: str
    pod_set: str
    index: int
    attempt: int
    node: str
    devices: list[DeviceOut]
    phase: str
    exit_code: int | None
    reason: str
    started_at: float | None
    started_at_iso: str | None
    finished_at: float | None
    finished_at_iso: str | None


class ProgressOut(BaseModel):
    """What the workload reported through phalanx.train: step (current attempt) and last
    completed checkpoint (any attempt)."""

    step: int | None
    reported_at: float | None
    checkpoint_step: int | None
    checkpoint_at: float | None
    checkpoint_at_iso: str | None
    checkpoint_path: str


class JobOut(BaseModel):
    """A job: its spec (``manifest``), status, pods of every attempt and events. ``reason``
    is why it is where it is (None before the first); ``reason_code`` and ``message`` repeat
    its code and message."""

    name: str
    queue: str
    priority: int
    phase: str
    is_finished: bool
    reason: ReasonOut | None
    reason_code: str
    message: str
    flavor: str
    attempt: int
    restarts: int
    pod_count: int
    running_pods: int
    request: dict[str, str]
    created_at: float
    created_at_iso: str
    admitted_at: float | None
    admitted_at_iso: str | None
    started_at: float | None
    started_at_iso: str | None
    finished_at: float | None
    finished_at_iso: str | None
    manifest: dict[str, object]
    pods: list[PodOut]
    events: list[EventOut]
    progress: ProgressOut | None = None


class FlavorUsageOut(BaseModel):
    """A queue's use of one flavor against its nominal quota."""

    flavor: str
    used: dict[str, str]
    nominal: dict[str, str]


class QueueOut(BaseModel):
    """A queue with quota use per flavor and summed over its flavors."""

    name: str
    cohort: str
    pending: int
    admitted: int
    usage: list[FlavorUsageOut]
    used: dict[str, str]
    nominal: dict[str, str]
    manifest: dict[str, object]


class GpuOut(BaseModel):
    """One GPU device of a node and how much of it is held (thousandths)."""

    index: int
    uuid: str
    model: str
    memory: str
    used_milli: int


class TaintOut(BaseModel):
    """A node taint."""

    key: str
    value: str
    effect: str


class NodeFailureOut(BaseModel):
    """A node-side pod failure: evidence against the node."""

    at: float
    job: str
    attempt: int
    pod: str
    reason: str


class QuarantineOut(BaseModel):
    """Why and until when a node is kept out of placement: ``reason`` is the message of the
    reason ``code`` with its ``facts``."""

    since: float
    until: float | None
    reason: str
    code: str = ""
    facts: dict[str, object] = {}


class NodeOut(BaseModel):
    """A node: what it can hold, what is in use, its devices, labels and pods; quarantine
    and the node-side failures that count against it."""

    name: str
    is_ready: bool
    is_quarantined: bool
    gpu_model: str
    allocatable: dict[str, str]
    used: dict[str, str]
    gpus: list[GpuOut]
    labels: dict[str, str]
    taints: list[TaintOut]
    pods: list[str]
    quarantine: QuarantineOut | None = None
    failures: list[NodeFailureOut] = []


class FlavorOut(BaseModel):
    """A resource flavor: the node labels that select its nodes."""

    name: str
    node_labels: dict[str, str]
    manifest: dict[str, object]


class ApplyOut(BaseModel):
    """What applying one manifest did: ``created``, ``configured`` or ``unchanged``;
    ``warnings``: why a job, although accepted, can never be admitted as things stand."""

    kind: str
    name: str
    action: str
    warnings: list[ReasonOut] = []


class LogsOut(BaseModel):
    """A chunk of a pod's output; ask again from ``next_offset`` until ``finished``."""

    data: str
    next_offset: int
    finished: bool


class VersionOut(BaseModel):
    """The server's version and the manifest apiVersion it accepts."""

    version: str
    api_version: str


class ApplyRequest(BaseModel):
    """Manifests to apply all or nothing; ``source`` names where they came from (a file)."""

    manifests: list[dict[str, object]] = Field(min_length=1)
    source: str = ""


class ErrorDetail(BaseModel):
    """One field error of a rejected manifest."""

    path: str
    value: object
    message: str


class ErrorBody(BaseModel):
    """What went wrong: a stable ``code``, a message for people, field errors if any."""

    code: str
    message: str
    details: list[ErrorDetail] = []
    source: str = ""


class ErrorOut(BaseModel):
    """The body of every error response."""

    error: ErrorBody


def _devices(devices: Iterable[DeviceShare]) -> list[DeviceOut]:
    return [DeviceOut(index=d.index, milli=d.milli) for d in devices]


def event_out(event: EventView) -> EventOut:
    """Return the schema of one event."""
    return EventOut(
        at=event.at,
        at_iso=iso_time(event.at) or "",
        type=event.type,
        reason=event.reason,
        message=event.message,
        facts=dict(event.facts),
    )


def pod_out(pod: PodView) -> PodOut:
    """Return the schema of one pod attempt."""
    return PodOut(
        pod_id=pod.pod_id,
        name=f"{pod.pod_set}-{pod.index}",
        pod_set=pod.pod_set,
        index=pod.index,
        attempt=pod.attempt,
        node=pod.node,
        devices=_devices(pod.devices),
        phase=str(pod.phase),
        exit_code=pod.exit_code,
        reason=pod.reason,
        started_at=pod.started_at,
        started_at_iso=iso_time(pod.started_at),
        finished_at=pod.finished_at,
        finished_at_iso=iso_time(pod.finished_at),
    )


def _job_request(manifest: Mapping[str, object]) -> tuple[int, Resources]:
    """Return (pod count, total request) from a stored manifest; (0, nothing) if unreadable."""
    try:
        spec = parse_job(manifest)
    except SpecError:
        return 0, Resources()
    return spec.pod_count, spec.total_request


def job_out(job: JobView) -> JobOut:
    """Return the schema of a job with its pods and events."""
    pod_count, request = _job_request(job.manifest)
    running = sum(1 for p in job.pods if p.attempt == job.attempt and p.phase == PodPhase.RUNNING)
    return JobOut(
        name=job.name,
        queue=job.queue,
        priority=job.priority,
        phase=str(job.phase),
        is_finished=JobPhase(job.phase).is_terminal,
        reason=ReasonOut(code=job.reason_code, message=job.message, facts=dict(job.reason_facts))
        if job.reason_code
        else None,
        reason_code=job.reason_code,
        message=job.message,
        flavor=job.flavor,
        attempt=job.attempt,
        restarts=job.restarts,
        pod_count=pod_count,
        running_pods=running,
        request=request.to_quantities(),
        created_at=job.created_at,
        created_at_iso=iso_time(job.created_at) or "",
        admitted_at=job.admitted_at,
        admitted_at_iso=iso_time(job.admitted_at),
        started_at=job.started_at,
        started_at_iso=iso_time(job.started_at),
        finished_at=job.finished_at,
        finished_at_iso=iso_time(job.finished_at),
        manifest=dict(job.manifest),
        pods=[pod_out(p) for p in job.pods],
        events=[event_out(e) for e in job.events],
        progress=None
        if job.progress is None
        else ProgressOut(
            step=job.progress.step,
            reported_at=job.progress.reported_at,
            checkpoint_step=job.progress.checkpoint_step,
            checkpoint_at=job.progress.checkpoint_at,
            checkpoint_at_iso=iso_time(job.progress.checkpoint_at),
            checkpoint_path=job.progress.checkpoint_path,
        ),
    )


def _usage_out(usage: FlavorUsage) -> FlavorUsageOut:
    return FlavorUsageOut(
        flavor=usage.flavor,
        used=usage.used.to_quantities(),
        nominal=usage.nominal.to_quantities(),
    )


def queue_out(queue: QueueView) -> QueueOut:
    """Return the schema of a queue, with usage per flavor and summed."""
    used, nominal = Resources(), Resources()
    for usage in queue.usage:
        used, nominal = used + usage.used, nominal + usage.nominal
    return QueueOut(
        name=queue.name,
        cohort=queue.cohort,
        pending=queue.pending,
        admitted=queue.admitted,
        usage=[_usage_out(u) for u in queue.usage],
        used=used.to_quantities(),
        nominal=nominal.to_quantities(),
        manifest=dict(queue.manifest),
    )


def node_out(view: NodeView) -> NodeOut:
    """Return the schema of a node with its devices and what holds them."""
    node = view.node
    return NodeOut(
        name=node.name,
        is_ready=node.is_ready,
        is_quarantined=node.is_quarantined,
        gpu_model=node.gpu_model,
        allocatable=node.allocatable.to_quantities(),
        used=view.used.to_quantities(),
        gpus=[
            GpuOut(
                index=gpu.index,
                uuid=gpu.uuid,
                model=gpu.model,
                memory=Resources(memory_bytes=gpu.memory_bytes).to_quantities().get("memory", "0"),
                used_milli=view.device_used_milli.get(gpu.index, 0),
            )
            for gpu in node.gpus
        ],
        labels=dict(node.labels),
        taints=[TaintOut(key=t.key, value=t.value, effect=t.effect) for t in node.taints],
        pods=list(view.pods),
        quarantine=None
        if view.quarantine is None
        else QuarantineOut(
            since=view.quarantine.since,
            until=view.quarantine.until,
            reason=view.quarantine.reason,
            code=view.quarantine.code,
            facts=dict(view.quarantine.facts),
        ),
        failures=[
            NodeFailureOut(at=f.at, job=f.job, attempt=f.attempt, pod=f.pod, reason=f.reason)
            for f in view.failures
        ],
    )


def flavor_out(manifest: Mapping[str, object]) -> FlavorOut:
    """Return the schema of a flavor from its stored manifest."""
    metadata = manifest.get("metadata")
    spec = manifest.get("spec")
    name = metadata.get("name", "") if isinstance(metadata, Mapping) else ""
    labels = spec.get("nodeLabels", {}) if isinstance(spec, Mapping) else {}
    return FlavorOut(
        name=str(name),
        node_labels={str(k): str(v) for k, v in labels.items()}
        if isinstance(labels, Mapping)
        else {},
        manifest=dict(manifest),
    )


def reason_out(reason: Reason) -> ReasonOut:
    """Return the schema of a Reason."""
    return ReasonOut(code=reason.code.value, message=reason.message, facts=reason.plain_facts())


def apply_out(result: ApplyResult) -> ApplyOut:
    """Return the schema of one apply outcome, with its warnings."""
    return ApplyOut(
        kind=result.kind,
        name=result.name,
        action=result.action,
        warnings=[reason_out(w) for w in result.warnings],
    )
