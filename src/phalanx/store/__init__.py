"""Persistence: SQLAlchemy on SQLite (default) or PostgreSQL. Must not import controllers."""

from phalanx.store.records import (
    Change,
    EventRecord,
    JobRecord,
    Lease,
    ObjectRecord,
    PodRecord,
    Transition,
)
from phalanx.store.sql import Store, StoreError, default_url, open_store

__all__ = [
    "Change",
    "EventRecord",
    "JobRecord",
    "Lease",
    "ObjectRecord",
    "PodRecord",
    "Store",
    "StoreError",
    "Transition",
    "default_url",
    "open_store",
]
