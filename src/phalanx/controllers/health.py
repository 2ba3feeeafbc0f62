"""Node health: node-side failures as evidence, quarantine and release. State lives in the
store (configuration rows of kind ``NodeHealth``, one per node that has evidence), so it
survives control-plane restarts and is shared by every reader of the store.

Rules (``QuarantinePolicy``):
  1. A pod failure is node-side when its pod was lost (supervisor or node vanished), the
     backend blamed the node (``NodeFault``), or the node was not ready or quarantined.
  2. Evidence is kept for ``window_s``; failures of pods of one attempt of one job count once.
  3. A node is quarantined when it has ``threshold`` such failures within the window from at
     least ``min_jobs`` different jobs (one broken job must not take nodes down with it).
  4. A critical GPU error (e.g. an NVML XID 48/79/46, or an unhealthy device) quarantines
     at once (``quarantine_now``).
  5. A quarantined node is released after ``cooldown_s`` or by ``release`` (``phalanx node
     release``); releasing clears its evidence.
Quarantined nodes are marked ``is_quarantined`` in the scheduler's snapshot, which keeps every
new pod off them. Why a node is quarantined is a ``Quarantined`` Reason (with the failures, or
the GPU error); quarantine and release are also recorded as events of the node.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from phalanx.model.objects import Node
from phalanx.model.reasons import Fact, Reason, ReasonCode
from phalanx.store import EventRecord, Store

KIND = "NodeHealth"


@dataclass(frozen=True, slots=True)
class QuarantinePolicy:
    """When node-side failures quarantine a node, and for how long."""

    threshold: int = 3
    window_s: float = 600.0
    min_jobs: int = 2
    cooldown_s: float = 3600.0


@dataclass(frozen=True, slots=True)
class NodeFailure:
    """One node-side failure: evidence against a node."""

    at: float
    job: str
    attempt: int
    pod: str
    reason: str


@dataclass(frozen=True, slots=True)
class NodeHealth:
    """What phalanx knows against one node."""

    node: str
    failures: tuple[NodeFailure, ...] = ()
    quarantined_at: float | None = None
    quarantine_until: float | None = None
    #: Why the node is quarantined (a ``Quarantined`` reason), while it is.
    quarantine: Reason | None = None

    @property
    def is_quarantined(self) -> bool:
        return self.quarantined_at is not None

    @property
    def quarantine_reason(self) -> str:
        """The quarantine's message ("" when not quarantined)."""
        return "" if self.quarantine is None else self.quarantine.message

    def to_manifest(self) -> dict[str, Any]:
        q = self.quarantine
        return {
            "failures": [
                {"at": f.at, "job": f.job, "attempt": f.attempt, "pod": f.pod, "reason": f.reason}
                for f in self.failures
            ],
            "quarantinedAt": self.quarantined_at,
            "quarantineUntil": self.quarantine_until,
            "quarantineReason": self.quarantine_reason,
            "quarantineCode": "" if q is None else q.code.value,
            "quarantineFacts": {} if q is None else q.plain_facts(),
        }

    @classmethod
    def from_manifest(cls, node: str, data: Mapping[str, Any]) -> NodeHealth:
        failures = tuple(
            NodeFailure(
                float(f["at"]), str(f["job"]), int(f["attempt"]), str(f["pod"]), str(f["reason"])
            )
            for f in data.get("failures") or []
        )
        at, until = data.get("quarantinedAt"), data.get("quarantineUntil")
        quarantine = None
        if data.get("quarantineCode"):
            quarantine = Reason.from_dict(
                {"code": data["quarantineCode"], "facts": data.get("quarantineFacts") or {}}
            )
        elif data.get("quarantineReason"):  # written before reasons had facts: the text only
            quarantine = Reason(
                ReasonCode.QUARANTINED,
                {"node": node, "cause": "Recorded", "detail": str(data["quarantineReason"])},
            )
        return cls(
            node,
            failures,
            None if at is None else float(at),
            None if until is None else float(until),
            quarantine,
        )


