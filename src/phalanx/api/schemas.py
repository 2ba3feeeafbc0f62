"""The JSON the REST API speaks, as TypedDicts: the one definition of every request and
response shape.

The server uses these classes as FastAPI response models (pydantic validates TypedDicts, and
the OpenAPI at ``/docs`` is generated from them, docstrings included); ``phalanx.client``
re-exports them as what its methods return. So there is no second copy to keep in step.

Field names are snake_case, except inside ``metadata`` and watch events, which follow
Kubernetes (``resourceVersion``, ``ownerReferences``, ``creationTimestamp``). Resource amounts
are Kubernetes quantities (``500m``, ``16Gi``); times are epoch seconds with an ``_iso`` twin.

Imports only the standard library and ``typing_extensions`` (pydantic needs its TypedDict
before Python 3.12): the client imports this module without FastAPI or pydantic installed,
and a test checks that it stays so. Conversion from the control plane's views lives in
``phalanx.api.conversion``.
"""

from __future__ import annotations

from typing import Final, NotRequired, cast

from typing_extensions import TypedDict

#: Response headers of list endpoints: the token that fetches the next page (absent on the
#: last page) and the store's revision the list was read at (watch from it to miss nothing).
CONTINUE_HEADER = "X-Continue"
RESOURCE_VERSION_HEADER = "X-Resource-Version"

#: ``type`` of watch events.
ADDED, MODIFIED, DELETED, ERROR = "ADDED", "MODIFIED", "DELETED", "ERROR"


class OwnerReferenceInfo(TypedDict):
    """The object that owns this one: deleting the owner deletes what it owns. ``uid`` is
    empty when the manifest did not pin the owner's uid."""

    kind: str
    name: str
    uid: str


class MetadataInfo(TypedDict):
    """What every stored object carries, Kubernetes style. ``resourceVersion`` is the store's
    revision of the object's last write (it only grows); ``generation`` counts spec changes;
    ``uid`` never changes for the life of the object. Job list items leave ``annotations``
    and ``ownerReferences`` out when empty (see ``JobInfo``)."""

    name: str
    uid: str
    labels: dict[str, str]
    annotations: NotRequired[dict[str, str]]
    ownerReferences: NotRequired[list[OwnerReferenceInfo]]
    resourceVersion: int
    generation: int
    creationTimestamp: str


class DeviceInfo(TypedDict):
    """A GPU device a pod holds, in thousandths (``milli`` 1000 is the whole device)."""

    index: int
    milli: int


class ReasonInfo(TypedDict):
    """Why: a stable ``code`` from the reasons catalogue (docs/reasons.md), the ``facts`` with
    the numbers, and the ``message`` rendered from them."""

    code: str
    message: str
    facts: dict[str, object]


class JobReasonInfo(TypedDict):
    """A job's ``ReasonInfo``; job list items leave ``message`` out (it is the job's own
    ``message``)."""

    code: str
    message: NotRequired[str]
    facts: dict[str, object]


class EventInfo(TypedDict):
    """Something that happened to a job (kubectl-events style): ``reason`` is the code and
    ``facts`` its numbers."""

    at: float
    at_iso: str
    type: str
    reason: str
    message: str
    facts: dict[str, object]


class PodInfo(TypedDict):
    """One attempt of one pod; ``name`` is ``<podset>-<index>`` (what ``logs --pod`` takes)."""

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


class ProgressInfo(TypedDict):
    """What the workload reported through phalanx.train: step (current attempt) and last
    completed checkpoint (any attempt)."""

    step: int | None
    reported_at: float | None
    checkpoint_step: int | None
    checkpoint_at: float | None
    checkpoint_at_iso: str | None
    checkpoint_path: str
    #: the steps the run takes in all (``report_progress(step, total_steps=N)``)
    total_steps: int | None
    #: when the run should end at this attempt's pace; None without a total or a pace yet
    expected_end_at: float | None


