"""The control plane's views (``controllers.views``, plain dataclasses) as the API's JSON
(``phalanx.api.schemas``): resource amounts in Kubernetes notation (``500m``, ``16Gi``), GPU
devices as ``[{index, milli}]``, times both as epoch seconds and as ISO 8601 strings, and the
metadata every stored object carries. Pure; must not import client or cli.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime

from phalanx.api.schemas import (
    ApplyOutcome,
    DeviceInfo,
    EventInfo,
    FlavorInfo,
    FlavorUsageInfo,
    GpuInfo,
    JobInfo,
    JobReasonInfo,
    KindInfo,
    MetadataInfo,
    NodeInfo,
    OwnerReferenceInfo,
    PodInfo,
    QueueInfo,
    ReasonInfo,
)
from phalanx.controllers.views import (
    ApplyResult,
    EventView,
    FlavorUsage,
    FlavorView,
    JobView,
    MetadataView,
    NodeView,
    PodView,
    QueueView,
)
from phalanx.kinds import Kind
from phalanx.model.objects import DeviceShare, JobPhase, PodPhase
from phalanx.model.reasons import Reason
from phalanx.model.resources import Resources


def iso_time(at: float | None) -> str | None:
    """Return ``at`` (epoch seconds) as an ISO 8601 UTC string, or None."""
    if at is None:
        return None
    return datetime.fromtimestamp(at, tz=UTC).isoformat().replace("+00:00", "Z")


def metadata_out(metadata: MetadataView) -> MetadataInfo:
    """Return an object's metadata, Kubernetes style."""
    return {
        "name": metadata.name,
        "uid": metadata.uid,
        "labels": dict(metadata.labels),
        "annotations": dict(metadata.annotations),
        "ownerReferences": [
            OwnerReferenceInfo(
                kind=str(o.get("kind", "")), name=str(o.get("name", "")), uid=str(o.get("uid", ""))
            )
            for o in metadata.owner_references
        ],
        "resourceVersion": metadata.resource_version,
        "generation": metadata.generation,
        "creationTimestamp": iso_time(metadata.created_at) or "",
    }


def _devices(devices: Iterable[DeviceShare]) -> list[DeviceInfo]:
    return [DeviceInfo(index=d.index, milli=d.milli) for d in devices]


def event_out(event: EventView) -> EventInfo:
    """Return one event."""
    return {
        "at": event.at,
        "at_iso": iso_time(event.at) or "",
        "type": event.type,
        "reason": event.reason,
        "message": event.message,
        "facts": dict(event.facts),
    }


def pod_out(pod: PodView) -> PodInfo:
    """Return one pod attempt."""
    return {
        "pod_id": pod.pod_id,
        "name": f"{pod.pod_set}-{pod.index}",
        "pod_set": pod.pod_set,
        "index": pod.index,
        "attempt": pod.attempt,
        "node": pod.node,
        "devices": _devices(pod.devices),
        "phase": str(pod.phase),
        "exit_code": pod.exit_code,
        "reason": pod.reason,
        "started_at": pod.started_at,
        "started_at_iso": iso_time(pod.started_at),
        "finished_at": pod.finished_at,
        "finished_at_iso": iso_time(pod.finished_at),
    }


def job_out(job: JobView) -> JobInfo:
    """Return a job with its metadata, pods and events."""
    running = sum(1 for p in job.pods if p.attempt == job.attempt and p.phase == PodPhase.RUNNING)
    progress = job.progress
    return {
        "metadata": metadata_out(job.metadata),
        "name": job.name,
        "queue": job.queue,
        "priority": job.priority,
        "phase": str(job.phase),
        "is_finished": JobPhase(job.phase).is_terminal,
        "reason": JobReasonInfo(
            code=job.reason_code, message=job.message, facts=dict(job.reason_facts)
        )
        if job.reason_code
        else None,
        "reason_code": job.reason_code,
        "message": job.message,
        "flavor": job.flavor,
        "attempt": job.attempt,
        "restarts": job.restarts,
        "pod_count": job.pod_count,
        "running_pods": running,
        "request": job.request.to_quantities(),
        "created_at": job.created_at,
        "created_at_iso": iso_time(job.created_at) or "",
        "admitted_at": job.admitted_at,
        "admitted_at_iso": iso_time(job.admitted_at),
        "started_at": job.started_at,
        "started_at_iso": iso_time(job.started_at),
        "finished_at": job.finished_at,
        "finished_at_iso": iso_time(job.finished_at),
        "manifest": dict(job.manifest),
        "pods": [pod_out(p) for p in job.pods],
        "events": [event_out(e) for e in job.events],
        "progress": None
        if progress is None
        else {
            "step": progress.step,
            "reported_at": progress.reported_at,
            "checkpoint_step": progress.checkpoint_step,
            "checkpoint_at": progress.checkpoint_at,
            "checkpoint_at_iso": iso_time(progress.checkpoint_at),
            "checkpoint_path": progress.checkpoint_path,
            "total_steps": progress.total_steps,
            "expected_end_at": progress.expected_end_at,
        },
    }


