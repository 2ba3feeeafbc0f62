"""Quota accounting per queue and flavor, with cohorts that lend and borrow (Kueue's model).

A queue may use up to ``nominal + borrowingLimit`` of a resource. In a cohort, each queue lends
``min(lendingLimit, nominal)``; usage above a queue's guaranteed part (``nominal - lendable``)
draws from the cohort's pool, which must never go negative. Pure; journalled like the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

from phalanx.model.objects import Queue
from phalanx.model.reasons import Fact, Reason, ReasonCode
from phalanx.model.resources import RESOURCE_NAMES, UNLIMITED, Resources
from phalanx.scheduling.cluster import Journal

_Key = tuple[str, str]  # (queue, flavor)


def _vector(r: Resources) -> tuple[int, int, int]:
    return (r.cpu_milli, r.memory_bytes, r.gpu_milli)


@dataclass(frozen=True, slots=True)
class QuotaCheck:
    """Outcome of a quota check: ``ok``, or the reason with the numbers that block it
    (``QuotaExceeded``, or ``ExceedsQueueLimit`` when no usage of others could make room)."""

    reason: Reason | None = None

    @property
    def ok(self) -> bool:
        return self.reason is None


class QuotaState:
    """Usage per (queue, flavor) during a cycle and the cohort pools it draws on."""

    def __init__(self, queues: tuple[Queue, ...], journal: Journal) -> None:
        self.journal = journal
        self.queues = {q.name: q for q in queues}
        self.usage: dict[_Key, list[int]] = {}
        self.nominal: dict[_Key, tuple[int, ...]] = {}
        self.borrow_limit: dict[_Key, tuple[int, ...]] = {}
        self.guaranteed: dict[_Key, tuple[int, ...]] = {}
        # Per (cohort, flavor): what members lend in total, and what is borrowed from it.
        self.pool: dict[_Key, list[int]] = {}
        self.borrowed: dict[_Key, list[int]] = {}
        for q in sorted(queues, key=lambda q: q.name):
            for fq in q.flavors:
                key = (q.name, fq.flavor)
                quotas = [fq.quota(r) for r in RESOURCE_NAMES]
                self.usage[key] = [0, 0, 0]
                self.nominal[key] = tuple(x.nominal for x in quotas)
                self.borrow_limit[key] = tuple(
                    0 if not q.cohort else min(x.borrowing_limit, UNLIMITED) for x in quotas
                )
                lendable = tuple(min(x.lending_limit, x.nominal) for x in quotas)
                self.guaranteed[key] = tuple(
                    x.nominal - lend for x, lend in zip(quotas, lendable, strict=True)
                )
                if q.cohort:
                    pool = self.pool.setdefault((q.cohort, fq.flavor), [0, 0, 0])
                    self.borrowed.setdefault((q.cohort, fq.flavor), [0, 0, 0])
                    for i in range(3):
                        pool[i] += lendable[i]
        # What each queue could ever use per flavor and resource (the pools are complete now).
        self.limits: dict[_Key, tuple[int, ...]] = {
            key: tuple(self.limit(key[0], key[1], i)[0] for i in range(3)) for key in self.usage
        }
        #: ``limit_reason``'s answers by (queue, flavor, amount): they depend on nothing that
        #: changes during the cycle, and jobs alike share one Reason (its facts, message and
        #: stored facts), which the control plane keeps for every waiting job.
        self._limit_reasons: dict[tuple[str, str, tuple[int, int, int]], Reason | None] = {}

    def has_flavor(self, queue: str, flavor: str) -> bool:
        return (queue, flavor) in self.usage

    def _over_guaranteed(self, key: _Key, i: int, used: int) -> int:
        return max(0, used - self.guaranteed[key][i])

    def _change(self, queue: str, flavor: str, delta: tuple[int, int, int]) -> None:
        key = (queue, flavor)
        usage = self.usage.get(key)
        if usage is None:
            return
        cohort = self.queues[queue].cohort
        borrowed = self.borrowed.get((cohort, flavor)) if cohort else None
        if borrowed is None:
            for i in range(3):
                usage[i] += delta[i]
            return
        guaranteed = self.guaranteed[key]
        for i in range(3):
            before = usage[i]
            after = usage[i] = before + delta[i]
            # What the use over the guaranteed part draws on the cohort (_over_guaranteed).
            borrowed[i] += max(0, after - guaranteed[i]) - max(0, before - guaranteed[i])

    def add(self, queue: str, flavor: str, amount: Resources) -> None:
        """Charge ``amount`` to the queue (journalled)."""
        delta = _vector(amount)
        self._change(queue, flavor, delta)
        negative = (-delta[0], -delta[1], -delta[2])
        self.journal.record(lambda: self._change(queue, flavor, negative))

    def remove(self, queue: str, flavor: str, amount: Resources) -> None:
        """Refund ``amount`` to the queue (journalled)."""
        delta = _vector(amount)
        self._change(queue, flavor, (-delta[0], -delta[1], -delta[2]))
        self.journal.record(lambda: self._change(queue, flavor, delta))

    def load(self, queue: str, flavor: str, amount: Resources) -> None:
        """Account for usage at the start of the cycle (not journalled)."""
        self._change(queue, flavor, _vector(amount))

    def limit(self, queue: str, flavor: str, resource: int) -> tuple[int, str]:
        """Return the most of resource number ``resource`` the queue could ever use on
        ``flavor`` with all others idle, and what sets it: ``Nominal`` (no cohort),
        ``BorrowingLimit``, or ``CohortQuota`` (its guaranteed part plus all its cohort
        lends)."""
        key = (queue, flavor)
        cohort = self.queues[queue].cohort
        nominal = self.nominal[key][resource]
        if not cohort:
            return nominal, "Nominal"
        by_borrowing = nominal + self.borrow_limit[key][resource]
        by_cohort = self.guaranteed[key][resource] + self.pool[(cohort, flavor)][resource]
        if by_borrowing <= by_cohort:
            return by_borrowing, "BorrowingLimit"
        return by_cohort, "CohortQuota"

    def limit_reason(self, queue: str, flavor: str, amount: Resources) -> Reason | None:
        """Return ``ExceedsQueueLimit`` when ``amount`` is more than the queue could ever use
        on ``flavor`` (see ``limit``), else None. Equal arguments get the same Reason."""
        key = (queue, flavor)
        request = _vector(amount)
        limits = self.limits[key]
        if request[0] <= limits[0] and request[1] <= limits[1] and request[2] <= limits[2]:
            return None
        memo = (queue, flavor, request)
        if memo not in self._limit_reasons:
            self._limit_reasons[memo] = self._beyond_limit(queue, flavor, request)
        return self._limit_reasons[memo]

    def _beyond_limit(
        self, queue: str, flavor: str, request: tuple[int, int, int]
    ) -> Reason | None:
        key = (queue, flavor)
        for i, name in enumerate(RESOURCE_NAMES):
            limit, limited_by = self.limit(queue, flavor, i)
            if request[i] <= limit:
                continue
            cohort = self.queues[queue].cohort
            facts: dict[str, Fact] = {
                "queue": queue,
                "flavor": flavor,
                "resource": name,
                "needed": request[i],
                "limit": limit,
                "limited_by": limited_by,
                "nominal": self.nominal[key][i],
                "cohort": cohort,
            }
            if limited_by == "BorrowingLimit":
                facts["borrowing_limit"] = self.borrow_limit[key][i]
            elif limited_by == "CohortQuota":
                facts["guaranteed"] = self.guaranteed[key][i]
                facts["cohort_shared"] = self.pool[(cohort, flavor)][i]
            return Reason(ReasonCode.EXCEEDS_QUEUE_LIMIT, facts)
        return None

    def check(self, queue: str, flavor: str, amount: Resources) -> QuotaCheck:
        """Return whether ``amount`` more fits the queue's quota on ``flavor``, and if not,
        the reason with the numbers that block it."""
        beyond = self.limit_reason(queue, flavor, amount)
        if beyond is not None:
            return QuotaCheck(beyond)
        key = (queue, flavor)
        usage = self.usage[key]
        nominal = self.nominal[key]
        q = self.queues[queue]
        request = _vector(amount)
        for i, name in enumerate(RESOURCE_NAMES):
            need = request[i]
            if need == 0:
                continue
            after = usage[i] + need
            # In a cohort, even use within nominal quota draws on the pool when that quota is
            # lendable: it may be lent out right now (and is then reclaimed by preemption).
            if after <= nominal[i] and (not q.cohort or after <= self.guaranteed[key][i]):
                continue
            facts: dict[str, Fact] = {
                "queue": queue,
                "flavor": flavor,
                "resource": name,
                "used": usage[i],
                "nominal": nominal[i],
                "needed": need,
                "cohort": q.cohort,
            }
            if not q.cohort:
                return QuotaCheck(
                    Reason(ReasonCode.QUOTA_EXCEEDED, {**facts, "blocked_by": "NoCohort"})
                )
            if after > nominal[i] + self.borrow_limit[key][i]:
                facts.update(blocked_by="BorrowingLimit", borrowing_limit=self.borrow_limit[key][i])
                return QuotaCheck(Reason(ReasonCode.QUOTA_EXCEEDED, facts))
            pool = self.pool[(q.cohort, flavor)][i]
            borrowed = self.borrowed[(q.cohort, flavor)][i]
            extra = self._over_guaranteed(key, i, after) - self._over_guaranteed(key, i, usage[i])
            if borrowed + extra > pool:
                facts.update(
                    blocked_by="Cohort", cohort_free=max(0, pool - borrowed), cohort_shared=pool
                )
                return QuotaCheck(Reason(ReasonCode.QUOTA_EXCEEDED, facts))
        return QuotaCheck()

    def is_borrowing(self, queue: str, flavor: str) -> bool:
        """Whether the queue uses more than its nominal quota of any resource on ``flavor``."""
        key = (queue, flavor)
        usage = self.usage.get(key)
        if usage is None:
            return False
        return any(u > n for u, n in zip(usage, self.nominal[key], strict=True))

    def within_nominal(self, queue: str, flavor: str, amount: Resources) -> bool:
        """Whether the queue's usage plus ``amount`` stays within its nominal quota."""
        key = (queue, flavor)
        return all(
            u + r <= n
            for u, r, n in zip(self.usage[key], _vector(amount), self.nominal[key], strict=True)
        )

    def dominant_share(self, queue: str) -> float:
        """The queue's dominant-resource share: max over flavors and resources of usage over
        nominal quota, divided by the queue's weight (lower goes first)."""
        q = self.queues.get(queue)
        if q is None:
            return 0.0
        share = 0.0
        for fq in q.flavors:
            key = (queue, fq.flavor)
            for used, nominal in zip(self.usage[key], self.nominal[key], strict=True):
                if used:
                    share = max(share, used / nominal if nominal else float(used))
        return share / q.weight