class JobInfo(TypedDict):
    """A job: its metadata, spec (``manifest``), status, pods and events. ``reason`` is why
    it is where it is (None before the first); ``reason_code`` and ``message`` repeat its code
    and message. Lists carry the pods of the current attempt and no events; one job (``GET
    /jobs/{name}``) carries the pods of every attempt and its events, and every field.

    A list item (``GET /jobs``) is lighter: it leaves out each field of ``JOB_ITEM_DEFAULTS``
    that holds that default (times not reached, no pods, no progress, attempt and restarts
    0, no flavor, empty annotations and owner references), ``created_at_iso`` (it is
    ``metadata.creationTimestamp``) and ``reason.message`` (it is ``message``).
    ``full_job_item`` puts them back; ``phalanx.client`` does so for every item it returns."""

    metadata: MetadataInfo
    name: str
    queue: str
    priority: int
    phase: str
    is_finished: bool
    reason: JobReasonInfo | None
    reason_code: str
    message: str
    flavor: NotRequired[str]
    attempt: NotRequired[int]
    restarts: NotRequired[int]
    pod_count: int
    running_pods: int
    request: dict[str, str]
    created_at: float
    created_at_iso: NotRequired[str]
    admitted_at: NotRequired[float | None]
    admitted_at_iso: NotRequired[str | None]
    started_at: NotRequired[float | None]
    started_at_iso: NotRequired[str | None]
    finished_at: NotRequired[float | None]
    finished_at_iso: NotRequired[str | None]
    manifest: dict[str, object]
    pods: NotRequired[list[PodInfo]]
    events: NotRequired[list[EventInfo]]
    progress: NotRequired[ProgressInfo | None]


#: The fields a job list item leaves out when they hold these values, and ``metadata``'s.
#: The one definition: the server leaves out by it, the client puts back by it. Read only.
JOB_ITEM_DEFAULTS: Final[dict[str, object]] = {
    "flavor": "",
    "attempt": 0,
    "restarts": 0,
    "admitted_at": None,
    "admitted_at_iso": None,
    "started_at": None,
    "started_at_iso": None,
    "finished_at": None,
    "finished_at_iso": None,
    "pods": [],
    "events": [],
    "progress": None,
}
JOB_ITEM_METADATA_DEFAULTS: Final[dict[str, object]] = {"annotations": {}, "ownerReferences": []}


def _fresh(value: object) -> object:
    """A copy of a default that a caller may change (a new list or dict)."""
    if isinstance(value, list):
        return []
    if isinstance(value, dict):
        return {}
    return value


def _is_default(value: object, default: object) -> bool:
    return type(value) is type(default) and value == default


def job_item(job: JobInfo) -> JobInfo:
    """Return ``job`` (a full ``JobInfo``, as ``GET /jobs/{name}`` sends it) as a list item:
    without the fields that hold their ``JOB_ITEM_DEFAULTS`` value or repeat another (see
    ``JobInfo``). A new dict; ``job`` is left as it is."""
    item = cast("dict[str, object]", dict(job))
    for key, default in JOB_ITEM_DEFAULTS.items():
        if key in item and _is_default(item[key], default):
            del item[key]
    metadata = cast("dict[str, object]", dict(job["metadata"]))
    for key, default in JOB_ITEM_METADATA_DEFAULTS.items():
        if key in metadata and _is_default(metadata[key], default):
            del metadata[key]
    item["metadata"] = metadata
    if item.get("created_at_iso") == metadata.get("creationTimestamp"):
        del item["created_at_iso"]
    reason = job["reason"]
    if reason is not None and reason.get("message") == job["message"]:
        item["reason"] = {"code": reason["code"], "facts": reason["facts"]}
    return cast("JobInfo", item)


def full_job_item(item: JobInfo) -> JobInfo:
    """Return a job list item with every field ``job_item`` left out put back, in
    ``JobInfo``'s order: the job as ``GET /jobs/{name}`` sends it (with the current
    attempt's pods and no events). A new dict (fresh lists and dicts for the empty values);
    fields it does not know are kept, after the others."""
    given = cast("dict[str, object]", item)
    metadata = cast("dict[str, object]", given["metadata"])
    if any(key not in metadata for key in JOB_ITEM_METADATA_DEFAULTS):
        metadata = _in_order(metadata, _METADATA_FIELDS, JOB_ITEM_METADATA_DEFAULTS)
    defaults = {**JOB_ITEM_DEFAULTS, "created_at_iso": metadata.get("creationTimestamp", "")}
    out = _in_order(given, _JOB_FIELDS, defaults)
    out["metadata"] = metadata
    reason = cast("dict[str, object] | None", given.get("reason"))
    if reason is not None and "message" not in reason:
        out["reason"] = {
            "code": reason.get("code", ""),
            "message": given.get("message", ""),
            "facts": reason.get("facts", {}),
        }
    return cast("JobInfo", out)


def _in_order(
    given: dict[str, object], order: tuple[str, ...], defaults: dict[str, object]
) -> dict[str, object]:
    """``given`` with its keys in ``order`` (then any others), a missing one taking a fresh
    copy of its value in ``defaults``."""
    out: dict[str, object] = {}
    for key in order:
        if key in given:
            out[key] = given[key]
        elif key in defaults:
            out[key] = _fresh(defaults[key])
    if len(out) < len(given):
        out.update((key, value) for key, value in given.items() if key not in out)
    return out


