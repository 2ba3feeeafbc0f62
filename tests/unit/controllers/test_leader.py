"""Leader election: the pure decision (``next_state``), the elector's effects on a real SQLite
store with an injected clock, and two control planes sharing one store and one (sim) backend:
only the leader drives the backend, a follower's writes land in the store and the leader's
next tick acts on them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from phalanx.backends.sim import SimBackend, VirtualClock
from phalanx.controllers.leader import (
    EXPIRY_MARGIN_S,
    Action,
    LeaderElector,
    LeaseConfig,
    Role,
    Step,
    next_state,
)
from phalanx.controllers.plane import ControlPlane, ControlPlaneConfig
from phalanx.model.objects import JobPhase
from phalanx.model.specs import job_to_manifest
from phalanx.store import JobRecord, Lease, Store, Transition, open_store
from phalanx.testing import make_job, make_node, queue_manifests

T0 = 1000.0
TTL = 9.0


def lease(holder: str, term: int = 1, expires_at: float = T0 + TTL) -> Lease:
    return Lease("controller", holder, term, T0, T0, expires_at)


# ---- next_state: the pure decision ----


@pytest.mark.parametrize(
    ("seen", "held_term", "expected"),
    [
        pytest.param(lease("me"), None, Step(Action.LEAD, 1, 3.0), id="took-it"),
        pytest.param(lease("me", 4), 4, Step(Action.KEEP, 4, 3.0), id="renewed"),
        pytest.param(lease("me", 6), 4, Step(Action.RELEAD, 6, 3.0), id="renewed-at-new-term"),
        pytest.param(lease("other"), 4, Step(Action.FOLLOW, None, 3.0), id="lost-it"),
        pytest.param(None, 4, Step(Action.FOLLOW, None, 3.0), id="store-unreachable-leader"),
        pytest.param(None, None, Step(Action.KEEP, None, 3.0), id="store-unreachable-follower"),
        pytest.param(
            lease("other", expires_at=T0 + 1.0),
            None,
            Step(Action.KEEP, None, 1.0 + EXPIRY_MARGIN_S),
            id="follower-retries-when-it-expires",
        ),
        pytest.param(
            lease("other", expires_at=T0 + 60.0),
            None,
            Step(Action.KEEP, None, 3.0),
            id="follower-retries-at-least-every-third",
        ),
        pytest.param(
            lease("me", 4, expires_at=T0 - 0.5),
            4,
            Step(Action.FOLLOW, None, 0.05),
            id="ours-but-expired",
        ),
    ],
)
def test_next_state(seen: Lease | None, held_term: int | None, expected: Step) -> None:
    assert next_state(seen, "me", T0, held_term, TTL) == expected


# ---- the elector on a real store ----


class Calls:
    """What the elector asked of the control plane."""

    def __init__(self, fail_lead: bool = False, fail_follow: bool = False) -> None:
        self.log: list[str] = []
        self.fail_lead = fail_lead
        self.fail_follow = fail_follow

    def lead(self, term: int) -> None:
        self.log.append(f"lead {term}")
        if self.fail_lead:
            raise RuntimeError("reconcile failed")

    def follow(self) -> None:
        self.log.append("follow")
        if self.fail_follow:
            raise RuntimeError("a tick is still running")


@pytest.fixture
def now() -> list[float]:
    return [T0]


def elector(tmp_path: Path, holder: str, now: list[float], calls: Calls) -> LeaderElector:
    store = open_store(None, tmp_path)  # one Store each: the fence is per process
    config = LeaseConfig(ttl_s=TTL, holder=holder)
    return LeaderElector(store, config, calls.lead, calls.follow, lambda: now[0])


def make_job_row(store: Store) -> JobRecord:
    store.apply([], [("j", "uid-j", job_to_manifest(make_job("j").obj()), "q", 0)], T0)
    record = store.get_job("j")
    assert record is not None
    return record


def test_one_leads_the_other_takes_over_once_the_lease_expires(
    tmp_path: Path, now: list[float]
) -> None:
    a_calls, b_calls = Calls(), Calls()
    a, b = elector(tmp_path, "a", now, a_calls), elector(tmp_path, "b", now, b_calls)
    try:
        assert a.step() == TTL / 3
        assert b.step() == TTL / 3  # the lease expires later than a third of it away
        assert (a.role, a.term, a.store.fence) == (Role.LEADER, 1, ("controller", "a", 1))
        assert (b.role, b.store.fence) == (Role.FOLLOWER, None)
        now[0] = T0 + TTL / 3
        a.step()  # renewed: nothing changes
        now[0] = T0 + TTL / 3 + TTL - 1.0
        assert b.role is Role.FOLLOWER  # renewed at T0 + TTL/3: not expired yet
        assert b.step() == pytest.approx(1.0 + EXPIRY_MARGIN_S)  # tries again when it expires
        # a stops renewing (it died, or paused); the lease runs out
        now[0] = T0 + TTL / 3 + TTL
        b.step()
        assert (b.role, b.term, b.store.fence) == (Role.LEADER, 2, ("controller", "b", 2))
        # a paused leader that has not noticed yet cannot write: the store fences it off
        job = make_job_row(a.store)
        assert not a.store.transition(Transition(job.id, job={"priority": 5}))
        assert b.store.transition(Transition(job.id, job={"priority": 5}))
        a.step()  # now it notices
        assert (a.role, a.term, a.store.fence) == (Role.FOLLOWER, None, None)
        assert a_calls.log == ["lead 1", "follow"]
        assert b_calls.log == ["lead 2"]
    finally:
        a.store.close()
        b.store.close()


def test_a_lease_renewed_after_it_expired_restarts_leadership_at_the_new_term(
    tmp_path: Path, now: list[float]
) -> None:
    calls = Calls()
    a = elector(tmp_path, "a", now, calls)
    try:
        a.step()
        now[0] = T0 + TTL + 1  # paused past its lease; nobody took it meanwhile
        a.step()
        assert (a.term, a.store.fence) == (2, ("controller", "a", 2))
        assert calls.log == ["lead 1", "follow", "lead 2"]
    finally:
        a.store.close()


def test_a_leader_that_cannot_reach_the_store_steps_down(tmp_path: Path, now: list[float]) -> None:
    calls = Calls()
    a = elector(tmp_path, "a", now, calls)
    try:
        a.step()

        def unreachable(*args: object) -> Lease | None:
            raise OSError("connection refused")

        a.store.acquire_lease = unreachable  # type: ignore[method-assign]
        now[0] = T0 + TTL / 3
        assert a.step() == TTL / 3
        assert (a.role, a.store.fence, calls.log) == (Role.FOLLOWER, None, ["lead 1", "follow"])
    finally:
        a.store.close()


def test_a_loop_that_did_not_stop_stays_fenced(tmp_path: Path, now: list[float]) -> None:
    a_calls = Calls(fail_follow=True)
    a, b = elector(tmp_path, "a", now, a_calls), elector(tmp_path, "b", now, Calls())
    try:
        a.step()
        now[0] = T0 + TTL + 1
        b.step()
        a.step()
        assert (a.role, a.store.fence) == (Role.FOLLOWER, ("controller", "a", 1))
        job = make_job_row(b.store)
        assert not a.store.transition(Transition(job.id, job={"priority": 5}))
    finally:
        a.store.close()
        b.store.close()


def test_a_failed_start_gives_the_lease_back(tmp_path: Path, now: list[float]) -> None:
    a_calls, b_calls = Calls(fail_lead=True), Calls()
    a, b = elector(tmp_path, "a", now, a_calls), elector(tmp_path, "b", now, b_calls)
    try:
        a.step()
        assert (a.role, a.store.fence, a_calls.log) == (Role.FOLLOWER, None, ["lead 1", "follow"])
        b.step()  # at once, not after the TTL
        assert (b.role, b.term) == (Role.LEADER, 2)
    finally:
        a.store.close()
        b.store.close()


def test_stopping_the_leader_hands_over_without_waiting_for_the_ttl(
    tmp_path: Path, now: list[float]
) -> None:
    a_calls, b_calls = Calls(), Calls()
    a, b = elector(tmp_path, "a", now, a_calls), elector(tmp_path, "b", now, b_calls)
    try:
        a.step()
        b.step()
        a.stop()
        assert (a.role, a.store.fence, a_calls.log) == (Role.FOLLOWER, None, ["lead 1", "follow"])
        now[0] = T0 + 0.1
        b.step()
        assert (b.role, b.term) == (Role.LEADER, 2)
    finally:
        a.store.close()
        b.store.close()


def test_the_thread_takes_the_lease(tmp_path: Path) -> None:
    calls = Calls()
    store = open_store(None, tmp_path)
    a = LeaderElector(store, LeaseConfig(ttl_s=3.0, holder="a"), calls.lead, calls.follow)
    try:
        a.start()
        for _ in range(200):
            if a.role is Role.LEADER:
                break
            a._stopping.wait(0.01)
        assert a.role is Role.LEADER and a.is_alive
    finally:
        a.stop()
        store.close()
    assert calls.log == ["lead 1", "follow"]
    released = store.get_lease("controller")
    assert released is not None and released.expires_at == 0.0


def test_a_lease_ttl_must_be_positive() -> None:
    with pytest.raises(ValueError, match="ttl_s must be > 0 seconds, got 0"):
        LeaseConfig(ttl_s=0)


# ---- two control planes on one store and one backend ----


class SeenBy:
    """The shared backend as one control plane sees it: every call forwarded, stops recorded."""

    def __init__(self, backend: SimBackend) -> None:
        self._backend = backend
        self.stops: list[str] = []

    def __getattr__(self, name: str) -> object:
        return getattr(self._backend, name)

    def stop(self, pod_id: str, grace_period_s: float) -> None:
        self.stops.append(pod_id)
        self._backend.stop(pod_id, grace_period_s)


def wait_until(predicate: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def planes(tmp_path: Path) -> Iterator[tuple[ControlPlane, ControlPlane, SeenBy, SeenBy]]:
    clock = VirtualClock(T0)
    sim = SimBackend([make_node("n0").gpus(2).obj()], clock)
    seen = SeenBy(sim), SeenBy(sim)
    made = []
    for holder, backend in zip("ab", seen, strict=True):
        config = ControlPlaneConfig(
            tmp_path, tick_s=3600, lease=LeaseConfig(ttl_s=TTL, holder=holder)
        )
        store = open_store(None, tmp_path)
        made.append(ControlPlane(store, backend, config, clock=lambda: clock.now))  # type: ignore[arg-type]
    a, b = made
    sim.set_runtime("j", 100.0)
    yield a, b, seen[0], seen[1]
    for plane in made:
        plane.stop()
        plane.store.close()


def test_a_followers_cancel_is_stopped_by_the_leaders_next_tick(
    planes: tuple[ControlPlane, ControlPlane, SeenBy, SeenBy],
) -> None:
    a, b, a_backend, b_backend = planes
    a.start()
    wait_until(lambda: a.role is Role.LEADER)
    b.start()
    wait_until(lambda: b.health()["lease"]["holder"] == "b")  # type: ignore[index]
    assert (a.role, b.role) == (Role.LEADER, Role.FOLLOWER)
    assert a.health()["lease"] == {
        "name": "controller",
        "holder": "a",
        "leader": "a",
        "term": 1,
        "ttl_s": TTL,
        "leading_since": T0,
        "first_tick_at": a.first_tick_at,
    }
    b_health = b.health()
    assert (b_health["status"], b_health["role"]) == ("ok", "follower")
    assert b_health["lease"] == {
        "name": "controller",
        "holder": "b",
        "leader": "a",
        "term": 1,
        "ttl_s": TTL,
        "leading_since": None,
        "first_tick_at": None,
    }
    # writes through the follower land in the store; the leader runs them
    b.apply([*queue_manifests(gpu=2), job_to_manifest(make_job("j").queue("q").gpus(1).obj())])
    a.tick()
    a.tick()
    assert b.get_job("j").phase is JobPhase.RUNNING
    (pod,) = [p.pod_id for p in a.store.pods(live_only=True)]
    b.cancel_job("j")
    assert b.get_job("j").phase is JobPhase.CANCELLED
    assert b_backend.stops == []  # a follower never drives the backend
    assert [p.pod_id for p in a.store.pods(live_only=True)] == [pod]
    a.tick()  # the leader stops what should not run ...
    assert a_backend.stops == [pod]
    a.tick()  # ... and records it stopped
    assert a.store.pods(live_only=True) == []
    a.tick()
    assert a_backend.stops == [pod], "a stop is sent once, not every tick"
