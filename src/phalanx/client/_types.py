"""The JSON the API returns, as TypedDicts: what ``Client`` methods hand back.

They mirror ``phalanx.api.schemas`` field for field (a test keeps the two in step) but import
nothing from it, so the client installs and imports without FastAPI or pydantic.
"""

from __future__ import annotations

from typing import TypedDict


class DeviceInfo(TypedDict):
    """A GPU device a pod holds; ``milli`` 1000 is the whole device."""

    index: int
    milli: int


class ReasonInfo(TypedDict):
    """Why: a stable ``code`` (the catalogue is docs/reasons.md), the ``facts`` with the
    numbers, and the ``message`` rendered from them."""

    code: str
    message: str
    facts: dict[str, object]


class EventInfo(TypedDict):
    """Something that happened to a job (kubectl-events style); ``reason`` is the code and
    ``facts`` its numbers."""

    at: float
    at_iso: str
    type: str
    reason: str
    message: str
    facts: dict[str, object]


class PodInfo(TypedDict):
    """One attempt of one pod; ``name`` is ``<podset>-<index>``."""

    pod_id: str
    name: str
    pod_set: str
    index: int
    attempt: int
    node: str
    devices: list[DeviceInfo]
    phase: str
    exit_code: int | None
    reason: str
    started_at: float | None
    started_at_iso: str | None
    finished_at: float | None
    finished_at_iso: str | None


class JobInfo(TypedDict):
    """A job: spec (``manifest``), status, pods of every attempt, events."""

    name: str
    queue: str
    priority: int
    phase: str
    is_finished: bool
    reason: ReasonInfo | None
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
    pods: list[PodInfo]
    events: list[EventInfo]
    progress: ProgressInfo | None


class ProgressInfo(TypedDict):
    """What a training workload reported through phalanx.train."""

    step: int | None
    reported_at: float | None
    checkpoint_step: int | None
    checkpoint_at: float | None
    checkpoint_at_iso: str | None
    checkpoint_path: str


class NodeFailureInfo(TypedDict):
    """A node-side pod failure counted against a node."""

    at: float
    job: str
    attempt: int
    pod: str
    reason: str


class QuarantineInfo(TypedDict):
    """Why and until when a node is kept out of placement (``reason``: the message of
    ``code`` with ``facts``)."""

    since: float
    until: float | None
    reason: str
    code: str
    facts: dict[str, object]


class FlavorUsageInfo(TypedDict):
    """A queue's use of one flavor against its nominal quota (Kubernetes quantities)."""

    flavor: str
    used: dict[str, str]
    nominal: dict[str, str]


class QueueInfo(TypedDict):
    """A queue with quota use per flavor and summed over flavors."""

    name: str
    cohort: str
    pending: int
    admitted: int
    usage: list[FlavorUsageInfo]
    used: dict[str, str]
    nominal: dict[str, str]
    manifest: dict[str, object]


class GpuInfo(TypedDict):
    """One GPU of a node and the thousandths of it in use."""

    index: int
    uuid: str
    model: str
    memory: str
    used_milli: int


class TaintInfo(TypedDict):
    """A node taint."""

    key: str
    value: str
    effect: str


class NodeInfo(TypedDict):
    """A node: capacity, use, devices, labels, taints and the pods on it."""

    name: str
    is_ready: bool
    is_quarantined: bool
    gpu_model: str
    allocatable: dict[str, str]
    used: dict[str, str]
    gpus: list[GpuInfo]
    labels: dict[str, str]
    taints: list[TaintInfo]
    pods: list[str]
    quarantine: QuarantineInfo | None
    failures: list[NodeFailureInfo]


class FlavorInfo(TypedDict):
    """A resource flavor and the node labels that select its nodes."""

    name: str
    node_labels: dict[str, str]
    manifest: dict[str, object]


class ApplyOutcome(TypedDict):
    """What applying one manifest did: ``created``, ``configured`` or ``unchanged``;
    ``warnings``: why a job, although accepted, can never be admitted as things stand."""

    kind: str
    name: str
    action: str
    warnings: list[ReasonInfo]


class LogChunk(TypedDict):
    """Output of a pod from an offset; read again from ``next_offset`` until ``finished``."""

    data: str
    next_offset: int
    finished: bool


class VersionInfo(TypedDict):
    """The server's version and the manifest apiVersion it accepts."""

    version: str
    api_version: str


class ErrorDetailInfo(TypedDict):
    """One field error of a rejected manifest."""

    path: str
    value: object
    message: str
