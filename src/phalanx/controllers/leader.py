"""Leader election among control planes that share one PostgreSQL store.

Every control plane started with ``--ha`` runs a ``LeaderElector``: a thread that tries to take
or renew the store's lease ``controller`` (``Store.acquire_lease``) for ``ttl_s`` seconds. The
holder leads: it runs the reconcilers, and only it drives the backend (launch, stop, adopt).
The others follow: they serve reads and write through the store (apply, cancel, delete); the
leader picks their writes up at its next tick, since it re-reads the store every tick.

Each attempt is one step, decided by ``next_state`` (pure) and applied at the edge:

  follower → leader    the lease is ours (taken after it expired, or the first ever): fence the
                       store with (name, holder, term), repair (``reconcile``), start the loop;
  leader → leader      renewed at the same term: nothing to do; next renewal in ttl/3;
  leader → follower    the renewal was refused or failed (store unreachable): stop the loop at
                       once, then drop the fence;
  leader → leader'     renewed at a new term (our lease expired before we renewed it, so
                       another may have led in between): step down, then lead again.

Followers try again when the lease they saw expires (at most ttl/3 later). The fence makes the
store refuse transitions from a leader that lost its lease without noticing (paused,
partitioned). Time comes from an injected clock; the lease compares clocks of different
machines, so keep them synchronised (NTP): skew adds to or takes from the failover time.

Must not import api, cli or backends.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from phalanx.store import Lease, Store

log = logging.getLogger(__name__)

#: A follower retries this long after the lease it saw expires (clocks tick in steps).
EXPIRY_MARGIN_S = 0.05
#: The shortest wait between two attempts.
MIN_WAIT_S = 0.05


class Role(StrEnum):
    LEADER = "leader"
    FOLLOWER = "follower"


class Action(StrEnum):
    """What an attempt changes."""

    KEEP = "keep"  # the role and term stay as they were
    LEAD = "lead"  # fence, reconcile, start the loop
    FOLLOW = "follow"  # stop the loop, drop the fence
    RELEAD = "relead"  # FOLLOW, then LEAD at the new term


def default_holder() -> str:
    """``hostname:pid:random``: unique per process, readable in ``/healthz``."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class LeaseConfig:
    """Leader election settings. ``ttl_s``: how long a lease lasts unless renewed; a dead
    leader is replaced within about that long. ``holder``: this process's id."""

    name: str = "controller"
    ttl_s: float = 10.0
    holder: str = field(default_factory=default_holder)

    def __post_init__(self) -> None:
        if self.ttl_s <= 0:
            raise ValueError(f"lease ttl_s must be > 0 seconds, got {self.ttl_s}")

    @property
    def renew_every_s(self) -> float:
        return self.ttl_s / 3


@dataclass(frozen=True, slots=True)
class Step:
    """The decision of one attempt: ``action``, the term this process leads at afterwards
    (None: it follows) and the seconds until the next attempt."""

    action: Action
    term: int | None
    wait_s: float


def next_state(
    lease: Lease | None, me: str, now: float, held_term: int | None, ttl_s: float
) -> Step:
    """Decide one attempt. ``lease``: the lease as the store has it after our attempt to take
    or renew it (None: no lease, or the store could not be reached); ``held_term``: the term we
    lead at, None while following. Pure."""
    renew_s = ttl_s / 3
    is_ours = lease is not None and lease.holder == me and lease.expires_at > now
    if lease is not None and is_ours:
        wait = max(MIN_WAIT_S, min(renew_s, (lease.expires_at - now) / 3))
        if held_term is None:
            return Step(Action.LEAD, lease.term, wait)
        if held_term != lease.term:
            return Step(Action.RELEAD, lease.term, wait)
        return Step(Action.KEEP, held_term, wait)
    action = Action.FOLLOW if held_term is not None else Action.KEEP
    if lease is None:
        return Step(action, None, renew_s)
    until_expiry = lease.expires_at - now + EXPIRY_MARGIN_S
    return Step(action, None, max(MIN_WAIT_S, min(renew_s, until_expiry)))


