"""Services end to end: real replica processes, the real router, real HTTP.

A canary's measured split, scale to zero and back, a rolling update under load without a
failed request, a killed replica replaced while requests go elsewhere, and a scale-up held by
quota showing the scheduler's reason."""

from __future__ import annotations

import http.client
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path

from service_harness import ServingHarness, get, service_manifest

from phalanx.api.services import service_out


class Load:
    """``clients`` threads sending GET requests through the router until stopped; counts
    answers by status and by the revision that served them."""

    def __init__(self, port: int, path: str, clients: int = 4) -> None:
        self.port, self.path = port, path
        self.statuses: Counter[int] = Counter()
        self.revisions: Counter[str] = Counter()
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.statuses.values()) + len(self.errors)

    def _run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self._stop.is_set():
            try:
                status, data = get(conn, self.path)
            except (OSError, http.client.HTTPException) as exc:
                with self._lock:
                    self.errors.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
                continue
            with self._lock:
                self.statuses[status] += 1
                if status == 200:
                    self.revisions[str(data.get("revision"))] += 1
                else:
                    self.errors.append(f"{status}: {data}")
            time.sleep(0.002)
        conn.close()


def test_a_canary_at_10_percent_gets_10_percent_of_2000_requests(
    serving: ServingHarness,
) -> None:
    serving.plane.apply([service_manifest("web", minReplicas=2, env={"VERSION": "a"})])
    first = serving.wait_ready("web", 2).revision
    # a new template, with 10 % of the traffic; the old revision keeps the rest
    canary = service_manifest(
        "web",
        minReplicas=2,
        env={"VERSION": "b"},
        traffic=[{"revision": first, "percent": 90}, {"revision": "latest", "percent": 10}],
    )
    serving.plane.apply([canary])
    view = serving.view("web")
    second = view.revision
    assert second != first
    # 2 replicas split 90/10: round(1.8) = 2 for the old revision, and at least one for
    # any revision that gets traffic
    serving.wait_ready("web", 3)
    by_revision = Counter(r.revision for r in serving.view("web").replicas)
    assert by_revision == {first: 2, second: 1}
    served: Counter[str] = Counter()
    conn = serving.connection()
    for _ in range(2000):
        status, data = get(conn, "/web/")
        assert status == 200, data
        served[str(data["revision"])] += 1
    share = served[second] / 2000 * 100
    assert 7.0 <= share <= 13.0, served
    revisions = {r.name: r for r in serving.view("web").revisions}
    assert revisions[first].percent == 90 and revisions[second].percent == 10
    # promote: the canary takes everything; the old revision's replicas go
    serving.services.promote("web")
    serving.wait(
        "only the new revision",
        lambda: (
            {r.revision for r in serving.view("web").replicas} == {second}
            and serving.view("web").ready == 2
        ),
    )
    status, data = get(conn, "/web/")
    assert (status, data["revision"]) == (200, second)
    # rollback: back to the first template, all traffic
    serving.services.rollback("web")
    assert serving.view("web").revision == first
    serving.wait(
        "only the first revision",
        lambda: (
            {r.revision for r in serving.view("web").replicas} == {first}
            and serving.view("web").ready == 2
        ),
    )
    conn.close()


def test_scale_to_zero_and_back_the_first_request_waits_and_succeeds(
    serving: ServingHarness,
) -> None:
    serving.services.config.scale_event_interval_s = 0.5  # each change its own event
    serving.plane.apply(
        [
            service_manifest(
                "lazy",
                minReplicas=0,
                maxReplicas=2,
                scaleToZeroAfter="1s",
                autoscaling={"stableWindow": "2s", "panicWindow": "1s", "target": 5},
                env={"STARTUP_DELAY_S": "0.3"},
            )
        ]
    )
    serving.wait("the route", lambda: any(r.service == "lazy" for r in serving.services.routes()))
    assert serving.view("lazy").replicas == ()
    conn = serving.connection()
    status, _ = get(conn, "/lazy/first")  # no replica yet: waits for one
    assert status == 200
    # idle: back to zero
    serving.wait("zero replicas", lambda: not serving.view("lazy").replicas, timeout_s=30)
    decisions = serving.view("lazy").decisions
    assert decisions[-1].replicas == 0 and decisions[-1].code == "ScaleToZero"
    conn.close()
    started = time.monotonic()
    conn = serving.connection()
    status, data = get(conn, "/lazy/again")
    waited_s = time.monotonic() - started
    assert status == 200 and data["path"] == "/again"
    assert waited_s >= 0.3  # it waited for the replica's start
    assert any(d.code == "ScaleFromZero" for d in serving.view("lazy").decisions)
    conn.close()
    # every change of scale is an event with its numbers, in the Service's API answer
    serving.wait("three events", lambda: len(serving.view("lazy").events) >= 3)
    events = service_out(serving.view("lazy"))["events"]
    assert [
        (e["reason"], e["facts"]["from_replicas"], e["facts"]["to_replicas"]) for e in events
    ] == [("ScaledUp", 0, 1), ("ScaledToZero", 1, 0), ("ScaledUp", 0, 1)]
    assert events[0]["facts"]["decision"] == "ScaleFromZero"
    assert events[1]["facts"]["decision"] == "ScaleToZero"
    assert events[1]["facts"]["idle_s"] >= 1.0
    assert events[1]["message"].startswith("Service lazy scaled from 1 to 0 replica(s): idle")
    # back at zero; a steady state (the loop deciding 0 every 50 ms) records nothing more
    serving.wait("zero again", lambda: len(serving.view("lazy").events) == 4, timeout_s=30)
    assert serving.view("lazy").events[3].reason == "ScaledToZero"
    time.sleep(2.0)
    assert len(serving.view("lazy").events) == 4


