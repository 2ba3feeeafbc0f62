"""What ``describe service`` and the API show of a Service: its replicas, revisions and the
autoscaler's last decisions. Plain data, filled by the Service controller."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from phalanx.model.service import ServiceSpec
from phalanx.serving.rollout import ReplicaPhase
from phalanx.store import EventRecord


@dataclass(frozen=True, slots=True)
class ScaleRecord:
    """One decision of the autoscaler: at ``at``, ``replicas`` wanted, its code and why."""

    at: float
    replicas: int
    code: str
    reason: str


@dataclass(frozen=True, slots=True)
class ReplicaView:
    """One replica as ``describe service`` shows it."""

    name: str
    revision: str
    phase: str
    url: str
    created_at: float
    #: Why it is pending: ``{code, message, facts}`` from the scheduler.
    reason: Mapping[str, Any] | None = None
    is_draining: bool = False


@dataclass(frozen=True, slots=True)
class RevisionView:
    name: str
    created_at: float
    template: Mapping[str, object]
    desired: int
    replicas: int
    ready: int
    percent: float
    is_latest: bool


@dataclass(frozen=True, slots=True)
class ServiceView:
    """A Service with its replicas, revisions, route and the autoscaler's last decisions."""

    name: str
    uid: str
    manifest: Mapping[str, Any]
    spec: ServiceSpec | None
    created_at: float
    revision: str
    desired: int
    replicas: tuple[ReplicaView, ...]
    revisions: tuple[RevisionView, ...]
    decisions: tuple[ScaleRecord, ...]
    waiting: str
    error: str
    url: str
    #: Its newest events (scaling decisions, errors), oldest first.
    events: tuple[EventRecord, ...] = ()
    #: What its replicas answered through the routers, summed: (replica, status class
    #: ``2xx`` … ``5xx``, count since this server began to lead), sorted.
    responses: tuple[tuple[str, str, int], ...] = ()
    #: The same, counted in the last ``responses_window_s`` only.
    recent_responses: tuple[tuple[str, str, int], ...] = ()
    responses_window_s: float = 0.0

    @property
    def ready(self) -> int:
        return sum(1 for r in self.replicas if r.phase == ReplicaPhase.READY.value)