class LeaderElector:
    """Takes and renews the lease in a thread and calls ``lead(term)`` / ``follow()`` as the
    role changes (see the module docstring). ``lead`` must repair and start the loop; if it
    raises, the lease is given back and taken again later. ``follow`` must stop the loop."""

    def __init__(
        self,
        store: Store,
        config: LeaseConfig,
        lead: Callable[[int], None],
        follow: Callable[[], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.config = config
        self._lead = lead
        self._follow = follow
        self.clock = clock
        #: The term we lead at; None while following.
        self.term: int | None = None
        #: When (clock) this process last became leader.
        self.leading_since: float | None = None
        self._step_lock = threading.Lock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def holder(self) -> str:
        return self.config.holder

    @property
    def role(self) -> Role:
        return Role.FOLLOWER if self.term is None else Role.LEADER

    @property
    def is_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Run attempts in a background thread until ``stop``."""
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="phalanx-elector", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop trying; a leader stops its loop and gives the lease up, so that a follower
        takes over at its next attempt rather than after the lease expires."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None
        with self._step_lock:
            if self.term is not None:
                self._step_down()
                try:
                    self.store.release_lease(self.config.name, self.holder)
                except Exception:  # shutting down: the lease then expires on its own
                    log.exception("giving lease %s up failed", self.config.name)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                wait = self.step()
            except Exception:  # the elector must survive; the next attempt decides again
                log.exception("leader election attempt failed")
                wait = self.config.renew_every_s
            self._stopping.wait(wait)

    def step(self) -> float:
        """One attempt: take or renew the lease, apply the decision. Returns the seconds to
        wait until the next attempt."""
        with self._step_lock:
            now = self.clock()
            lease = self._observe(now)
            decision = next_state(lease, self.holder, now, self.term, self.config.ttl_s)
            if decision.action in (Action.FOLLOW, Action.RELEAD):
                log.warning(
                    "lease %s lost at term %s (now %s); stopping the control loop",
                    self.config.name,
                    self.term,
                    "held by " + lease.holder if lease is not None else "unknown",
                )
                self._step_down()
            is_leading = decision.action in (Action.LEAD, Action.RELEAD)
            if is_leading and decision.term is not None and not self._step_up(decision.term, now):
                return self.config.renew_every_s
            return decision.wait_s

    def _observe(self, now: float) -> Lease | None:
        """The lease after trying to take or renew it; None when the store cannot tell."""
        try:
            lease = self.store.acquire_lease(self.config.name, self.holder, self.config.ttl_s, now)
            return lease if lease is not None else self.store.get_lease(self.config.name)
        except Exception:  # unreachable store: a leader must assume the lease is gone
            log.exception("taking or renewing lease %s failed", self.config.name)
            return None

    def _step_up(self, term: int, now: float) -> bool:
        self.store.fence = (self.config.name, self.holder, term)
        self.term = term
        self.leading_since = now
        log.info("leading as %s at term %d", self.holder, term)
        try:
            self._lead(term)
        except Exception:
            log.exception("starting to lead failed; giving lease %s up", self.config.name)
            self._step_down()
            try:
                self.store.release_lease(self.config.name, self.holder)
            except Exception:  # it then expires on its own
                log.exception("giving lease %s up failed", self.config.name)
            return False
        return True

    def _step_down(self) -> None:
        # The fence stays up until the loop has stopped: a tick still running must not write
        # over a successor. If it did not stop, the fence stays (this process's writes are
        # then refused, which is safe) until it leads again.
        try:
            self._follow()
        except Exception:
            log.exception("stopping the control loop failed; the store stays fenced")
        else:
            self.store.fence = None
        finally:
            self.term = None
            self.leading_since = None
