"""Replicas' answers counted by status class per service and replica: in the router (as their
heads arrive), through the load report's JSON (a follower's router writes it to the store),
and summed over routers with a window (phalanx.serving.load)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
from routerfakes import FakeTransport, NoSink

from phalanx.serving.endpoints import (
    Endpoint,
    LoadSample,
    Route,
    load_from_json,
    load_to_json,
)
from phalanx.serving.http1 import _ClientConn, _Upstream
from phalanx.serving.load import LoadMerger
from phalanx.serving.router import Router

A, B = "http://127.0.0.1:1001", "http://127.0.0.1:1002"


class Routes:
    def routes(self) -> Sequence[Route]:
        return (
            Route(
                "web",
                "/web",
                endpoints=(Endpoint(A, "r1", "web-a"), Endpoint(B, "r1", "web-b")),
            ),
        )


def answer(router: Router, url: str, response: bytes) -> None:
    """One request of service web relayed from replica ``url``, which answers ``response``."""
    client = _ClientConn(router)
    client.transport = FakeTransport()  # type: ignore[assignment]
    client.busy = True
    up = _Upstream(router, url)
    up.transport = FakeTransport()  # type: ignore[assignment]
    up.send(client, router._services["web"], b"GET / HTTP/1.1\r\n\r\n", head=False)
    up.data_received(response)


def reply(status: int, reason: str = "X") -> bytes:
    return f"HTTP/1.1 {status} {reason}\r\nContent-Length: 2\r\n\r\nok".encode()


def test_the_router_counts_each_replicas_final_status_by_class() -> None:
    router = Router(Routes(), NoSink())
    router.refresh()
    for _ in range(3):
        answer(router, A, reply(500))
    answer(router, A, reply(200))
    # an interim 103 is not an answer: only the final 503 after it counts
    answer(router, B, b"HTTP/1.1 103 Early Hints\r\n\r\n" + reply(503))
    answer(router, B, reply(404))
    answer(router, B, reply(302))
    (sample,) = router.samples()
    assert sample.responses == (
        ("web-a", "2xx", 1),
        ("web-a", "5xx", 3),
        ("web-b", "3xx", 1),
        ("web-b", "4xx", 1),
        ("web-b", "5xx", 1),
    )


def test_a_replica_no_longer_routed_is_counted_under_its_url() -> None:
    router = Router(Routes(), NoSink())
    router.refresh()
    router._replica_of.clear()  # as after a route change that dropped the replica
    answer(router, A, reply(500))
    assert router.samples()[0].responses == ((A, "5xx", 1),)


def test_responses_survive_the_load_reports_json_and_old_reports_have_none() -> None:
    sample = LoadSample("web", 1.0, 0, 0, 7, responses=(("web-a", "2xx", 5), ("web-a", "5xx", 2)))
    assert load_from_json(load_to_json(sample)) == sample
    old = load_to_json(sample)
    del old["responses"]
    assert load_from_json(old).responses == ()


def counts(*items: tuple[str, str, int]) -> tuple[tuple[str, str, int], ...]:
    return tuple(items)


def sample(source: str, at: float, responses: tuple[tuple[str, str, int], ...]) -> LoadSample:
    return LoadSample("web", at, 0, 0, 0, source=source, responses=responses)


def test_merged_responses_are_sums_of_each_routers_increases() -> None:
    merger = LoadMerger()
    # each router's first sample is its baseline
    merger.merge([sample("a", 1.0, counts(("r1", "5xx", 10))), sample("b", 1.0, ())], 1.0)
    assert merger.responses == {}
    merged = merger.merge(
        [
            sample("a", 2.0, counts(("r1", "2xx", 4), ("r1", "5xx", 13))),
            sample("b", 2.0, counts(("r1", "5xx", 2))),  # new key: all of it is new
        ],
        2.0,
    )
    assert merged is not None
    assert merged.responses == (("r1", "2xx", 4), ("r1", "5xx", 5))
    # a restarted router (its count went down) adds its new value
    merger.merge([sample("a", 3.0, counts(("r1", "2xx", 1), ("r1", "5xx", 13)))], 3.0)
    assert merger.responses == {("r1", "2xx"): 5, ("r1", "5xx"): 5}


@pytest.mark.parametrize(
    ("later_s", "recent"),
    [
        (100.0, (("r1", "2xx", 4), ("r1", "5xx", 3))),
        (160.0, (("r1", "5xx", 3),)),  # the 2xx gained at 50 s left the 100 s window
        (250.0, ()),
    ],
    ids=["both-in-window", "older-gone", "all-gone"],
)
def test_recent_responses_count_only_the_window(
    later_s: float, recent: tuple[tuple[str, str, int], ...]
) -> None:
    merger = LoadMerger(window_s=100.0)
    merger.merge([sample("a", 0.0, ())], 0.0)
    merger.merge([sample("a", 50.0, counts(("r1", "2xx", 4)))], 50.0)
    merger.merge([sample("a", 100.0, counts(("r1", "2xx", 4), ("r1", "5xx", 3)))], 100.0)
    merger.merge([], later_s)  # the loop merges every turn, samples or not
    assert merger.recent_responses() == recent
    assert merger.responses == {("r1", "2xx"): 4, ("r1", "5xx"): 3}  # totals stay


@pytest.mark.parametrize(
    ("responses", "message"),
    [
        ([["web-a", "6xx", 1]], "status class '6xx'"),
        ([["web-a", "2xx"]], "not enough values"),
        ([["web-a", "2xx", 1]] * 4097, "at most 4096 counts"),
    ],
    ids=["bad-class", "short-item", "too-many"],
)
def test_a_load_report_with_bad_responses_is_refused_naming_them(
    responses: list[list[object]], message: str
) -> None:
    data = load_to_json(LoadSample("web", 1.0, 0, 0, 1))
    data["responses"] = responses
    with pytest.raises(ValueError, match=message):
        load_from_json(data)
