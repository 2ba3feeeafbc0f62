"""Persistence: SQLAlchemy on SQLite (default) or PostgreSQL. Must not import controllers."""

from phalanx.store.identity import IdentityStore
from phalanx.store.memory import MEMORY_URL, ConstraintError, MemoryStore
from phalanx.store.records import (
    AuditRecord,
    Change,
    EventRecord,
    JobRecord,
    Lease,
    ObjectRecord,
    PodRecord,
    TokenRecord,
    Transition,
    UserRecord,
)
from phalanx.store.sql import Store, StoreError, default_url, open_store

__all__ = [
    "MEMORY_URL",
    "AuditRecord",
    "Change",
    "ConstraintError",
    "EventRecord",
    "IdentityStore",
    "JobRecord",
    "Lease",
    "MemoryStore",
    "ObjectRecord",
    "PodRecord",
    "Store",
    "StoreError",
    "TokenRecord",
    "Transition",
    "UserRecord",
    "default_url",
    "open_store",
]