def test_a_rolling_update_under_continuous_load_fails_no_request(
    serving: ServingHarness,
) -> None:
    manifest = service_manifest(
        "roll", minReplicas=2, rollout={"maxSurge": 1, "maxUnavailable": 0}, env={"V": "1"}
    )
    serving.plane.apply([manifest])
    old = serving.wait_ready("roll", 2).revision
    with Load(serving.port, "/roll/") as load:
        serving.wait("some load", lambda: load.total > 50)
        serving.plane.apply(
            [service_manifest("roll", minReplicas=2, rollout={"maxSurge": 1}, env={"V": "2"})]
        )
        new = serving.view("roll").revision
        serving.wait(
            "every replica on the new revision",
            lambda: (
                {r.revision for r in serving.view("roll").replicas} == {new}
                and serving.view("roll").ready == 2
            ),
            timeout_s=60,
        )
        count = load.total
        serving.wait("load after the update", lambda: load.total > count + 50)
    assert load.errors == []
    assert load.revisions[old] > 0 and load.revisions[new] > 0
    assert set(load.statuses) == {200}


def test_a_killed_replica_is_replaced_and_requests_go_elsewhere(
    serving: ServingHarness,
) -> None:
    serving.plane.apply([service_manifest("sturdy", minReplicas=2)])
    view = serving.wait_ready("sturdy", 2)
    victim = view.replicas[0].name
    # One client, one request at a time: the router's ties must go round both replicas,
    # also to one it has no pooled connection to yet. (Were the tie lost whenever the
    # slow path picks again, every request would go to the first replica reached, for
    # ever; demanding both, whichever the victim is, makes that fail every time.)
    serving.wait("both replicas in the routes", lambda: _routed(serving, "sturdy", 2))
    time.sleep(5 * serving.router.router.refresh_interval_s)
    conn = serving.connection()
    pids = {}
    for _ in range(20):
        _, data = get(conn, "/sturdy/")
        pids[data["replica"]] = data["pid"]
    conn.close()
    assert set(pids) == {r.name for r in view.replicas}, pids
    with Load(serving.port, "/sturdy/", clients=2) as load:
        serving.wait("some load", lambda: load.total > 50)
        os.kill(pids[victim], signal.SIGKILL)
        serving.wait(
            "a replacement",
            lambda: (
                victim not in {r.name for r in serving.view("sturdy").replicas}
                and serving.view("sturdy").ready == 2
            ),
        )
        count = load.total
        serving.wait("load after the replacement", lambda: load.total > count + 50)
    # At most the requests in flight on the killed replica at that instant fail (one per
    # client); every later one went to the other replica, then to the replacement.
    assert len(load.errors) <= 2, load.errors
    assert load.statuses[200] > 100
    replicas = {r.name for r in serving.view("sturdy").replicas}
    assert victim not in replicas and len(replicas) == 2


def _routed(serving: ServingHarness, service: str, ready: int) -> bool:
    """The controller publishes ``ready`` ready endpoints of ``service`` (the router reads
    them within its refresh interval, 50 ms: the caller waits that long too)."""
    routes = [r for r in serving.services.routes() if r.service == service]
    return bool(routes) and len(routes[0].ready_endpoints()) == ready


def test_a_scale_up_blocked_by_quota_shows_the_reason(tmp_path: Path) -> None:
    harness = ServingHarness(tmp_path, cpu=1)
    try:
        harness.plane.apply(
            [service_manifest("big", minReplicas=3, resources={"cpu": "400m", "memory": "32Mi"})]
        )

        def one_pending() -> bool:
            replicas = harness.view("big").replicas
            return (
                sum(r.phase == "Ready" for r in replicas) == 2
                and sum(r.phase == "Pending" for r in replicas) == 1
            )

        harness.wait("2 ready and 1 pending", one_pending)
        pending = next(r for r in harness.view("big").replicas if r.phase == "Pending")
        assert pending.reason is not None
        assert pending.reason["code"] == "QuotaExceeded"
        assert "cpu" in pending.reason["message"]
    finally:
        harness.close()