def _usage_out(usage: FlavorUsage) -> FlavorUsageInfo:
    return {
        "flavor": usage.flavor,
        "used": usage.used.to_quantities(),
        "nominal": usage.nominal.to_quantities(),
    }


def queue_out(queue: QueueView) -> QueueInfo:
    """Return a queue with its metadata, usage per flavor and summed."""
    used, nominal = Resources(), Resources()
    for usage in queue.usage:
        used, nominal = used + usage.used, nominal + usage.nominal
    return {
        "metadata": metadata_out(queue.metadata),
        "name": queue.name,
        "cohort": queue.cohort,
        "pending": queue.pending,
        "admitted": queue.admitted,
        "usage": [_usage_out(u) for u in queue.usage],
        "used": used.to_quantities(),
        "nominal": nominal.to_quantities(),
        "manifest": dict(queue.manifest),
    }


def node_out(view: NodeView) -> NodeInfo:
    """Return a node with its devices and what holds them."""
    node = view.node
    quarantine = view.quarantine
    return {
        "name": node.name,
        "is_ready": node.is_ready,
        "is_quarantined": node.is_quarantined,
        "gpu_model": node.gpu_model,
        "allocatable": node.allocatable.to_quantities(),
        "used": view.used.to_quantities(),
        "gpus": [
            GpuInfo(
                index=gpu.index,
                uuid=gpu.uuid,
                model=gpu.model,
                memory=Resources(memory_bytes=gpu.memory_bytes).to_quantities().get("memory", "0"),
                used_milli=view.device_used_milli.get(gpu.index, 0),
            )
            for gpu in node.gpus
        ],
        "labels": dict(node.labels),
        "taints": [{"key": t.key, "value": t.value, "effect": t.effect} for t in node.taints],
        "pods": list(view.pods),
        "quarantine": None
        if quarantine is None
        else {
            "since": quarantine.since,
            "until": quarantine.until,
            "reason": quarantine.reason,
            "code": quarantine.code,
            "facts": dict(quarantine.facts),
        },
        "failures": [
            {"at": f.at, "job": f.job, "attempt": f.attempt, "pod": f.pod, "reason": f.reason}
            for f in view.failures
        ],
    }


def flavor_out(flavor: FlavorView) -> FlavorInfo:
    """Return a flavor with its metadata and node labels."""
    spec = flavor.manifest.get("spec")
    labels = spec.get("nodeLabels", {}) if isinstance(spec, Mapping) else {}
    return {
        "metadata": metadata_out(flavor.metadata),
        "name": flavor.metadata.name,
        "node_labels": {str(k): str(v) for k, v in labels.items()}
        if isinstance(labels, Mapping)
        else {},
        "manifest": dict(flavor.manifest),
    }


def kind_out(kind: Kind) -> KindInfo:
    """Return what the registry knows of one kind."""
    return {
        "name": kind.name,
        "plural": kind.plural,
        "short_names": list(kind.short_names),
        "description": kind.description,
        "is_applied": kind.is_applied,
    }


def reason_out(reason: Reason) -> ReasonInfo:
    """Return a Reason."""
    return {"code": reason.code.value, "message": reason.message, "facts": reason.plain_facts()}


def apply_out(result: ApplyResult) -> ApplyOutcome:
    """Return one apply outcome, with its warnings."""
    return {
        "kind": result.kind,
        "name": result.name,
        "action": result.action,
        "warnings": [reason_out(w) for w in result.warnings],
    }
