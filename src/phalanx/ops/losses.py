"""GPU time lost to failures and preemptions, per cause, from a job's events.

A failed attempt loses the work its GPUs did since the attempt was admitted, or since its
last checkpoint when that checkpoint falls inside the attempt. A preemption's loss is the
scheduler's own figure (``lost_gpu_s`` in the ``Preempted`` event). Causes are those of the
failure events (``OOM``, ``Application``, ``Node``, ``Hang``, ``Startup``) and ``Preempted``.

Pure: a function of a ``JobView``; the metrics and the doctor both read it.
"""

from __future__ import annotations

from collections.abc import Mapping

from phalanx.controllers.views import JobView
from phalanx.model.reasons import ReasonCode
from phalanx.model.resources import GPU_MILLI_PER_DEVICE

#: Events that end an attempt with a failure (their ``cause`` fact says which).
_FAILURE_EVENTS = frozenset(
    {ReasonCode.RESTARTING.value, ReasonCode.FAILED.value, ReasonCode.OOM_KILLED.value}
)
PREEMPTED_CAUSE = "Preempted"


def lost_gpu_seconds(job: JobView) -> dict[str, float]:
    """GPU-seconds ``job`` lost, by cause (causes with no loss are left out)."""
    gpus = job.request.gpu_milli / GPU_MILLI_PER_DEVICE
    checkpoint_at = job.progress.checkpoint_at if job.progress else None
    out: dict[str, float] = {}
    attempt_start: float | None = None
    for e in job.events:
        if e.reason == ReasonCode.ADMITTED:
            attempt_start = e.at
        elif e.reason == ReasonCode.PREEMPTED:
            lost = e.facts.get("lost_gpu_s")
            if isinstance(lost, int | float) and lost > 0:
                out[PREEMPTED_CAUSE] = out.get(PREEMPTED_CAUSE, 0.0) + float(lost)
            attempt_start = None
        elif e.reason in _FAILURE_EVENTS and attempt_start is not None and gpus > 0:
            cause = str(e.facts.get("cause") or "Application")
            since = attempt_start
            if checkpoint_at is not None and attempt_start <= checkpoint_at <= e.at:
                since = checkpoint_at
            out[cause] = out.get(cause, 0.0) + gpus * max(0.0, e.at - since)
            attempt_start = None
    return {cause: s for cause, s in out.items() if s > 0}


def gpu_hours(seconds: Mapping[str, float]) -> dict[str, float]:
    """GPU-seconds by cause as GPU-hours, rounded to 0.001."""
    return {cause: round(s / 3600, 3) for cause, s in sorted(seconds.items())}
