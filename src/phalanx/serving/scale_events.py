"""Which of a Service's autoscaling decisions become events. Pure: no clock, I/O or store (the
Service controller passes ``now`` and records what comes back).

An event (``ScaledUp``, ``ScaledDown``, ``ScaledToZero``; facts in docs/reasons.md) is due when
the replicas wanted differ from the count last recorded, never for a decision that keeps the
count, so a steady state records nothing. At most one event per ``interval_s``: a change
within it waits until the interval has passed and is then recorded from the count last
recorded, with ``coalesced`` counting the changes it folds; a change undone within the
interval records nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from phalanx.model.reasons import Fact, Reason, ReasonCode

__all__ = ["ScaleEventState", "scale_event"]


@dataclass(frozen=True, slots=True)
class ScaleEventState:
    """What was recorded last for one Service (``recorded`` None: nothing yet)."""

    recorded: int | None = None
    recorded_at: float = float("-inf")
    last_desired: int | None = None
    #: Changes of the replicas wanted since the last event.
    changes: int = 0


def scale_event(
    state: ScaleEventState,
    *,
    service: str,
    desired: int,
    live: int,
    decision: str,
    facts: Mapping[str, Fact],
    now: float,
    interval_s: float,
) -> tuple[Reason | None, ScaleEventState]:
    """The event due now, if any, and the state to keep. ``live``: replicas the Service has
    (not failed or leaving), taken as the recorded count the first time (so a restarted
    controller does not record again what was already there); ``decision``: the
    autoscaler's code; ``facts``: its numbers."""
    recorded = state.recorded if state.recorded is not None else live
    changes = state.changes
    if state.last_desired is not None and desired != state.last_desired:
        changes += 1
    if desired == recorded:
        return None, ScaleEventState(recorded, state.recorded_at, desired, 0)
    if now - state.recorded_at < interval_s:
        return None, ScaleEventState(recorded, state.recorded_at, desired, changes)
    if desired == 0:
        code = ReasonCode.SCALED_TO_ZERO
    elif desired > recorded:
        code = ReasonCode.SCALED_UP
    else:
        code = ReasonCode.SCALED_DOWN
    reason = Reason(
        code,
        {
            **facts,
            "service": service,
            "from_replicas": recorded,
            "to_replicas": desired,
            "decision": decision,
            "coalesced": max(0, changes - 1),
        },
    )
    return reason, ScaleEventState(desired, now, desired, 0)
