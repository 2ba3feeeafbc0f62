"""The DAG of a pipeline run: which steps can start, which must fail or be skipped because
of an upstream, and the run's phase. Pure: states in, decisions out; no clock, no I/O.

Step states: Pending → Running → Succeeded | Failed, or Pending → Cached (a cache hit),
Skipped (its condition was false, or an upstream was skipped) or UpstreamFailed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum

from phalanx.kinds.pipeline import StepSpec


class StepState(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    CACHED = "Cached"
    FAILED = "Failed"
    UPSTREAM_FAILED = "UpstreamFailed"
    SKIPPED = "Skipped"

    @property
    def is_done(self) -> bool:
        """Finished with an output its dependents can use."""
        return self in (StepState.SUCCEEDED, StepState.CACHED)

    @property
    def is_final(self) -> bool:
        return self not in (StepState.PENDING, StepState.RUNNING)


class RunPhase(StrEnum):
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


def blocked(steps: Sequence[StepSpec], states: Mapping[str, StepState]) -> dict[str, StepState]:
    """Pending steps that can never run, and the state each gets: UpstreamFailed when an
    upstream failed, Skipped when an upstream was skipped. Follows chains in one call."""
    out: dict[str, StepState] = {}
    current = dict(states)
    for step in steps:  # steps are in topological order
        if current.get(step.name, StepState.PENDING) is not StepState.PENDING:
            continue
        ups = [current.get(u, StepState.PENDING) for u in step.upstream]
        if any(s in (StepState.FAILED, StepState.UPSTREAM_FAILED) for s in ups):
            out[step.name] = current[step.name] = StepState.UPSTREAM_FAILED
        elif any(s is StepState.SKIPPED for s in ups):
            out[step.name] = current[step.name] = StepState.SKIPPED
    return out


def ready(steps: Sequence[StepSpec], states: Mapping[str, StepState]) -> list[str]:
    """Pending steps whose upstream steps all finished with an output, in order."""
    return [
        s.name
        for s in steps
        if states.get(s.name, StepState.PENDING) is StepState.PENDING
        and all(states.get(u, StepState.PENDING).is_done for u in s.upstream)
    ]


def run_phase(states: Mapping[str, StepState]) -> RunPhase:
    """Running while any step may still run; then Failed if any failed, else Succeeded."""
    if not all(s.is_final for s in states.values()):
        return RunPhase.RUNNING
    if any(s in (StepState.FAILED, StepState.UPSTREAM_FAILED) for s in states.values()):
        return RunPhase.FAILED
    return RunPhase.SUCCEEDED


def downstream(steps: Sequence[StepSpec], name: str) -> list[str]:
    """Every step that depends on ``name``, directly or not, in order."""
    reached = {name}
    out: list[str] = []
    for step in steps:
        if any(u in reached for u in step.upstream):
            reached.add(step.name)
            out.append(step.name)
    return out


def is_condition_met(value: object, negate: bool) -> bool:
    """Whether a step guarded by a condition whose output is ``value`` runs."""
    return bool(value) != negate
