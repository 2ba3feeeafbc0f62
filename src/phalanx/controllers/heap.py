"""Keep the cyclic garbage collector's full collections short in a long-running control plane.

CPython's collector scans every tracked object of the oldest generation in one pass that holds
the interpreter. With 10,000 jobs stored a server tracks a few hundred thousand objects (job
records, parsed specs, cached views, the modules themselves), and one full collection took
0.2–0.5 s of one core; the loop's writes of many jobs at once set off several in a row, and
every request waited behind them (the API bench's page p99 with 8 clients).

``HeapFreezer`` moves the objects that survived each full collection into the collector's
permanent generation (``gc.freeze``) as the collection ends: later full collections scan only
what is newer. Reference counting still frees frozen objects that die; only reference cycles
among them are not collected while frozen. To bound that, once the frozen objects have grown
``growth`` times since the last complete collection, they are unfrozen, so that the next full
collection is a complete one; what survives it is frozen again. Complete collections become
as rare as doublings of the heap, and at most about as many objects as were live at the last
one can be cycles kept past their time.

Knowing when the frozen objects have grown is itself kept cheap: counting them exactly walks
their whole list (``gc.get_freeze_count``: some 40 ms with 280,000 objects, holding the
interpreter, so every request waited behind it, once a second while full collections came).
Each freeze adds what the collection left in the oldest generation (a short list: only what
survived since the last freeze), and the exact count is taken only when that running total
says a complete collection is due. The total also counts frozen objects that died since, so it
errs towards counting exactly too early, never towards a complete collection too late.

Process-wide: the server turns it on (``ControlPlaneConfig.freeze_heap``); a library user's
process is left as it is. Must not import store or backends.
"""

from __future__ import annotations

import gc
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["HeapFreezer", "HeapStats"]


@dataclass(slots=True)
class HeapStats:
    """What the freezer did: freezes and complete collections."""

    freezes: int = 0
    complete_collections: int = 0
    #: Objects frozen after the last complete collection (the base doublings are counted from).
    frozen_after_complete: int = 0
    #: Exact counts of the frozen objects (each a walk of their list).
    exact_counts: int = 0


class HeapFreezer:
    """See the module docstring: ``start`` installs a collector callback, which does the
    work in whichever thread ran the collection; ``stop`` removes it and unfreezes."""

    #: A complete collection is not asked for below this many frozen objects (start-up alone
    #: freezes about 100,000: modules, classes, functions).
    MIN_BASE = 200_000
    #: Counting the frozen objects exactly walks their list: at most once per this many
    #: seconds (and only when the running total says a complete collection is due).
    CHECK_EVERY_S = 1.0

    def __init__(
        self,
        growth: float = 2.0,
        min_base: int = MIN_BASE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``growth``: how many times the frozen objects may grow past what the last complete
        collection left (and at least past ``min_base``) before the next."""
        self.growth = growth
        self.min_base = min_base
        self.clock = clock
        self.stats = HeapStats()
        self._checked_at = -math.inf
        #: Objects frozen so far, counting those that died since (see the module docstring).
        self._frozen_total = 0
        self._is_complete_next = False
        self._is_started = False

    def start(self) -> None:
        """Freeze what survives every full collection from now on (process-wide)."""
        if not self._is_started:
            gc.callbacks.append(self._on_collection)
            self._is_started = True

    def stop(self) -> None:
        """Stop freezing and unfreeze everything: the collector works as before."""
        if self._is_started:
            gc.callbacks.remove(self._on_collection)
            self._is_started = False
            gc.unfreeze()
            self._frozen_total = 0

    def _on_collection(self, phase: str, info: dict[str, int]) -> None:
        # Called by the collector, holding the interpreter, its lists consistent: freezing
        # and unfreezing only move them between generations.
        if phase != "stop" or info.get("generation") != 2:
            return
        stats = self.stats
        # The collection has just moved every survivor into the oldest generation: what the
        # freeze adds (younger generations are empty at this point).
        added = len(gc.get_objects(generation=2))
        gc.freeze()
        stats.freezes += 1
        if self._is_complete_next:  # this collection scanned everything
            self._is_complete_next = False
            stats.complete_collections += 1
            stats.frozen_after_complete = self._count_exactly()
            return
        self._frozen_total += added
        base = max(stats.frozen_after_complete, self.min_base)
        if self._frozen_total <= base * self.growth:
            return
        now = self.clock()
        if now - self._checked_at < self.CHECK_EVERY_S:
            return
        self._checked_at = now
        if self._count_exactly() > base * self.growth:
            gc.unfreeze()  # the next full collection is a complete one
            self._is_complete_next = True

    def _count_exactly(self) -> int:
        """The frozen objects, counted by walking their list; the running total starts again
        from it."""
        self.stats.exact_counts += 1
        self._frozen_total = gc.get_freeze_count()
        return self._frozen_total