@dataclass(slots=True)
class HealthTracker:
    """Reads and writes node health in the store; see the module docstring."""

    store: Store
    clock: Callable[[], float]
    policy: QuarantinePolicy = field(default_factory=QuarantinePolicy)
    #: The last read, and the configuration revision (see ``all``) it was made at.
    _read: tuple[int, dict[str, NodeHealth]] | None = field(default=None, init=False, repr=False)

    def all(self, at: int | None = None) -> dict[str, NodeHealth]:
        """Return the health of every node with evidence, by node name. ``at``: the revision
        of the newest configuration write the caller has seen in the revision log
        (``WorldCache.config_revision``); the last read is reused while it has not moved and
        this tracker wrote nothing since. Without it, the store is read."""
        last = self._read
        if at is not None and last is not None and last[0] == at:
            return dict(last[1])
        health = {
            name: NodeHealth.from_manifest(name, manifest)
            for name, manifest, _ in self.store.list_config(KIND)
        }
        self._read = None if at is None else (at, dict(health))
        return health

    def get(self, node: str) -> NodeHealth:
        return self.all().get(node, NodeHealth(node))

    def _save(self, health: NodeHealth) -> None:
        self._read = None
        if not health.failures and not health.is_quarantined:
            self.store.delete_config(KIND, health.node)
        else:
            self.store.apply([(KIND, health.node, health.to_manifest())], [], self.clock())

    def record_failure(self, node: str, failure: NodeFailure) -> NodeHealth:
        """Add evidence against ``node``; quarantine it if the rules say so. Returns its health
        (``quarantined_at == failure.at`` when this failure tipped it)."""
        p = self.policy
        health = self.get(node)
        kept = [f for f in health.failures if f.at > failure.at - p.window_s]
        if not any((f.job, f.attempt) == (failure.job, failure.attempt) for f in kept):
            kept.append(failure)
        health = replace(health, failures=tuple(kept))
        jobs = {f.job for f in kept}
        if not health.is_quarantined and len(kept) >= p.threshold and len(jobs) >= p.min_jobs:
            recent: tuple[Fact, ...] = tuple(
                {"job": f.job, "pod": f.pod, "reason": f.reason} for f in kept[-p.threshold :]
            )
            reason = Reason(
                ReasonCode.QUARANTINED,
                {
                    "node": node,
                    "cause": "NodeSideFailures",
                    "failures": len(kept),
                    "jobs": len(jobs),
                    "window_s": p.window_s,
                    "threshold": p.threshold,
                    "recent": recent,
                },
            )
            health = self._quarantine(health, failure.at, reason)
        self._save(health)
        return health

    def quarantine_now(self, node: str, detail: str) -> NodeHealth:
        """Quarantine ``node`` at once for a critical GPU error (``detail``: what the backend
        reported); no-op if already quarantined."""
        health = self.get(node)
        if health.is_quarantined:
            return health
        reason = Reason(
            ReasonCode.QUARANTINED, {"node": node, "cause": "CriticalGpuError", "detail": detail}
        )
        health = self._quarantine(health, self.clock(), reason)
        self._save(health)
        return health

    def _quarantine(self, health: NodeHealth, at: float, reason: Reason) -> NodeHealth:
        """``health`` quarantined at ``at`` for ``reason`` (its facts gain ``until``, the end
        of the cool-down), recorded as an event of the node."""
        until = at + self.policy.cooldown_s
        reason = Reason(reason.code, {**reason.facts, "until": until})
        self._event(at, health.node, reason)
        return replace(health, quarantined_at=at, quarantine_until=until, quarantine=reason)

    def _event(self, at: float, node: str, reason: Reason) -> None:
        self.store.record_event(EventRecord.of(at, reason, kind="Node", name=node))

    def release(self, node: str) -> bool:
        """Release ``node`` from quarantine and forget its evidence; False if it had none."""
        health = self.get(node)
        if not health.is_quarantined and not health.failures:
            return False
        self._read = None
        self.store.delete_config(KIND, node)
        if health.is_quarantined:
            released = Reason(ReasonCode.RELEASED, {"node": node, "by": "user"})
            self._event(self.clock(), node, released)
        return True

    def release_expired(self, now: float, at: int | None = None) -> list[str]:
        """Release every node whose cool-down has passed; return their names. ``at`` as for
        ``all``."""
        out = []
        for name, health in self.all(at).items():
            if health.quarantine_until is not None and now >= health.quarantine_until:
                self._read = None
                self.store.delete_config(KIND, name)
                self._event(
                    now, name, Reason(ReasonCode.RELEASED, {"node": name, "by": "cooldown"})
                )
                out.append(name)
        return out


def apply_quarantine(nodes: list[Node], health: Mapping[str, NodeHealth]) -> list[Node]:
    """Return ``nodes`` with ``is_quarantined`` set for those the health state quarantines."""
    if not any(h.is_quarantined for h in health.values()):
        return list(nodes)
    return [
        replace(n, is_quarantined=True)
        if n.name in health and health[n.name].is_quarantined and not n.is_quarantined
        else n
        for n in nodes
    ]
