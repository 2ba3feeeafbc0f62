"""HeapFreezer: what survives a full collection is frozen; frozen reference cycles are still
collected once the frozen objects have grown enough; stop leaves the collector as it was."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable, Iterator

import pytest

from phalanx.controllers.heap import HeapFreezer


class _Cyclic:
    """An object in a reference cycle with itself (only the cyclic collector frees it)."""

    def __init__(self) -> None:
        self.me = self


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> _Clock:
    return _Clock()


@pytest.fixture
def freezer(clock: _Clock) -> Iterator[HeapFreezer]:
    gc.collect()
    gc.unfreeze()
    heap = HeapFreezer(growth=2.0, min_base=1, clock=clock)
    heap.start()
    try:
        yield heap
    finally:
        heap.stop()


def test_a_full_collection_freezes_what_survives(freezer: HeapFreezer) -> None:
    freezer.min_base = 10**9  # no complete collection asked for here
    assert gc.get_freeze_count() == 0
    kept = [_Cyclic() for _ in range(100)]
    gc.collect()
    assert freezer.stats.freezes == 1
    assert gc.get_freeze_count() >= len(kept)
    # A collection of the young generations freezes nothing.
    gc.collect(1)
    assert freezer.stats.freezes == 1


def test_stop_unfreezes_and_removes_the_callback(clock: _Clock) -> None:
    heap = HeapFreezer(min_base=10**9, clock=clock)
    callbacks = list(gc.callbacks)
    heap.start()
    heap.start()  # idempotent
    assert len(gc.callbacks) == len(callbacks) + 1
    gc.collect()
    assert gc.get_freeze_count() > 0
    heap.stop()
    assert gc.get_freeze_count() == 0
    assert gc.callbacks == callbacks


def test_frozen_cycles_are_collected_once_the_frozen_objects_grow(
    freezer: HeapFreezer, clock: _Clock
) -> None:
    # The first full collection freezes everything and counts as the base.
    clock.now = 10.0
    gc.collect()  # frozen count > min_base × growth: unfrozen, the next one is complete
    gc.collect()
    assert freezer.stats.complete_collections == 1
    base = freezer.stats.frozen_after_complete
    assert 0 < gc.get_freeze_count() <= base  # frozen objects may have died since

    # A cycle that is alive at a full collection is frozen with the rest; once garbage, a
    # frozen cycle is not collected ...
    cycle = _Cyclic()
    ref = weakref.ref(cycle)
    clock.now = 10.5  # within CHECK_EVERY_S: no check of the growth
    gc.collect()
    del cycle
    clock.now = 10.9
    gc.collect()
    assert ref() is not None, "a frozen cycle should wait for a complete collection"

    # ... until the frozen objects have grown past base × growth: then the next full
    # collection is complete and frees it.
    grown = [[i] for i in range(base * 2)]
    clock.now = 12.0
    gc.collect()
    assert ref() is not None  # this one only unfroze
    gc.collect()
    assert ref() is None
    assert freezer.stats.complete_collections == 2
    assert freezer.stats.frozen_after_complete > base
    del grown


def test_without_growth_no_complete_collection_is_asked_for(
    freezer: HeapFreezer, clock: _Clock
) -> None:
    freezer.min_base = 10**9
    for step in range(5):
        clock.now = 10.0 * (step + 1)
        gc.collect()
    assert freezer.stats.complete_collections == 0
    assert freezer.stats.freezes == 5


def test_the_frozen_objects_are_counted_exactly_only_when_a_complete_collection_may_be_due(
    freezer: HeapFreezer, clock: _Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Counting them walks their whole list, holding the interpreter: not on every check.
    exact = gc.get_freeze_count
    walks: list[int] = []

    def counted() -> int:
        walks.append(exact())
        return walks[-1]

    monkeypatch.setattr(gc, "get_freeze_count", counted)
    # Only the collections below: none set off by the allocations in between.
    monkeypatch.setattr(freezer, "min_base", 10**9)
    gc.disable()
    try:
        _count_walks_while_growing(freezer, clock, exact, walks)
    finally:
        gc.enable()


def _count_walks_while_growing(
    freezer: HeapFreezer, clock: _Clock, exact: Callable[[], int], walks: list[int]
) -> None:
    for step in range(5):
        clock.now = 10.0 * (step + 1)
        gc.collect()
    assert walks == []
    assert freezer.stats.exact_counts == 0

    # Objects frozen and then dead count in the running total: once it passes base × growth,
    # one exact count finds the heap has not grown, and no complete collection follows.
    frozen = exact()
    died = [[i] for i in range(frozen + 1000)]
    clock.now = 60.0
    gc.collect()
    del died
    freezer.min_base = frozen
    clock.now = 70.0
    gc.collect()
    assert len(walks) == 1
    assert walks[0] < frozen * 2
    clock.now = 80.0
    gc.collect()
    assert freezer.stats.complete_collections == 0
    assert len(walks) == 1  # the total starts again from the exact count

    # Objects that stay alive: the total passes base × growth again, the exact count agrees,
    # and the next full collection is complete.
    kept = [[i] for i in range(frozen * 2)]
    clock.now = 90.0
    gc.collect()
    assert len(walks) == 2
    gc.collect()
    assert freezer.stats.complete_collections == 1
    assert len(walks) == 3  # the base, counted after the complete collection
    del kept
