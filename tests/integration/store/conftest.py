"""Store fixtures: every store contract test runs on SQLite, on a real PostgreSQL server, and
on the simulator's in-memory store (which must keep the same contract)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from phalanx.store import MemoryStore, Store, default_url


@pytest.fixture(
    params=[
        "sqlite",
        "sqlite-core",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        "memory",
    ]
)
def store(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Store]:
    """A fresh store: SQL on SQLite under ``tmp_path`` (applying jobs through the DBAPI
    cursor, or with ``sqlite-core`` through SQLAlchemy Core as on PostgreSQL), on a fresh
    database of the test PostgreSQL server, or a MemoryStore."""
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "sqlite-core":
        monkeypatch.setenv("PHALANX_STORE_APPLY", "core")
    if request.param.startswith("sqlite"):
        s = Store(default_url(tmp_path))
        yield s
        s.close()
        return
    url = request.getfixturevalue("postgres_url")
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    name = f"t_{os.getpid()}_{abs(hash(request.node.nodeid)) % 10**8}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    s = Store(url.rsplit("/", 1)[0] + f"/{name}")
    yield s
    s.close()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()
