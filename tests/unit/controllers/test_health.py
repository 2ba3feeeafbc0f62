"""Node quarantine rules on the real store (SQLite): evidence, threshold across jobs,
window, cool-down and release; the quarantine's Reason and the node's events."""

from __future__ import annotations

from pathlib import Path

from phalanx.controllers.health import (
    HealthTracker,
    NodeFailure,
    QuarantinePolicy,
    apply_quarantine,
)
from phalanx.model.reasons import ReasonCode
from phalanx.store import open_store
from phalanx.testing import make_node


def tracker(tmp_path: Path, now: list[float]) -> HealthTracker:
    policy = QuarantinePolicy(threshold=3, window_s=100, min_jobs=2, cooldown_s=50)
    return HealthTracker(open_store(None, tmp_path), lambda: now[0], policy)


def fail(t: HealthTracker, at: float, job: str, attempt: int = 1, pod: str = "w-0") -> bool:
    return t.record_failure("n0", NodeFailure(at, job, attempt, pod, "NodeFault")).is_quarantined


def test_failures_of_different_jobs_within_the_window_quarantine(tmp_path: Path) -> None:
    now = [0.0]
    t = tracker(tmp_path, now)
    assert not fail(t, 1, "a")
    assert not fail(t, 2, "a", pod="w-1")  # same attempt of the same job: counted once
    assert not fail(t, 3, "a", attempt=2)  # 2 failures, 1 job: one broken job is not enough
    assert fail(t, 4, "b")
    health = t.get("n0")
    assert health.quarantine is not None
    assert health.quarantine.code is ReasonCode.QUARANTINED
    assert dict(health.quarantine.facts) == {
        "node": "n0",
        "cause": "NodeSideFailures",
        "failures": 3,
        "jobs": 2,
        "window_s": 100,
        "threshold": 3,
        "recent": (
            {"job": "a", "pod": "w-0", "reason": "NodeFault"},
            {"job": "a", "pod": "w-0", "reason": "NodeFault"},
            {"job": "b", "pod": "w-0", "reason": "NodeFault"},
        ),
        "until": 54.0,
    }
    assert health.quarantine_reason == health.quarantine.message
    nodes = apply_quarantine([make_node("n0").obj(), make_node("n1").obj()], t.all())
    assert [n.is_quarantined for n in nodes] == [True, False]
    # Persisted: a new tracker on the same store sees it.
    assert tracker(tmp_path, now).get("n0").is_quarantined


def test_old_evidence_expires_and_cool_down_releases(tmp_path: Path) -> None:
    now = [0.0]
    t = tracker(tmp_path, now)
    fail(t, 1, "a")
    fail(t, 2, "b")
    assert not fail(t, 150, "c")  # the first two fell out of the 100 s window
    assert not fail(t, 155, "d")
    assert fail(t, 160, "e")
    assert t.release_expired(200.0) == []
    assert t.release_expired(210.0) == ["n0"]
    assert not t.get("n0").is_quarantined and not t.get("n0").failures


def test_release_by_hand_and_immediate_quarantine(tmp_path: Path) -> None:
    now = [5.0]
    t = tracker(tmp_path, now)
    health = t.quarantine_now("n0", "XID 79: GPU fell off the bus")
    assert health.quarantine is not None
    assert (health.quarantine.code, dict(health.quarantine.facts)) == (
        ReasonCode.QUARANTINED,
        {
            "node": "n0",
            "cause": "CriticalGpuError",
            "detail": "XID 79: GPU fell off the bus",
            "until": 55.0,
        },
    )
    assert health.quarantine_reason == "XID 79: GPU fell off the bus"
    assert t.release("n0")
    assert not t.release("n0")
    events = [(e.type, e.reason, e.facts) for e in t.store.object_events("Node", "n0")]
    assert events == [
        ("Warning", "Quarantined", {**health.quarantine.facts}),
        ("Normal", "Released", {"node": "n0", "by": "user"}),
    ]


def test_a_quarantine_stored_before_reasons_had_facts_still_reads(tmp_path: Path) -> None:
    now = [5.0]
    t = tracker(tmp_path, now)
    legacy = {"failures": [], "quarantinedAt": 1.0, "quarantineReason": "XID 48 (old row)"}
    t.store.apply([("NodeHealth", "n0", legacy)], [], 1.0)
    health = t.get("n0")
    assert health.quarantine is not None and health.quarantine.code is ReasonCode.QUARANTINED
    assert health.quarantine_reason == "XID 48 (old row)"
