"""The reasons catalogue: every code documented in docs/reasons.md and every documented code
real; storage round trips; and the renderers, which turn facts into the messages users read."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from phalanx.model.reasons import Fact, Reason, ReasonCode, per_flavor, render

DOC = Path(__file__).resolve().parents[3] / "docs" / "reasons.md"


def documented_codes() -> list[str]:
    return re.findall(r"^### `([A-Za-z]+)`$", DOC.read_text(encoding="utf-8"), re.MULTILINE)


def test_every_code_is_documented_once_and_every_documented_code_exists() -> None:
    documented = documented_codes()
    assert sorted(documented) == sorted(set(documented)), "a code is documented twice"
    assert set(documented) == {c.value for c in ReasonCode}


def test_code_values_never_change() -> None:
    # Stored in databases and shown to users: renaming one is a breaking change.
    assert {c.name: c.value for c in ReasonCode} == {
        "BACKOFF": "Backoff",
        "QUEUE_NOT_FOUND": "QueueNotFound",
        "FLAVOR_NOT_FOUND": "FlavorNotFound",
        "QUOTA_EXCEEDED": "QuotaExceeded",
        "EXCEEDS_QUEUE_LIMIT": "ExceedsQueueLimit",
        "UNSCHEDULABLE": "Unschedulable",
        "NEVER_FITS": "NeverFits",
        "PREEMPTING": "Preempting",
        "WAITING_FOR_CAPACITY": "WaitingForCapacity",
        "CREATED": "Created",
        "ADMITTED": "Admitted",
        "STARTED": "Started",
        "SUCCEEDED": "Succeeded",
        "RESTARTING": "Restarting",
        "FAILED": "Failed",
        "OOM_KILLED": "OOMKilled",
        "HANG": "Hang",
        "DEADLINE_EXCEEDED": "DeadlineExceeded",
        "POD_WAITING": "PodWaiting",
        "STARTUP_TIMEOUT": "StartupTimeout",
        "PREEMPTED": "Preempted",
        "REQUEUED": "Requeued",
        "CANCELLED": "Cancelled",
        "QUARANTINED": "Quarantined",
        "RELEASED": "Released",
        "SCALED_UP": "ScaledUp",
        "SCALED_DOWN": "ScaledDown",
        "SCALED_TO_ZERO": "ScaledToZero",
        "RECONCILE_ERROR": "ReconcileError",
        "OWNER_DELETED": "OwnerDeleted",
    }


@pytest.mark.parametrize("code", list(ReasonCode), ids=str)
def test_every_code_renders_even_without_facts(code: ReasonCode) -> None:
    assert isinstance(Reason(code).message, str)


def test_round_trip_through_json() -> None:
    reason = Reason(
        ReasonCode.ADMITTED,
        {
            "attempt": 2,
            "flavor": "h100",
            "pods": ({"pod": "w-0", "node": "n0", "devices": ((0, 1000), (1, 500))},),
            "none": None,
            "ratio": 0.5,
            "ok": True,
        },
    )
    stored = json.loads(json.dumps(reason.to_dict()))
    assert stored["code"] == "Admitted" and stored["message"] == reason.message
    assert stored["facts"]["pods"][0]["devices"] == [[0, 1000], [1, 500]]
    assert Reason.from_dict(stored) == reason


def test_an_unknown_code_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown reason code 'Nope'; known: Backoff, "):
        Reason.from_dict({"code": "Nope", "facts": {}})


def test_event_types_and_what_waiting_cures() -> None:
    assert ReasonCode.UNSCHEDULABLE.event_type == "Warning"
    assert ReasonCode.QUOTA_EXCEEDED.event_type == "Normal"
    assert {c for c in ReasonCode if c.needs_change} == {
        ReasonCode.FLAVOR_NOT_FOUND,
        ReasonCode.EXCEEDS_QUEUE_LIMIT,
        ReasonCode.NEVER_FITS,
    }


def test_per_flavor_codes_by_the_first_that_waiting_may_cure() -> None:
    never = Reason(ReasonCode.NEVER_FITS, {"flavor": "h100", "check": "NoNodes"})
    quota = Reason(ReasonCode.QUOTA_EXCEEDED, {"flavor": "l4", "queue": "a"})
    assert per_flavor([never]) is never
    both = per_flavor([never, quota])
    assert both.code is ReasonCode.QUOTA_EXCEEDED
    assert both.facts == {
        "flavors": (
            {"code": "NeverFits", "facts": never.facts},
            {"code": "QuotaExceeded", "facts": quota.facts},
        )
    }
    assert both.message == f"flavor h100: {never.message}; flavor l4: {quota.message}"
    assert per_flavor([never, never]).code is ReasonCode.NEVER_FITS
    with pytest.raises(ValueError, match="at least one"):
        per_flavor([])


def need(gpu: float, cpu: int = 1) -> dict[str, Fact]:
    return {
        "needed_gpu_milli": int(gpu * 1000),
        "needed_cpu_milli": cpu * 1000,
        "needed_memory_bytes": 0,
    }


QUOTA: dict[str, Fact] = {
    "queue": "a",
    "flavor": "default",
    "resource": "nvidia.com/gpu",
    "used": 0,
    "nominal": 8000,
    "needed": 16000,
}
FAILURE: dict[str, Fact] = {
    "pod": "worker-0",
    "node": "node-0",
    "is_lost": False,
    "exit_code": 7,
    "pod_reason": "Error",
    "pod_message": "",
    "cause": "Application",
    "restarts": 0,
    "max_restarts": 3,
}

# The renderers keep the wording users knew before reasons had facts.
MESSAGES: list[tuple[str, ReasonCode, dict[str, Fact], str]] = [
    (
        "quota-no-cohort",
        ReasonCode.QUOTA_EXCEEDED,
        {**QUOTA, "blocked_by": "NoCohort"},
        "queue a uses 0/8 nvidia.com/gpu of flavor default, the job needs 16 more, and the "
        "queue has no cohort to borrow from",
    ),
    (
        "quota-borrowing-limit",
        ReasonCode.QUOTA_EXCEEDED,
        {**QUOTA, "blocked_by": "BorrowingLimit", "borrowing_limit": 4000},
        "queue a uses 0/8 nvidia.com/gpu of flavor default; the job needs 16 more, above its "
        "borrowing limit of 4",
    ),
    (
        "quota-cohort",
        ReasonCode.QUOTA_EXCEEDED,
        {
            **QUOTA,
            "blocked_by": "Cohort",
            "cohort": "c",
            "cohort_free": 12000,
            "cohort_shared": 12000,
        },
        "queue a uses 0/8 nvidia.com/gpu of flavor default; the job needs 16 more and cohort c "
        "has 12 of 12 shared nvidia.com/gpu free",
    ),
    (
        "gang-with-largest-free-block",
        ReasonCode.UNSCHEDULABLE,
        {
            "flavor": "default",
            **need(8),
            "nodes_total": 3,
            "nodes_fit": 0,
            "rejections": {"insufficient nvidia.com/gpu": 3},
            "largest_free_gpus": 0,
            "largest_free_node": "n0",
            "gang_pods": 4,
            "gang_minimum": 4,
            "pods_placed": 3,
            "pod": "main-3",
        },
        "only 3 of 4 pods fit at once (gang minimum 4, all or nothing); with the others placed, "
        "pod main-3 needs 8 nvidia.com/gpu, 1 cpu on one node; 0/3 nodes of flavor default fit: "
        "3 insufficient nvidia.com/gpu; the largest free GPU block on any node of flavor default "
        "is 0 (n0)",
    ),
    (
        "rejections-most-first",
        ReasonCode.UNSCHEDULABLE,
        {
            "flavor": "f",
            **need(0.5),
            "nodes_total": 3,
            "nodes_fit": 0,
            "rejections": {"untolerated taint x": 1, "no GPU with enough free share": 2},
            "most_free_gpu_milli": 250,
            "most_free_gpu_node": "n2",
        },
        "needs 0.5 nvidia.com/gpu (a share of one GPU), 1 cpu on one node; 0/3 nodes of flavor "
        "f fit: 2 no GPU with enough free share, 1 untolerated taint x; the most free on any "
        "GPU of flavor f is 0.25 (n2)",
    ),
    (
        "topology-no-domain",
        ReasonCode.UNSCHEDULABLE,
        {"flavor": "default", **need(8, cpu=2), "topology_key": "rack", "domains_tried": 0},
        "needs 8 nvidia.com/gpu, 2 cpu in total within one rack domain (topology Required), and "
        "no such domain of flavor default has that much free",
    ),
    (
        "never-fits-node",
        ReasonCode.NEVER_FITS,
        {
            "flavor": "default",
            "check": "Node",
            **need(16),
            "max_node_gpus": 8,
            "max_node_cpu_milli": 32000,
            "max_node_memory_bytes": 2**38,
            "largest_node": "n0",
        },
        "needs 16 nvidia.com/gpu, 1 cpu on one node, but the largest node of flavor default has "
        "8 GPUs (n0); it can never fit",
    ),
    (
        "preempted-within-queue",
        ReasonCode.PREEMPTED,
        {
            "preemptor": "hi",
            "preemptor_queue": "a",
            "preemptor_priority": 5,
            "victim_queue": "a",
            "victim_priority": 0,
            "flavor": "default",
            "needed_gpu_milli": 8000,
            "lost_gpu_s": 7840.0,
            "victim_gpus": 8.0,
            "last_checkpoint_age_s": None,
            "admitted_age_s": 980.0,
        },
        "preempted by hi (priority 5 > 0 in queue a); it needs 8 nvidia.com/gpu on flavor "
        "default; loses 7840 GPU-s of work (8 GPUs, no checkpoint yet, admitted 980s ago)",
    ),
    (
        "preempted-to-reclaim",
        ReasonCode.PREEMPTED,
        {
            "preemptor": "a1",
            "preemptor_queue": "a",
            "victim_queue": "b",
            "cohort": "c",
            "flavor": "default",
            "needed_gpu_milli": 8000,
            "lost_gpu_s": 80.0,
            "victim_gpus": 8.0,
            "last_checkpoint_age_s": 10.0,
        },
        "preempted by a1 (queue a reclaims quota it lent to queue b in cohort c); it needs 8 "
        "nvidia.com/gpu on flavor default; loses 80 GPU-s of work (8 GPUs, last checkpoint 10s "
        "ago)",
    ),
    (
        "failed-never",
        ReasonCode.FAILED,
        {**FAILURE, "restart_policy": "Never", "outcome": "NoRestartsLeft"},
        "pod worker-0 on node node-0 exited with code 7 (restartPolicy Never)",
    ),
    (
        "restart-counted",
        ReasonCode.RESTARTING,
        {**FAILURE, "restarts": 1, "outcome": "Restart", "backoff_s": 0.2},
        "pod worker-0 on node node-0 exited with code 7; restarting the whole gang (restart 1/3) "
        "after 0.2s backoff",
    ),
    (
        "restart-free-after-node-loss",
        ReasonCode.RESTARTING,
        {
            **FAILURE,
            "is_lost": True,
            "pod_reason": "NodeLost",
            "cause": "Node",
            "outcome": "RestartFree",
            "backoff_s": 1.0,
        },
        "pod worker-0 was lost on node node-0 (NodeLost) (node-side failure on node node-0); "
        "restarting the whole gang from its last checkpoint, not counted against maxRestarts "
        "(0/3 used), after 1s backoff",
    ),
    (
        "oom-by-policy",
        ReasonCode.OOM_KILLED,
        {
            **FAILURE,
            "exit_code": 137,
            "pod_reason": "OOMKilled",
            "cause": "OOM",
            "memory_limit_bytes": 64 * 2**20,
            "outcome": "FailByPolicy",
        },
        "pod worker-0 on node node-0 exited with code 137: killed for exceeding its memory "
        "limit 64Mi (failurePolicy.onOOM: Fail; raise the pod's memory or set onOOM: Restart)",
    ),
    (
        "hang-from-the-start",
        ReasonCode.HANG,
        {
            "cause": "Hang",
            "silent_s": 2.4,
            "hang_timeout_s": 1.0,
            "has_reported": False,
            "restart_policy": "OnFailure",
            "outcome": "NoRestartsLeft",
        },
        "hang: no progress report since the attempt started for 2s (hangTimeout 1s)",
    ),
    (
        "backoff-from-the-scheduler",
        ReasonCode.BACKOFF,
        {"wait_s": 2.5, "not_before": 102.5},
        "restarting after backoff in 2.5s",
    ),
    (
        "admitted-with-shares",
        ReasonCode.ADMITTED,
        {
            "attempt": 1,
            "flavor": "h100",
            "pods": (
                {"pod": "w-0", "node": "n0", "devices": ((0, 1000), (1, 1000))},
                {"pod": "w-1", "node": "n1", "devices": ((3, 500),)},
                {"pod": "cpu-0", "node": "n1", "devices": ()},
            ),
        },
        "attempt 1 on flavor h100: w-0 → n0 [gpu 0,1]; w-1 → n1 [gpu 3:0.5]; cpu-0 → n1",
    ),
]


@pytest.mark.parametrize(
    ("code", "facts", "message"), [m[1:] for m in MESSAGES], ids=[m[0] for m in MESSAGES]
)
def test_messages_are_rendered_from_the_facts(
    code: ReasonCode, facts: dict[str, Fact], message: str
) -> None:
    assert render(code, facts) == Reason(code, facts).message == message
