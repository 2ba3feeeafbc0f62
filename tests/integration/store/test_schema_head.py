"""The schema check at start: ``schema.HEAD`` is the newest revision, an empty SQLite database
gets the schema the revisions would make (``migrations/head.sqlite.sql``), and a new database
or one already at the newest revision opens without importing Alembic (some 10 MiB of a
server's memory)."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from phalanx.store import open_store, schema

pytestmark = pytest.mark.integration

OPEN = """
import sys
from pathlib import Path
from phalanx.store import open_store
store = open_store(None, Path(sys.argv[1]))
store.close()
print("alembic" in sys.modules)
"""


def sqlite_schema(path: Path) -> list[tuple[str, str, str, str]]:
    """Every table and index of an SQLite file as SQLite keeps it (type, name, table, SQL;
    the SQL of an index SQLite makes for a constraint is "")."""
    with sqlite3.connect(path) as con:
        rows = con.execute("SELECT type, name, tbl_name, coalesce(sql, '') FROM sqlite_master")
        return sorted(rows)


def sqlite_rows(path: Path) -> dict[str, list[tuple[object, ...]]]:
    with sqlite3.connect(path) as con:
        tables = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: sorted(con.execute(f'SELECT * FROM "{t}"')) for t in tables}


def migrated(path: Path) -> None:
    """A new SQLite database at ``path`` brought to the newest revision by the revisions
    themselves (a target other than "head" always runs them)."""
    engine = create_engine(f"sqlite:///{path}")
    try:
        assert schema.upgrade(engine, schema.HEAD) == (None, schema.HEAD)
    finally:
        engine.dispose()


def test_head_is_the_newest_revision() -> None:
    assert schema.head() == schema.HEAD


def test_sqlite_head_is_the_schema_the_revisions_make(tmp_path: Path) -> None:
    """Byte for byte: the same tables, columns, defaults, keys and indexes, and the same rows
    (the revision's alone). When a revision changes the schema, the file to replace
    ``migrations/head.sqlite.sql`` with is written under this test's tmp_path."""
    migrated(tmp_path / "revisions.db")
    created = open_store(f"sqlite:///{tmp_path / 'created.db'}", tmp_path)
    created.close()
    revision, statements = schema.sqlite_head_statements()
    with sqlite3.connect(tmp_path / "revisions.db") as con:
        expected = [
            r[0]
            for r in con.execute(
                "SELECT sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY rowid"
            )
        ]
    # In any order that makes each table before its indexes: the revisions' own order of
    # the indexes of one table varies from run to run.
    if (revision, sorted(statements)) != (schema.HEAD, sorted(expected)):
        lines = schema.SQLITE_HEAD.read_text(encoding="utf-8").splitlines()
        comments = [f"-- revision {schema.HEAD}"] + [
            line for line in lines[1:] if line.startswith("--")
        ]
        wanted = tmp_path / "head.sqlite.sql"
        wanted.write_text("\n".join(comments) + "\n" + "".join(f"\n{s};\n" for s in expected))
        pytest.fail(f"{schema.SQLITE_HEAD} is not what the revisions make: replace it by {wanted}")
    assert sqlite_schema(tmp_path / "created.db") == sqlite_schema(tmp_path / "revisions.db")
    assert sqlite_rows(tmp_path / "created.db") == sqlite_rows(tmp_path / "revisions.db")
    assert sqlite_rows(tmp_path / "created.db")["alembic_version"] == [(schema.HEAD,)]


def test_a_new_database_and_one_at_the_newest_revision_open_without_alembic(
    tmp_path: Path,
) -> None:
    def opened() -> str:
        return subprocess.run(
            [sys.executable, "-c", OPEN, str(tmp_path)], capture_output=True, text=True, check=True
        ).stdout.strip()

    assert opened() == "False"  # a new database gets the newest schema
    assert opened() == "False"  # then it is at the newest: nothing to do
    store = open_store(None, tmp_path, migrate=False)
    try:
        assert schema.current(store.engine) == schema.HEAD
        assert schema.upgrade(store.engine) == (schema.HEAD, schema.HEAD)
    finally:
        store.close()


def test_two_servers_opening_one_new_database_together_both_find_the_newest_schema(
    tmp_path: Path,
) -> None:
    openers = [
        subprocess.Popen(
            [sys.executable, "-c", OPEN, str(tmp_path)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    for opener in openers:
        _, err = opener.communicate(timeout=120)
        assert opener.returncode == 0, err
    migrated(tmp_path / "revisions.db")
    assert sqlite_schema(tmp_path / "phalanx.db") == sqlite_schema(tmp_path / "revisions.db")
    assert sqlite_rows(tmp_path / "phalanx.db")["alembic_version"] == [(schema.HEAD,)]


def test_a_database_with_tables_of_its_own_is_left_to_the_revisions(tmp_path: Path) -> None:
    """Only an empty database gets the schema file; one with any table (here, not ours) is
    upgraded by the revisions, which keep that table."""
    path = tmp_path / "phalanx.db"
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE notes (body TEXT)")
        con.execute("INSERT INTO notes VALUES ('kept')")
    con.close()
    store = open_store(None, tmp_path)
    try:
        assert schema.current(store.engine) == schema.HEAD
    finally:
        store.close()
    assert sqlite_rows(path)["notes"] == [("kept",)]
    assert set(sqlite_schema(path)) - set(sqlite_schema_of_revisions(tmp_path)) == {
        ("table", "notes", "notes", "CREATE TABLE notes (body TEXT)")
    }


def sqlite_schema_of_revisions(tmp_path: Path) -> list[tuple[str, str, str, str]]:
    migrated(tmp_path / "revisions.db")
    return sqlite_schema(tmp_path / "revisions.db")
