"""Scaling decisions as events (phalanx.serving.scale_events): one per change of the replicas
wanted, none in a steady state, at most one per interval, the numbers in the facts."""

from __future__ import annotations

import itertools

from phalanx.model.reasons import Reason, ReasonCode
from phalanx.serving.scale_events import ScaleEventState, scale_event

FACTS = {
    "metric": "concurrency",
    "target": 1.0,
    "ready": 1,
    "min": 0,
    "max": 3,
    "stable_value": 1.2,
    "panic_value": 4.2,
    "wanted": 5,
    "clamped": True,
}


def run(
    desired_by_second: list[int], live: int = 0, interval_s: float = 10.0
) -> list[tuple[float, Reason]]:
    """Decisions once a second; the events recorded, with their times."""
    state, out = ScaleEventState(), []
    for t, desired in enumerate(desired_by_second):
        event, state = scale_event(
            state,
            service="echo",
            desired=desired,
            live=live,
            decision="Panic",
            facts=FACTS,
            now=float(t),
            interval_s=interval_s,
        )
        if event is not None:
            out.append((float(t), event))
    return out


def test_a_steady_state_records_nothing() -> None:
    assert run([2] * 100, live=2) == []


def test_each_change_is_an_event_with_the_numbers() -> None:
    events = run([1] * 3 + [3] * 15 + [1] * 15 + [0] * 5, live=1)
    assert [(t, e.code) for t, e in events] == [
        (3.0, ReasonCode.SCALED_UP),
        (18.0, ReasonCode.SCALED_DOWN),
        (33.0, ReasonCode.SCALED_TO_ZERO),
    ]
    up = events[0][1]
    assert up.facts["from_replicas"] == 1 and up.facts["to_replicas"] == 3
    assert up.facts["panic_value"] == 4.2 and up.facts["decision"] == "Panic"
    assert up.message == (
        "Service echo scaled from 1 to 3 replica(s): panic window: 4.20 concurrent requests at "
        "a target of 1 per replica wants 5 (ready 1), bounded by minReplicas 0 / maxReplicas 3"
    )


def test_changes_within_the_interval_are_folded_into_one_later_event() -> None:
    # 1 → 2 → 3 → 4 within a few seconds of the first event (at 0 → 1)
    events = run([1, 2, 3, 4] + [4] * 20, live=0)
    assert [(t, e.code) for t, e in events] == [
        (0.0, ReasonCode.SCALED_UP),
        (10.0, ReasonCode.SCALED_UP),
    ]
    later = events[1][1]
    assert (later.facts["from_replicas"], later.facts["to_replicas"]) == (1, 4)
    assert later.facts["coalesced"] == 2  # 1 → 2 → 3 → 4: three changes in one event
    assert later.message.endswith("; 2 change(s) in between not recorded")


def test_flapping_back_within_the_interval_records_nothing() -> None:
    events = run([1] + [2, 1] * 4 + [1] * 20, live=0)
    assert [(t, e.code) for t, e in events] == [(0.0, ReasonCode.SCALED_UP)]


def test_flapping_for_long_records_at_most_one_event_per_interval() -> None:
    events = run([1] + [2, 1] * 50, live=0)
    times = [t for t, _ in events]
    assert len(times) == 10
    assert all(b - a >= 10.0 for a, b in itertools.pairwise(times))


def test_a_restarted_controller_does_not_record_what_is_already_there() -> None:
    assert run([3] * 10, live=3) == []
    assert [e.facts["from_replicas"] for _, e in run([3] * 10, live=2)] == [2]


def test_scale_to_zero_and_from_zero_messages() -> None:
    state = ScaleEventState(recorded=1)
    event, state = scale_event(
        state,
        service="echo",
        desired=0,
        live=1,
        decision="ScaleToZero",
        facts={"idle_s": 61.0, "scale_to_zero_after_s": 60.0},
        now=100.0,
        interval_s=10.0,
    )
    assert event is not None and event.code is ReasonCode.SCALED_TO_ZERO
    assert (
        event.message == "Service echo scaled from 1 to 0 replica(s): idle for 61 s "
        "(scaleToZeroAfter 60 s)"
    )
    event, _ = scale_event(
        state,
        service="echo",
        desired=1,
        live=0,
        decision="ScaleFromZero",
        facts={"waiting": 3},
        now=101.0,
        interval_s=10.0,
    )
    assert event is None  # within the interval of the previous one
    event, _ = scale_event(
        state,
        service="echo",
        desired=1,
        live=0,
        decision="ScaleFromZero",
        facts={"waiting": 3},
        now=111.0,
        interval_s=10.0,
    )
    assert event is not None and event.code is ReasonCode.SCALED_UP
    assert event.message == (
        "Service echo scaled from 0 to 1 replica(s): 3 request(s) waiting at zero replicas"
    )
