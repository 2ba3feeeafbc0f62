"""The store's schema version: Alembic revisions applied at start, and ``phalanx db``.

``upgrade`` brings any database to the newest revision: a new one gets every revision, one
written before migrations existed (tables but no ``alembic_version``) is stamped at the
baseline first, and one at the newest revision is left alone. Must not import controllers.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

_MIGRATIONS = Path(__file__).with_name("migrations")
BASELINE = "0001"
#: pg_advisory_xact_lock key for schema upgrades ("phalanx" in ASCII, truncated).
_LOCK_KEY = 0x7068616C616E78


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision this release knows."""
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    revision = ScriptDirectory.from_config(config).get_current_head()
    assert revision is not None
    return revision


def _current(connection: Connection) -> str | None:
    revision = MigrationContext.configure(connection).get_current_revision()
    if revision is None and inspect(connection).has_table("jobs"):
        return BASELINE
    return revision


def current(engine: Engine) -> str | None:
    """The database's revision: None for an empty database, the baseline for one written
    before migrations existed."""
    with engine.connect() as connection:
        return _current(connection)


def upgrade(engine: Engine, target: str = "head") -> tuple[str | None, str]:
    """Upgrade the database to ``target`` in one transaction; return (revision before,
    revision after). Control planes starting together on one PostgreSQL database take turns
    (an advisory lock), so each revision runs once.

    On SQLite, foreign keys are off while the revisions run: SQLite alters a table by copying
    it and dropping the old one, and with foreign keys on, dropping ``jobs`` would cascade to
    every pod and event. The keys are checked before the connection goes back to the pool.
    """
    is_sqlite = engine.dialect.name == "sqlite"
    with engine.connect() as connection:
        if is_sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.execute(
                        text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY}
                    )
                before = _current(connection)
                config = _config(connection)
                if before == BASELINE and not inspect(connection).has_table("alembic_version"):
                    command.stamp(config, BASELINE)
                if before != head() or target != "head":
                    command.upgrade(config, target)
                after = _current(connection)
                if is_sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(
                            f"schema upgrade left {len(broken)} rows with dangling references"
                        )
        finally:
            if is_sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()
    return before, after or ""
