"""The schema check at start: ``schema.HEAD`` is the newest revision, and a database already
there is opened without importing Alembic (some 11 MiB of a server's memory)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

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


def test_head_is_the_newest_revision() -> None:
    assert schema.head() == schema.HEAD


def test_a_database_at_the_newest_revision_opens_without_alembic(tmp_path: Path) -> None:
    def opened() -> str:
        return subprocess.run(
            [sys.executable, "-c", OPEN, str(tmp_path)], capture_output=True, text=True, check=True
        ).stdout.strip()

    assert opened() == "True"  # a new database gets every revision
    assert opened() == "False"  # then it is at the newest: nothing to do
    store = open_store(None, tmp_path, migrate=False)
    try:
        assert schema.current(store.engine) == schema.HEAD
        assert schema.upgrade(store.engine) == (schema.HEAD, schema.HEAD)
    finally:
        store.close()