_JOB_FIELDS = tuple(JobInfo.__annotations__)
_METADATA_FIELDS = tuple(MetadataInfo.__annotations__)


class FlavorUsageInfo(TypedDict):
    """A queue's use of one flavor against its nominal quota."""

    flavor: str
    used: dict[str, str]
    nominal: dict[str, str]


class QueueInfo(TypedDict):
    """A queue with its metadata, quota use per flavor and summed over its flavors."""

    metadata: MetadataInfo
    name: str
    cohort: str
    pending: int
    admitted: int
    usage: list[FlavorUsageInfo]
    used: dict[str, str]
    nominal: dict[str, str]
    manifest: dict[str, object]


class GpuInfo(TypedDict):
    """One GPU device of a node and how much of it is held (thousandths)."""

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


class NodeFailureInfo(TypedDict):
    """A node-side pod failure: evidence against the node."""

    at: float
    job: str
    attempt: int
    pod: str
    reason: str


class QuarantineInfo(TypedDict):
    """Why and until when a node is kept out of placement: ``reason`` is the message of the
    reason ``code`` with its ``facts``."""

    since: float
    until: float | None
    reason: str
    code: str
    facts: dict[str, object]


class NodeInfo(TypedDict):
    """A node (observed from the backend, so without stored metadata): what it can hold,
    what is in use, its devices, labels and pods; quarantine and the node-side failures that
    count against it."""

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
    """A resource flavor: its metadata and the node labels that select its nodes."""

    metadata: MetadataInfo
    name: str
    node_labels: dict[str, str]
    manifest: dict[str, object]


class KindInfo(TypedDict):
    """A kind of object the server knows: every name the API and CLI accept for it
    (``name``, ``plural``, ``short_names``, any case), and whether it is applied (jobs, queues,
    flavors) or observed from the backend (nodes)."""

    name: str
    plural: str
    short_names: list[str]
    description: str
    is_applied: bool


class ApplyRequest(TypedDict):
    """Manifests to apply all or nothing (at least one); ``source`` names where they came
    from (a file), for messages."""

    manifests: list[dict[str, object]]
    source: NotRequired[str]


class ApplyOutcome(TypedDict):
    """What applying one manifest did: ``created``, ``configured`` or ``unchanged``;
    ``warnings``: why a job, although accepted, can never be admitted as things stand."""

    kind: str
    name: str
    action: str
    warnings: list[ReasonInfo]


class LogChunk(TypedDict):
    """A chunk of a pod's output; ask again from ``next_offset`` until ``finished``."""

    data: str
    next_offset: int
    finished: bool


class VersionInfo(TypedDict):
    """The server's version and the manifest apiVersion it accepts."""

    version: str
    api_version: str


class ErrorDetailInfo(TypedDict):
    """One field error of a rejected manifest: ``documents[i].`` leads the path when a
    request held several manifests."""

    path: str
    value: object
    message: str


class ErrorBodyInfo(TypedDict):
    """What went wrong: a stable ``code``, a message for people, field errors if any."""

    code: str
    message: str
    details: list[ErrorDetailInfo]
    source: str


class ErrorInfo(TypedDict):
    """The body of every error response."""

    error: ErrorBodyInfo


class FindingEvidenceInfo(TypedDict):
    """Why the doctor says so: facts with the numbers, and events quoted
    (``<time> <reason>: <message>``)."""

    facts: dict[str, object]
    events: list[str]


class FindingInfo(TypedDict):
    """A root cause the doctor names: ``code`` (docs/operations.md), ``severity``
    (``critical``, ``warning``, ``info``), the ``object`` the cause lies in (``job/NAME``,
    ``queue/NAME``, ``node/NAME``, ``flavor/NAME``, ``cohort/NAME``), the ``subject`` it
    affects, the evidence, a ``fix`` (a command or a spec change) and a ``confidence`` in
    [0, 1]."""

    code: str
    severity: str
    object: str
    subject: str
    summary: str
    evidence: FindingEvidenceInfo
    fix: str
    confidence: float


class DoctorReport(TypedDict):
    """What the doctor found about ``target`` (``kind/name``; empty: everything), most urgent
    first, as of ``checked_at``."""

    target: str
    checked_at: float
    findings: list[FindingInfo]


