"""The audit log's rows (``IdentityStore.record_audit``): on SQLite written through the DBAPI
cursor (store/dbapi.py), with ``sqlite-core`` and on PostgreSQL through SQLAlchemy Core; the
same records read back either way, long fields cut to their columns."""

from __future__ import annotations

import pytest

from phalanx.auth.audit import AuditLog
from phalanx.store import AuditRecord, MemoryStore, Store
from phalanx.store.identity import IdentityStore


def test_audit_records_read_back_as_written_long_fields_cut(store: Store) -> None:
    if isinstance(store, MemoryStore):
        pytest.skip("the audit log lives in the SQL store")
    log = IdentityStore(store)
    records = [
        AuditRecord(100.5, "alice", "POST /api/v1/apply", "Job", "train-0", 200),
        AuditRecord(101.25, "bob", "x" * 400, "K" * 40, "n" * 300, 403, "d" * 2500),
        AuditRecord(102.0, "alice", "DELETE /api/v1/jobs/{name}", "Job", "é", 204, "gone"),
    ]
    log.record_audit(records)
    log.record_audit([])
    got = log.audit(limit=10)
    assert [(r.at, r.user, r.action, r.kind, r.name, r.status, r.detail) for r in got] == [
        (100.5, "alice", "POST /api/v1/apply", "Job", "train-0", 200, ""),
        (101.25, "bob", "x" * 300, "K" * 32, "n" * 253, 403, "d" * 2000),
        (102.0, "alice", "DELETE /api/v1/jobs/{name}", "Job", "é", 204, "gone"),
    ]
    assert len({r.id for r in got}) == 3 and all(r.id > 0 for r in got)
    assert [r.name for r in log.audit(user="bob")] == ["n" * 253]


def test_the_log_stores_records_queued_many_at_once_in_order(store: Store) -> None:
    if isinstance(store, MemoryStore):
        pytest.skip("the audit log lives in the SQL store")
    log = AuditLog(IdentityStore(store), batch=3, linger_s=5.0)
    try:
        log.record_many([])
        log.record(AuditRecord(1.0, "alice", "POST /api/v1/apply", "Queue", "q", 200))
        log.record_many(
            [
                AuditRecord(2.0, "alice", "POST /api/v1/apply", "Job", f"j-{i}", 200)
                for i in range(7)
            ]
        )
        # More than a batch of 3 in all: flush waits for every one, not for the linger.
        names = [r.name for r in log.query(limit=100)]
    finally:
        log.close()
    assert names == ["q"] + [f"j-{i}" for i in range(7)]
