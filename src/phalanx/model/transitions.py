"""The job lifecycle as data: every allowed phase change, with what makes it happen.

The store refuses any phase change not listed here (phalanx.store.Store.transition), so a
controller bug, a duplicated or reordered backend event or a second writer can never move a
job along an edge the lifecycle does not have. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping

from phalanx.model.objects import JobPhase

P, A, R = JobPhase.PENDING, JobPhase.ADMITTED, JobPhase.RUNNING
S, F, X, C = JobPhase.SUCCEEDED, JobPhase.FAILED, JobPhase.PREEMPTED, JobPhase.CANCELLED

#: (from, to) → what causes it.
JOB_TRANSITIONS: Mapping[tuple[JobPhase, JobPhase], str] = {
    (P, A): "admitted: every pod has a node and devices; pods are created and launched",
    (A, R): "every pod of the attempt reported running",
    (A, S): "every pod of the attempt succeeded before all were seen running",
    (R, S): "every pod of the attempt succeeded",
    (A, P): "a pod failed and the failure policy restarts the gang; or preempted with no pod left",
    (
        R,
        P,
    ): "a pod failed or hung and the failure policy restarts the gang; or preempted with no pod left",
    (A, F): "a pod failed (or hung) and the failure policy fails the job",
    (R, F): "a pod failed or hung and the failure policy fails the job, or maxRuntime passed",
    (A, X): "chosen as a preemption victim; its pods are being stopped",
    (R, X): "chosen as a preemption victim; its pods are being stopped",
    (X, P): "the last pod of a preempted job stopped: back in the queue",
    (P, C): "cancelled by the user",
    (A, C): "cancelled by the user; pods are stopped",
    (R, C): "cancelled by the user; pods are stopped",
    (X, C): "cancelled by the user while its pods were stopping",
}


def is_allowed(current: str, target: str) -> bool:
    """Whether a job may move from phase ``current`` to ``target`` (names as stored)."""
    try:
        return (JobPhase(current), JobPhase(target)) in JOB_TRANSITIONS
    except ValueError:
        return False
