"""One load stream per service out of several routers' samples. Pure: no clock, I/O or threads
(the caller passes ``now``).

Every router reports its own ``LoadSample`` per service about once a second: the router beside
each server of a highly available control plane, and any ``phalanx router`` run apart. The
autoscaler wants one stream for the whole service: the requests in flight and waiting summed
over the routers, and one monotonic request count. ``LoadMerger.merge`` folds the samples
that arrived since its previous call into one sample:

1. per source (``LoadSample.source``), its newest sample is kept; a source whose newest sample
   is older than ``fresh_for_s`` counts no more (a router that stopped);
2. ``in_flight``, ``waiting`` and ``in_flight_avg`` are summed over the fresh sources, each
   source's ``in_flight_avg`` the mean of its samples of this call (or its newest, when it
   sent none this time: routers report out of step);
3. ``requests_total``/``rejected_total`` and each (replica, status class) count of
   ``responses`` are running sums of each source's increases: a new source adds nothing for
   its first sample (but a count it reports for the first time after that adds all of it),
   and a count that went down (a restarted router) adds its new value;
4. any other field of ``LoadSample`` (what the replicas themselves report) is the newest
   sample's.

The response counts gained over the last ``window_s`` (by the ``now`` of the calls that
counted them) are kept too: ``recent_responses()``, what the doctor's error-rate check reads.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from phalanx.serving.endpoints import LoadSample

__all__ = ["LoadMerger"]


@dataclass(slots=True)
class _Source:
    newest: LoadSample
    avg: float


def _avg(sample: LoadSample) -> float:
    return float(sample.in_flight if sample.in_flight_avg is None else sample.in_flight_avg)


def _increase(before: int, after: int) -> int:
    return after - before if after >= before else after


@dataclass(slots=True)
class LoadMerger:
    """Merges the samples of one service from any number of routers (see the module
    docstring). ``forget_after_s``: a source silent that long is dropped altogether."""

    fresh_for_s: float = 5.0
    forget_after_s: float = 600.0
    window_s: float = 300.0
    requests_total: int = 0
    rejected_total: int = 0
    responses: dict[tuple[str, str], int] = field(default_factory=dict)
    _sources: dict[str, _Source] = field(default_factory=dict)
    #: (now of the merge, (replica, status class), count gained), oldest first.
    _recent: deque[tuple[float, tuple[str, str], int]] = field(default_factory=deque)
    _now: float = 0.0

    def _add_responses(self, before: LoadSample, after: LoadSample) -> None:
        counted = {(r, c): n for r, c, n in before.responses}
        for replica, code_class, n in after.responses:
            key = (replica, code_class)
            gained = _increase(counted.get(key, 0), n)
            if gained:
                self.responses[key] = self.responses.get(key, 0) + gained
                self._recent.append((self._now, key, gained))

    def recent_responses(self) -> tuple[tuple[str, str, int], ...]:
        """(replica, status class, count) of the answers counted in the last ``window_s``
        before the latest ``merge``, sorted."""
        sums: dict[tuple[str, str], int] = {}
        for at, key, n in tuple(self._recent):  # a copy: read from other threads
            if self._now - at <= self.window_s:
                sums[key] = sums.get(key, 0) + n
        return tuple(sorted((r, c, n) for (r, c), n in sums.items()))

    @property
    def sources(self) -> tuple[str, ...]:
        """The sources heard from (and not yet forgotten), sorted."""
        return tuple(sorted(self._sources))

    def merge(self, samples: Sequence[LoadSample], now: float) -> LoadSample | None:
        """One sample of the service for ``samples`` (all of one service, any sources, in
        the order received), or None when there are none."""
        self._now = now
        while self._recent and now - self._recent[0][0] > self.window_s:
            self._recent.popleft()
        if not samples:
            return None
        by_source: dict[str, list[LoadSample]] = {}
        for sample in samples:
            by_source.setdefault(sample.source, []).append(sample)
        for source, received in by_source.items():
            known = self._sources.get(source)
            for sample in received:
                if known is not None:
                    self.requests_total += _increase(
                        known.newest.requests_total, sample.requests_total
                    )
                    self.rejected_total += _increase(
                        known.newest.rejected_total, sample.rejected_total
                    )
                    self._add_responses(known.newest, sample)
                    known.newest = sample
                else:
                    known = _Source(sample, 0.0)
            assert known is not None
            known.avg = sum(_avg(s) for s in received) / len(received)
            self._sources[source] = known
        silent = [s for s, k in self._sources.items() if now - k.newest.at > self.forget_after_s]
        for source in silent:
            del self._sources[source]
        fresh = [k for k in self._sources.values() if now - k.newest.at <= self.fresh_for_s]
        # Other fields (the LLM gateway's engine signals: the replicas', not the router's)
        # come from the newest sample.
        return replace(
            max(samples, key=lambda s: s.at),
            at=max(s.at for s in samples),
            in_flight=sum(k.newest.in_flight for k in fresh),
            waiting=sum(k.newest.waiting for k in fresh),
            requests_total=self.requests_total,
            rejected_total=self.rejected_total,
            responses=tuple(sorted((r, c, n) for (r, c), n in self.responses.items())),
            in_flight_avg=sum(k.avg for k in fresh),
            source="merged",
        )
