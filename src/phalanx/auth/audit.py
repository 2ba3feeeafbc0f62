"""The audit log: every mutating API call (who, what, which object, result, when).

``AuditLog.record`` only queues the record; one writer thread stores queued records in
batches, so a submission does not wait for a second transaction. The writer lets a batch
gather for up to ``linger_s`` (one transaction for many single-job submissions rather than
one each); ``flush()`` cuts that short and waits until everything queued so far is stored
(reads of the log call it first, and ``close`` does).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence

from phalanx.store import AuditRecord, IdentityStore

log = logging.getLogger(__name__)


class AuditLog:
    """Audit records written to ``store`` by a background thread."""

    def __init__(self, store: IdentityStore, *, batch: int = 500, linger_s: float = 0.05) -> None:
        self.store = store
        self._batch = batch
        self._linger_s = linger_s
        self._flushes = 0  # flush() calls waiting: the writer does not linger for them
        self._pending: list[AuditRecord] = []
        self._written = 0
        self._queued = 0
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="phalanx-audit", daemon=True)
        self._thread.start()

    def record(self, record: AuditRecord) -> None:
        self.record_many((record,))

    def record_many(self, records: Sequence[AuditRecord]) -> None:
        """``record`` each of ``records`` (a batch of applied jobs: one lock, not one each)."""
        if not records:
            return
        with self._cond:
            was_empty = not self._pending
            self._pending += records
            self._queued += len(records)
            # The writer waits for a first record, then lingers until a batch is full:
            # waking it for the records in between would only cost a thread switch each.
            if was_empty or len(self._pending) >= self._batch:
                self._cond.notify_all()

    def flush(self, timeout_s: float = 10.0) -> None:
        """Wait until every record queued before this call is stored."""
        with self._cond:
            target = self._queued
            self._flushes += 1
            self._cond.notify_all()
            try:
                self._cond.wait_for(lambda: self._written >= target or self._closed, timeout_s)
            finally:
                self._flushes -= 1

    def query(
        self,
        *,
        user: str | None = None,
        kind: str | None = None,
        name: str | None = None,
        since: float | None = None,
        until: float | None = None,
        limit: int = 1000,
    ) -> list[AuditRecord]:
        """Stored records matching the filters, oldest first (after a flush)."""
        self.flush()
        return self.store.audit(
            user=user, kind=kind, name=name, since=since, until=until, limit=limit
        )

    def close(self) -> None:
        self.flush()
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._pending) or self._closed)
                if not self._pending and self._closed:
                    return
                self._cond.wait_for(
                    lambda: len(self._pending) >= self._batch or self._closed or self._flushes > 0,
                    self._linger_s,
                )
                batch: Sequence[AuditRecord] = self._pending[: self._batch]
                del self._pending[: self._batch]
            try:
                self.store.record_audit(batch)
            except Exception:  # the log must not stop the server; say so loudly
                log.exception("could not store %d audit records", len(batch))
            with self._cond:
                self._written += len(batch)
                self._cond.notify_all()
