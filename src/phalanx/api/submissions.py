"""Group commit of concurrent ``POST /api/v1/apply`` requests: one writer thread takes every
request waiting when it is free and writes them all in one store transaction
(``JobRoutes.apply_many``), each request still validated, authorized and written all or
nothing on its own, and each answered only once its transaction has committed.

Why: eight clients submitting one job each used to cost eight worker-thread hops, eight
transactions and eight reads before writing, with the threads fighting over the
interpreter; now a burst costs one hop, one transaction and one wake-up of the event loop
per batch. A request's error (a bad manifest, a refused owner, a conflict) is its own; a
failed transaction fails only the requests written in it.

The writer thread is started by the first request and ends after ``idle_s`` without one, so
an application that is no longer used leaves no thread behind. Must not import client or
cli.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass

from phalanx.api.fast_routes import JobRoutes
from phalanx.auth import Principal

__all__ = ["ApplyBatcher"]

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Waiting:
    """One request waiting for the writer, and where to answer it."""

    principal: Principal | None
    manifests: list[Mapping[str, object]]
    source: str
    future: asyncio.Future[bytes]
    loop: asyncio.AbstractEventLoop


class ApplyBatcher:
    """Writes concurrent applies together (module docstring). Thread-safe."""

    def __init__(
        self, routes: JobRoutes, *, max_manifests: int = 2000, idle_s: float = 2.0
    ) -> None:
        #: A batch takes waiting requests in order while it holds at most this many
        #: manifests (a single request of more is written alone).
        self.max_manifests = max_manifests
        self.idle_s = idle_s
        self._routes = routes
        self._cond = threading.Condition()
        self._waiting: list[_Waiting] = []
        self._thread: threading.Thread | None = None
        #: Batches written so far, and the requests in them (for tests and metrics).
        self.batches = 0
        self.requests = 0

    @property
    def waiting(self) -> int:
        """Requests waiting for the writer now."""
        with self._cond:
            return len(self._waiting)

    async def apply(
        self, principal: Principal | None, manifests: list[Mapping[str, object]], source: str
    ) -> bytes:
        """The JSON list of apply outcomes of ``manifests``, once committed; raises what
        ``JobRoutes.apply`` raises."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        with self._cond:
            self._waiting.append(_Waiting(principal, manifests, source, future, loop))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="phalanx-apply", daemon=True)
                self._thread.start()
            self._cond.notify()
        return await future

    def _take(self) -> list[_Waiting]:
        """The next batch: waiting requests in arrival order, up to ``max_manifests``; []
        after ``idle_s`` without any (the thread then ends). Called with the lock held."""
        if not self._waiting:
            self._cond.wait(self.idle_s)
            if not self._waiting:
                self._thread = None
                return []
        count, taken = 0, 0
        for waiting in self._waiting:
            if taken and count + len(waiting.manifests) > self.max_manifests:
                break
            count += len(waiting.manifests)
            taken += 1
        batch, self._waiting = self._waiting[:taken], self._waiting[taken:]
        return batch

    def _run(self) -> None:
        try:
            self._write_batches()
        finally:  # ended, or died: the next request starts another writer
            with self._cond:
                if self._thread is threading.current_thread():
                    self._thread = None
                if self._thread is None and self._waiting:
                    self._thread = threading.Thread(
                        target=self._run, name="phalanx-apply", daemon=True
                    )
                    self._thread.start()

    def _write_batches(self) -> None:
        while True:
            with self._cond:
                batch = self._take()
            if not batch:
                return
            try:
                outcomes = self._routes.apply_many(
                    [(w.principal, w.manifests, w.source) for w in batch]
                )
            except Exception as exc:  # not one request's: every request of the batch fails
                log.exception("writing %d apply requests failed", len(batch))
                outcomes = [exc] * len(batch)
            self.batches += 1
            self.requests += len(batch)
            by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Waiting, bytes | Exception]]]
            by_loop = {}
            for waiting, outcome in zip(batch, outcomes, strict=True):
                by_loop.setdefault(waiting.loop, []).append((waiting, outcome))
            for loop, answers in by_loop.items():
                try:
                    loop.call_soon_threadsafe(_settle, answers)
                except RuntimeError:  # that loop has closed: no one waits for the answer
                    log.warning("%d apply answers had no event loop to go to", len(answers))


def _settle(answers: list[tuple[_Waiting, bytes | Exception]]) -> None:
    """Answer each request (in its event loop's thread), unless it was given up."""
    for waiting, outcome in answers:
        if waiting.future.done():  # cancelled: the client went away
            continue
        if isinstance(outcome, Exception):
            waiting.future.set_exception(outcome)
        else:
            waiting.future.set_result(outcome)
