"""Plain records the store returns and accepts; controllers never see SQLAlchemy rows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


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
    at: float
    type: str
    reason: str
    message: str
    job_id: int = 0


@dataclass(slots=True)
class Transition:
    """One state transition, written in one transaction: changes to a job (by id), changes
    to some of its pods, new pods, and an event."""

    job_id: int
    job: Mapping[str, Any] = field(default_factory=dict)
    pods: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    new_pods: tuple[PodRecord, ...] = ()
    events: tuple[EventRecord, ...] = ()
