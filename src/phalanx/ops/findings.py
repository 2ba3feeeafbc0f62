"""Findings: what the doctor concludes, as data.

A finding names a root cause: ``code`` (from ``FindingCode``), the ``object`` the cause lies in
(``job/NAME``, ``queue/NAME``, ``node/NAME``, ``flavor/NAME``, ``cohort/NAME``,
``service/NAME``, ``pipelinerun/NAME``), the ``subject``
it affects (the job that waits, fails or idles; equal to ``object`` when the cause is the
subject itself), the ``evidence`` (facts with the numbers, and quoted events), the ``fix`` (a
command or a spec change) and a ``confidence`` in [0, 1]. Pure: standard library only.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class Severity(StrEnum):
    """How urgent a finding is: ``critical`` (work fails or can never run), ``warning`` (work
    waits or wastes capacity until someone acts), ``info`` (work waits its turn)."""

    CRITICAL = "critical"
    WARNING = "warning"
    INFO = "info"

    @property
    def rank(self) -> int:
        """0 for the most urgent."""
        return (Severity.CRITICAL, Severity.WARNING, Severity.INFO).index(self)


class FindingCode(StrEnum):
    """The catalogue of root causes (docs/operations.md). Values are shown and matched by
    scripts and agents: never change one."""

    # Queue, quota, cohort
    QUEUE_MISSING = "QueueMissing"
    QUOTA_EXHAUSTED = "QuotaExhausted"
    BORROWING_LIMIT_REACHED = "BorrowingLimitReached"
    COHORT_EXHAUSTED = "CohortExhausted"
    JOB_EXCEEDS_QUEUE = "JobExceedsQueueLimit"
    # Placement: flavors, gangs, fragmentation, taints, capacity
    FLAVOR_MISSING = "FlavorMissing"
    NO_NODES_FOR_FLAVOR = "NoNodesForFlavor"
    GANG_TOO_WIDE = "GangTooWide"
    FRAGMENTATION = "Fragmentation"
    UNTOLERATED_TAINT = "UntoleratedTaint"
    CAPACITY_BUSY = "CapacityBusy"
    # Nodes
    NODE_QUARANTINED = "NodeQuarantined"
    NODE_NOT_READY = "NodeNotReady"
    NODE_LOST = "NodeLost"
    NODE_FAILING = "NodeFailing"
    # Preemption
    PREEMPTED_BY_PRIORITY = "PreemptedByPriority"
    RECLAIMED_BY_QUEUE = "ReclaimedByQueue"
    # Runtime
    OOM_LOOP = "OOMLoop"
    CRASH_LOOP = "CrashLoop"
    APPLICATION_FAILED = "ApplicationFailed"
    HANG = "Hang"
    DEADLINE_EXCEEDED = "DeadlineExceeded"
    STALE_CHECKPOINT = "StaleCheckpoint"
    IDLE_GPUS = "IdleGPUs"
    IMAGE_PULL_FAILED = "ImagePullFailed"
    CONTAINER_CONFIG_ERROR = "ContainerConfigError"
    PODS_NEVER_STARTED = "PodsNeverStarted"
    RECONCILE_ERROR = "ReconcileError"
    # Services and pipelines
    SERVICE_UNAVAILABLE = "ServiceUnavailable"
    SERVICE_CRASH_LOOP = "ServiceCrashLoop"
    SERVICE_NOT_READY = "ServiceNotReady"
    SERVICE_COLD_STARTS = "ServiceColdStarts"
    SERVICE_ERRORS = "ServiceErrors"
    PIPELINE_STEP_FAILED = "PipelineStepFailed"


@dataclass(frozen=True, slots=True)
class Finding:
    """One root cause with its evidence; see the module docstring."""

    code: FindingCode
    severity: Severity
    object: str
    summary: str
    fix: str
    confidence: float
    subject: str = ""
    facts: Mapping[str, builtins.object] = field(default_factory=dict)
    #: Events quoted as evidence: ``"<at> <reason>: <message>"``.
    events: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, builtins.object]:
        """The finding as JSON: ``{code, severity, object, subject, summary, evidence: {facts,
        events}, fix, confidence}``."""
        return {
            "code": self.code.value,
            "severity": self.severity.value,
            "object": self.object,
            "subject": self.subject or self.object,
            "summary": self.summary,
            "evidence": {"facts": dict(self.facts), "events": list(self.events)},
            "fix": self.fix,
            "confidence": round(self.confidence, 2),
        }


def ordered(findings: list[Finding]) -> list[Finding]:
    """Findings most urgent first, then by object, without duplicates (same code, object and
    subject: the first kept)."""
    seen: set[tuple[str, str, str]] = set()
    out = []
    for f in sorted(findings, key=lambda f: (f.severity.rank, -f.confidence, f.object, f.code)):
        key = (f.code.value, f.object, f.subject)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out