class EstimateInfo(TypedDict):
    """When a pending job should start (``start_at``, epoch seconds; ``wait_s`` from now;
    both null when not within a week, or never as things stand), what it waits on now (a
    reason code) and the jobs whose end lets it start (``after``). ``higher_priority_load``:
    the share of the cluster asked for by the work of higher priority than the job's
    submitted in the last 30 minutes; at 1 or more it arrives faster than the cluster serves
    it, the estimate holds only if it stops coming, and the job may start much later."""

    job: str
    queue: str
    start_at: float | None
    wait_s: float | None
    waits_on: str
    after: list[str]
    higher_priority_load: float


class WatchEvent(TypedDict):
    """One event of ``GET /watch`` (the ``data`` of a server-sent event): ``kind``/``name``
    was ``ADDED``, ``MODIFIED`` or ``DELETED`` at revision ``resourceVersion``. ``object``
    is the object as it is when the event is sent (a ``JobInfo``, ``QueueInfo`` or
    ``FlavorInfo``; absent for ``DELETED``). ``type`` ``ERROR`` ends the stream with
    ``error``: code ``Expired`` (Kubernetes' 410 Gone) when the revision asked for is older
    than the log still holds or newer than the store's: list again and watch from the
    list's resourceVersion."""

    type: str
    kind: str
    name: str
    resourceVersion: int
    object: NotRequired[JobInfo | QueueInfo | FlavorInfo]
    error: NotRequired[ErrorBodyInfo]


__all__ = [
    "ADDED",
    "CONTINUE_HEADER",
    "DELETED",
    "ERROR",
    "JOB_ITEM_DEFAULTS",
    "JOB_ITEM_METADATA_DEFAULTS",
    "MODIFIED",
    "RESOURCE_VERSION_HEADER",
    "ApplyOutcome",
    "ApplyRequest",
    "AuditInfo",
    "DeviceInfo",
    "DoctorReport",
    "ErrorBodyInfo",
    "ErrorDetailInfo",
    "ErrorInfo",
    "EstimateInfo",
    "EventInfo",
    "FindingEvidenceInfo",
    "FindingInfo",
    "FlavorInfo",
    "FlavorUsageInfo",
    "GpuInfo",
    "JobInfo",
    "JobReasonInfo",
    "KindInfo",
    "LogChunk",
    "MetadataInfo",
    "NodeFailureInfo",
    "NodeInfo",
    "OwnerReferenceInfo",
    "PodInfo",
    "ProgressInfo",
    "QuarantineInfo",
    "QueueInfo",
    "ReasonInfo",
    "SecretInfo",
    "TaintInfo",
    "TokenCreate",
    "TokenCreated",
    "TokenInfo",
    "UserCreate",
    "UserInfo",
    "VersionInfo",
    "WatchEvent",
    "WhoAmIInfo",
    "full_job_item",
    "job_item",
]


# -- identity: users, tokens and the audit log (phalanx.api.identity) ---------------------


class WhoAmIInfo(TypedDict):
    """The caller: user name, role, groups and the id of the token used ("" for the admin
    token in the data dir)."""

    name: str
    role: str
    groups: list[str]
    token_id: str


class UserInfo(TypedDict):
    """A user: role (admin, operator, user, viewer) and the groups queue access may name."""

    name: str
    role: str
    groups: list[str]
    created_at: float


class UserCreate(TypedDict):
    """A new user: ``role`` is admin, operator, user or viewer; ``groups`` are what queue
    access lists may name."""

    name: str
    role: str
    groups: NotRequired[list[str]]


class TokenInfo(TypedDict):
    """A token without its secret: the token itself is returned once, by its creation."""

    id: str
    user: str
    name: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    is_active: bool


class TokenCreate(TypedDict):
    """A new token of ``user``, valid for ``expires_in_s`` seconds (absent or null: until
    revoked)."""

    user: str
    name: str
    expires_in_s: NotRequired[float | None]


class TokenCreated(TypedDict):
    """The new token's record and the token itself, shown this once."""

    info: TokenInfo
    token: str


class AuditInfo(TypedDict):
    """One mutating call: when, who, what (method and route), which object, the status."""

    id: int
    at: float
    at_iso: str
    user: str
    action: str
    kind: str
    name: str
    status: int


# -- secrets (phalanx.api.secrets) -------------------------------------------------------


class SecretInfo(TypedDict):
    """A Secret as the API shows it: its metadata and type, and in ``spec.data`` each key
    with its size (``<hidden> (7 bytes)``), never a value."""

    name: str
    apiVersion: str
    kind: str
    metadata: dict[str, object]
    spec: dict[str, object]
