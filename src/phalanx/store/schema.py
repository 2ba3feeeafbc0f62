"""The store's schema version: Alembic revisions applied at start, and ``phalanx db``.

``upgrade`` brings any database to the newest revision: a new one gets every revision, one
written before migrations existed (tables but no ``alembic_version``) is stamped at the
baseline first, and one at the newest revision is left alone. An empty SQLite database gets
the newest schema from ``migrations/head.sqlite.sql``, the schema text the revisions leave
there (a test checks it against them). Alembic is imported only when there is something to
migrate (or to tell): it and what it loads (Mako, Pygments) are some 10 MiB of a server's
memory, kept for the server's life once imported. Must not import controllers.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection, Engine

if TYPE_CHECKING:
    from alembic.config import Config

_MIGRATIONS = Path(__file__).with_name("migrations")
#: The newest schema on SQLite, as the revisions leave a new database (see that file).
SQLITE_HEAD = _MIGRATIONS / "head.sqlite.sql"
BASELINE = "0001"
#: The newest revision, as ``head()`` reads it from the revisions (a test checks that they
#: agree): a database already there is left alone without importing Alembic.
HEAD = "0003"
#: pg_advisory_xact_lock key for schema upgrades ("phalanx" in ASCII, truncated).
_LOCK_KEY = 0x7068616C616E78


def _config(connection: Connection) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision this release knows."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    revision = ScriptDirectory.from_config(config).get_current_head()
    assert revision is not None
    return revision


def _current(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    revision = MigrationContext.configure(connection).get_current_revision()
    if revision is None and inspect(connection).has_table("jobs"):
        return BASELINE
    return revision


def _is_at(engine: Engine, revision: str) -> bool:
    """Whether the database is at ``revision`` (read without Alembic)."""
    with engine.connect() as connection:
        if not inspect(connection).has_table("alembic_version"):
            return False
        rows = connection.execute(text("SELECT version_num FROM alembic_version")).all()
        return [r[0] for r in rows] == [revision]


def sqlite_head_statements() -> tuple[str, list[str]]:
    """(revision, statements) of ``SQLITE_HEAD``: the revision its first line names and the
    CREATE statements that follow, each as SQLite keeps it (no trailing semicolon)."""
    text = SQLITE_HEAD.read_text(encoding="utf-8")
    first, _, _ = text.partition("\n")
    revision = first.removeprefix("-- revision ").strip()
    body = "".join(line for line in text.splitlines(keepends=True) if not line.startswith("--"))
    statements = [s.strip("\n") for s in body.split(";\n") if s.strip()]
    return revision, statements


def _create_on_empty_sqlite(engine: Engine) -> bool:
    """Create the newest schema, and its row of ``alembic_version``, in an empty SQLite
    database in one transaction; return False, writing nothing, when the database is not
    empty (it is Alembic's to upgrade) or the statements are of another revision than
    ``HEAD``.

    The transaction takes SQLite's write lock before it looks (BEGIN IMMEDIATE), so of two
    processes opening one new file together, one creates the schema and the other then finds
    it at the newest revision.
    """
    revision, statements = sqlite_head_statements()
    if revision != HEAD:
        return False
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            if cursor.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                connection.rollback()
                return False
            for statement in statements:
                cursor.execute(statement)
            cursor.execute("INSERT INTO alembic_version (version_num) VALUES (?)", (HEAD,))
            connection.commit()
        except BaseException:
            connection.rollback()
            raise
        finally:
            cursor.close()
    finally:
        connection.close()
    return True


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
    if target == "head" and _is_at(engine, HEAD):
        return HEAD, HEAD
    if target == "head" and engine.dialect.name == "sqlite" and _create_on_empty_sqlite(engine):
        return None, HEAD
    from alembic import command

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
