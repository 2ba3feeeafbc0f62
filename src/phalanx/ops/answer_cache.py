"""A small cache of computed answers, each kept with the inputs it was computed from.

An answer is handed out again only while the caller's inputs compare equal to those it was
computed from and it is at most ``max_age_s`` old on the caller's clock (some answers, such as
start-time estimates, drift with time alone). Imports nothing of phalanx.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class AnswerCache(Generic[V]):
    """The last answers by question (``params``), up to ``size`` of them, least recently used
    dropped first. Thread-safe: two callers may both compute an answer, the last one is kept.
    ``computed`` counts the answers put (computed, not handed out again)."""

    def __init__(self, size: int = 8, max_age_s: float = 10.0) -> None:
        self.size = size
        self.max_age_s = max_age_s
        self.computed = 0
        self._lock = threading.Lock()
        self._kept: OrderedDict[Hashable, tuple[object, float, V]] = OrderedDict()

    def get(self, params: Hashable, inputs: object, now: float) -> V | None:
        """The answer to ``params`` if it was computed from inputs equal to ``inputs`` at most
        ``max_age_s`` before ``now`` (and not after it); else None. Callers must not change
        what it returns."""
        with self._lock:
            kept = self._kept.get(params)
            if kept is None:
                return None
            kept_inputs, at, answer = kept
            if not 0 <= now - at <= self.max_age_s or kept_inputs != inputs:
                return None
            self._kept.move_to_end(params)
            return answer

    def put(self, params: Hashable, inputs: object, now: float, answer: V) -> None:
        """Keep ``answer`` to ``params``, computed at ``now`` from ``inputs``."""
        with self._lock:
            self.computed += 1
            self._kept[params] = (inputs, now, answer)
            self._kept.move_to_end(params)
            while len(self._kept) > self.size:
                self._kept.popitem(last=False)
