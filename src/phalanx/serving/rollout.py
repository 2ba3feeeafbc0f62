"""Which replicas to create and which to remove, per revision: scale-ups, scale-downs,
replacement of failed replicas, rolling updates within ``maxSurge``/``maxUnavailable`` and
canary splits. Pure: replicas and targets in, a plan out; no clock, no I/O.

Rules, in order:
  1. a failed replica is removed (and so replaced by step 3);
  2. a replica beyond its revision's target is removed when that keeps at least
     ``desired − maxUnavailable`` replicas ready (one that is not ready yet always may go);
  3. missing replicas are created while there are at most ``desired + maxSurge`` live ones;
  4. a new replica held pending by quota or placement (no room for the surge) lets one
     ready replica of a surplus revision go, never below ``minAvailable``, one at a time.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from phalanx.model.service import LATEST, TrafficTarget


class ReplicaPhase(StrEnum):
    """Where a replica is: waiting for admission, started but not ready, serving, failed,
    or being stopped."""

    PENDING = "Pending"
    STARTING = "Starting"
    READY = "Ready"
    FAILED = "Failed"
    TERMINATING = "Terminating"


@dataclass(frozen=True, slots=True)
class ReplicaState:
    name: str
    revision: str
    phase: ReplicaPhase
    #: Pending because the scheduler cannot admit it now (quota, placement), not just new.
    is_blocked: bool = False
    created_at: float = 0.0


@dataclass(frozen=True, slots=True)
class RolloutPlan:
    """``create``: a revision per replica to create; ``remove``: (replica, why)."""

    create: tuple[str, ...] = ()
    remove: tuple[tuple[str, str], ...] = ()
    #: Why the rollout cannot go on now ("" when it can or has nothing to do).
    waiting: str = ""


def split_replicas(total: int, traffic: Sequence[TrafficTarget], current: str) -> dict[str, int]:
    """Replicas per revision for ``total`` replicas in all: every replica on ``current``
    without a traffic split; with one, each revision in proportion to its percent, at least
    one for any revision that gets traffic (``latest`` is ``current``)."""
    if not traffic:
        return {current: total}
    out: dict[str, int] = {}
    for target in traffic:
        revision = current if target.revision == LATEST else target.revision
        share = (
            0 if total == 0 or target.percent == 0 else max(1, round(total * target.percent / 100))
        )
        out[revision] = out.get(revision, 0) + share
    return out


_REMOVE_FIRST = {
    ReplicaPhase.PENDING: 0,
    ReplicaPhase.STARTING: 1,
    ReplicaPhase.READY: 2,
}


def plan_rollout(
    replicas: Sequence[ReplicaState],
    desired: Mapping[str, int],
    *,
    max_surge: int,
    max_unavailable: int,
    min_available: int | None = None,
) -> RolloutPlan:
    """The next step towards ``desired`` (replicas per revision). Returns a RolloutPlan."""
    total = sum(desired.values())
    floor = max(0, total - max_unavailable)
    blocked_floor = (
        max(0, total - max(1, max_unavailable)) if min_available is None else min_available
    )
    remove: list[tuple[str, str]] = []
    # 1. failed replicas go (the count below then misses them, so they are replaced)
    for r in replicas:
        if r.phase is ReplicaPhase.FAILED:
            remove.append((r.name, "failed; replaced"))
    live = [r for r in replicas if r.phase not in (ReplicaPhase.FAILED, ReplicaPhase.TERMINATING)]
    is_terminating = any(r.phase is ReplicaPhase.TERMINATING for r in replicas)
    ready = sum(1 for r in live if r.phase is ReplicaPhase.READY)
    # 2. surplus: revisions above their target, cheapest replicas first
    by_revision: dict[str, list[ReplicaState]] = {}
    for r in live:
        by_revision.setdefault(r.revision, []).append(r)
    surplus: list[ReplicaState] = []
    for revision, members in by_revision.items():
        extra = len(members) - desired.get(revision, 0)
        if extra > 0:
            cheapest = sorted(members, key=lambda r: (_REMOVE_FIRST[r.phase], -r.created_at))
            surplus += cheapest[:extra]
    surplus.sort(key=lambda r: (_REMOVE_FIRST[r.phase], -r.created_at))
    kept_surplus: list[ReplicaState] = []
    for r in surplus:
        if r.phase is not ReplicaPhase.READY:
            remove.append((r.name, f"revision {r.revision} has more replicas than it needs"))
        elif ready - 1 >= floor:
            ready -= 1
            remove.append((r.name, f"revision {r.revision} has more replicas than it needs"))
        else:
            kept_surplus.append(r)
    removed = {name for name, _ in remove}
    live = [r for r in live if r.name not in removed]
    # 3. missing replicas, within the surge
    missing = {
        revision: count - sum(1 for r in live if r.revision == revision)
        for revision, count in desired.items()
    }
    budget = max(0, total + max_surge - len(live))
    create: list[str] = []
    for revision in sorted(missing, key=lambda rev: -missing[rev]):
        for _ in range(max(0, missing[revision])):
            if len(create) >= budget:
                break
            create.append(revision)
    waiting = ""
    short = sum(max(0, n) for n in missing.values()) - len(create)
    if short > 0:
        waiting = (
            f"{short} replica(s) wait for room: {len(live)} live, at most "
            f"{total} + maxSurge {max_surge}"
        )
    # 4. a new replica cannot be admitted (no quota for the surge): replace one at a time
    is_blocked = any(r.is_blocked and r.revision in desired for r in live)
    if (
        kept_surplus
        and is_blocked
        and not is_terminating
        and not any(r.phase is ReplicaPhase.READY for r in surplus if r.name in removed)
    ):
        victim = kept_surplus[0]
        if ready - 1 >= blocked_floor:
            remove.append((victim.name, "no room for a surge replica; replacing one at a time"))
            waiting = ""
        else:
            waiting = (
                f"a new replica cannot be admitted and removing an old one would leave "
                f"{ready - 1} ready, below minAvailable {blocked_floor}"
            )
    return RolloutPlan(tuple(create), tuple(remove), waiting)


def replicas_wanted(load: float, target: float) -> int:
    """Replicas that hold ``load`` at ``target`` per replica."""
    return math.ceil(load / target - 1e-9) if load > 0 else 0
