"""Several routers' samples of one service summed into one stream (phalanx.serving.load)."""

from __future__ import annotations

import pytest

from phalanx.serving.autoscaler import AutoscalerSpec, AutoscalerState, decide, observe
from phalanx.serving.endpoints import LoadSample
from phalanx.serving.load import LoadMerger


def sample(source: str, at: float, in_flight: int, total: int, **kw: float) -> LoadSample:
    return LoadSample(
        "svc",
        at,
        in_flight,
        int(kw.pop("waiting", 0)),
        total,
        source=source,
        in_flight_avg=kw.pop("avg", None),
    )


def test_nothing_merges_to_nothing() -> None:
    assert LoadMerger().merge([], 10.0) is None


def test_two_routers_in_flight_and_waiting_are_summed() -> None:
    merger = LoadMerger()
    merged = merger.merge(
        [sample("a", 10.0, 3, 100, avg=2.5, waiting=1), sample("b", 10.2, 4, 7, avg=3.5)], 10.3
    )
    assert merged is not None
    assert (merged.in_flight, merged.waiting, merged.in_flight_avg) == (7, 1, 6.0)
    assert merged.at == 10.2 and merged.service == "svc"


def test_a_router_that_sent_nothing_this_time_still_counts_until_stale() -> None:
    merger = LoadMerger(fresh_for_s=5.0)
    merger.merge([sample("a", 10.0, 3, 100, avg=3.0), sample("b", 10.0, 4, 7, avg=4.0)], 10.0)
    merged = merger.merge([sample("a", 11.0, 1, 110, avg=1.0)], 11.0)
    assert merged is not None and merged.in_flight_avg == 5.0  # a's 1 + b's last 4
    merged = merger.merge([sample("a", 16.0, 1, 120, avg=1.0)], 16.0)
    assert merged is not None and merged.in_flight_avg == 1.0  # b silent for 6 s: gone


def test_request_counts_are_running_sums_of_each_routers_increase() -> None:
    merger = LoadMerger()
    first = merger.merge([sample("a", 1.0, 0, 100), sample("b", 1.0, 0, 50)], 1.0)
    assert first is not None and first.requests_total == 0  # new sources add nothing yet
    second = merger.merge([sample("a", 2.0, 0, 110), sample("b", 2.0, 0, 53)], 2.0)
    assert second is not None and second.requests_total == 13
    # a restarted router counts from zero again: its new count is its increase
    third = merger.merge([sample("a", 3.0, 0, 4)], 3.0)
    assert third is not None and third.requests_total == 17


def test_interleaved_routers_give_the_autoscaler_their_sum_not_their_mean() -> None:
    # Two routers each with 4 requests in flight, a target of 2 per replica: 4 replicas. Fed
    # one by one (as before merging), the samples would average to 4 and want only 2.
    spec = AutoscalerSpec(target=2.0, max_replicas=10)
    merger, state = LoadMerger(), AutoscalerState()
    for t in range(30):
        source = "a" if t % 2 else "b"
        merged = merger.merge([sample(source, float(t), 4, t, avg=4.0)], float(t))
        assert merged is not None
        state = observe(spec, state, merged)
    assert decide(spec, state, 30.0, ready=4).desired == 4


@pytest.mark.parametrize("n", [1, 3])
def test_one_router_is_passed_through(n: int) -> None:
    merger = LoadMerger()
    samples = [sample("", float(i), 2, 10 * i, avg=2.0) for i in range(n)]
    merged = merger.merge(samples, float(n))
    assert merged is not None
    assert (merged.in_flight, merged.in_flight_avg) == (2, 2.0)
    assert merged.requests_total == 10 * (n - 1)
