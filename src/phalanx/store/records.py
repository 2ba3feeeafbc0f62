"""Plain records the store returns and accepts; controllers never see SQLAlchemy rows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from phalanx.model.reasons import Reason


@dataclass(slots=True)
class JobRecord:
    id: int
    name: str
    uid: str
    manifest: dict[str, Any]
    queue: str
    priority: int
    phase: str
    reason_code: str
    message: str
    flavor: str
    attempt: int
    restarts: int
    not_before: float
    is_deleting: bool
    created_at: float
    admitted_at: float | None
    started_at: float | None
    finished_at: float | None
    #: The facts behind ``reason_code``/``message`` (see phalanx.model.reasons).
    reason_facts: dict[str, Any] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    owner_refs: list[dict[str, Any]] = field(default_factory=list)
    #: The store's revision of this row's last write (compare-and-set guard).
    resource_version: int = 0
    #: Bumped when the spec changes (jobs' specs never change: always 1).
    generation: int = 1
    #: Kubernetes-style status conditions: type, status, reason, message, lastTransitionTime.
    conditions: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True)
class PodRecord:
    pod_id: str
    job_id: int
    pod_set: str
    index: int
    attempt: int
    node: str
    devices: list[Any]  # [[index, milli], ...]
    env: dict[str, Any]
    phase: str
    created_at: float
    exit_code: int | None = None
    reason: str = ""
    message: str = ""
    started_at: float | None = None
    finished_at: float | None = None


@dataclass(slots=True)
class EventRecord:
    """One event; ``reason`` is a code from the reasons catalogue and ``facts`` its numbers.
    An event belongs to a job (``job_id``) or, for other kinds, to (``kind``, ``name``)."""

    at: float
    type: str
    reason: str
    message: str
    job_id: int = 0
    facts: dict[str, Any] = field(default_factory=dict)
    kind: str = "Job"
    name: str = ""

    @classmethod
    def of(cls, at: float, reason: Reason, *, kind: str = "Job", name: str = "") -> EventRecord:
        """The event that says ``reason`` (its type follows from the code), on a job (set
        ``job_id`` when writing it) or on the object ``kind``/``name``."""
        return cls(
            at,
            reason.code.event_type,
            reason.code.value,
            reason.message,
            facts=reason.plain_facts(),
            kind=kind,
            name=name,
        )


@dataclass(slots=True)
class ObjectRecord:
    """A stored object of any kind but Job: its manifest and metadata."""

    kind: str
    name: str
    uid: str
    manifest: dict[str, Any]
    labels: dict[str, str]
    annotations: dict[str, str]
    owner_refs: list[dict[str, Any]]
    resource_version: int
    generation: int
    created_at: float
    updated_at: float


@dataclass(frozen=True, slots=True)
class Change:
    """One entry of the store's revision log: ``kind``/``name`` was ADDED, MODIFIED or
    DELETED at ``revision``."""

    revision: int
    kind: str
    name: str
    type: str
    at: float


@dataclass(slots=True)
class Transition:
    """One state transition, written in one transaction: changes to a job (by id), changes
    to some of its pods, new pods, and events.

    The guard: with ``expect_phase``/``expect_version`` set, the store applies the transition
    only while the job is still in that phase at that resourceVersion (compare-and-set), and
    a phase change only if the job lifecycle's table allows it (phalanx.model.transitions).
    """

    job_id: int
    job: Mapping[str, Any] = field(default_factory=dict)
    pods: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    new_pods: tuple[PodRecord, ...] = ()
    events: tuple[EventRecord, ...] = ()
    expect_phase: str | None = None
    expect_version: int | None = None


@dataclass(frozen=True, slots=True)
class Lease:
    """A named lease: ``holder`` has it until ``expires_at`` unless it renews. ``term`` grows
    by one each time the lease changes hands; writes fenced with (holder, term) are refused
    once another holder has taken it."""

    name: str
    holder: str
    term: int
    acquired_at: float
    renewed_at: float
    expires_at: float


@dataclass(frozen=True, slots=True)
class UserRecord:
    """A user of the API: ``role`` is admin, operator, user or viewer."""

    name: str
    role: str
    groups: tuple[str, ...]
    created_at: float


@dataclass(frozen=True, slots=True)
class TokenRecord:
    """A token of ``user``; ``digest`` is the SHA-256 (hex) of the token, never the token."""

    id: str
    user: str
    name: str
    digest: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One mutating API call. ``id`` is 0 until stored."""

    at: float
    user: str
    action: str
    kind: str
    name: str
    status: int
    detail: str = ""
    id: int = 0
