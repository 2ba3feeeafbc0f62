"""Quota accounting per queue and flavor, with cohorts that lend and borrow (Kueue's model).

A queue may use up to ``nominal + borrowingLimit`` of a resource. In a cohort, each queue lends
``min(lendingLimit, nominal)``; usage above a queue's guaranteed part (``nominal - lendable``)
draws from the cohort's pool, which must never go negative. Pure; journalled like the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

from phalanx.model.objects import Queue
from phalanx.model.resources import RESOURCE_NAMES, UNLIMITED, Resources, format_amount
from phalanx.scheduling.cluster import Journal

_Key = tuple[str, str]  # (queue, flavor)


def _vector(r: Resources) -> tuple[int, int, int]:
    return (r.cpu_milli, r.memory_bytes, r.gpu_milli)


@dataclass(frozen=True, slots=True)
class QuotaCheck:
    """Outcome of a quota check: ``ok``, or a message with the numbers that block it."""

    ok: bool
    message: str = ""


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
        for i in range(3):
            before = usage[i]
            usage[i] = before + delta[i]
            if borrowed is not None:
                borrowed[i] += self._over_guaranteed(key, i, usage[i]) - self._over_guaranteed(
                    key, i, before
                )

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

    def check(self, queue: str, flavor: str, amount: Resources) -> QuotaCheck:
        """Return whether ``amount`` more fits the queue's quota on ``flavor``, and if not,
        a message with the numbers that block it."""
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
            limit = nominal[i] + self.borrow_limit[key][i]
            what = f"queue {queue} uses {format_amount(name, usage[i])}/{format_amount(name, nominal[i])} {name} of flavor {flavor}"
            if not q.cohort:
                return QuotaCheck(
                    False,
                    f"{what}, the job needs {format_amount(name, need)} more, and the queue has no cohort to borrow from",
                )
            if after > limit:
                return QuotaCheck(
                    False,
                    f"{what}; the job needs {format_amount(name, need)} more, above its borrowing limit of {format_amount(name, self.borrow_limit[key][i])}",
                )
            pool = self.pool[(q.cohort, flavor)][i]
            borrowed = self.borrowed[(q.cohort, flavor)][i]
            extra = self._over_guaranteed(key, i, after) - self._over_guaranteed(key, i, usage[i])
            if borrowed + extra > pool:
                return QuotaCheck(
                    False,
                    f"{what}; the job needs {format_amount(name, need)} more and cohort {q.cohort} has "
                    f"{format_amount(name, max(0, pool - borrowed))} of {format_amount(name, pool)} shared {name} free",
                )
        return QuotaCheck(True)

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
