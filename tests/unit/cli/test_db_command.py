"""``phalanx db current|upgrade`` on a new (empty) store, which gets the newest schema at once,
and on a store written before migrations existed (tests/fixtures/store-v0), which the
revisions upgrade."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from phalanx.cli.main import app
from phalanx.store import schema

FIXTURE = Path(__file__).parents[2] / "fixtures" / "store-v0" / "phalanx.db"


def phalanx_db(data_dir: Path, action: str) -> str:
    result = CliRunner().invoke(app, ["--data-dir", str(data_dir), "db", action])
    assert result.exit_code == 0, result.output
    return result.stdout.strip().split(": ", 1)[1]


@pytest.mark.parametrize(
    ("store", "before"),
    [
        pytest.param(None, "(empty)", id="new-empty-file"),
        pytest.param(FIXTURE, schema.BASELINE, id="written-before-migrations"),
    ],
)
def test_db_current_and_upgrade(tmp_path: Path, store: Path | None, before: str) -> None:
    if store is None:
        (tmp_path / "phalanx.db").touch()
    else:
        shutil.copy(store, tmp_path / "phalanx.db")
    head = schema.HEAD
    assert phalanx_db(tmp_path, "current") == (
        f"revision {before} (this release upgrades it to {head})"
    )
    assert phalanx_db(tmp_path, "upgrade") == f"upgraded from {before} to {head}"
    assert phalanx_db(tmp_path, "upgrade") == f"already at revision {head}"
    assert phalanx_db(tmp_path, "current") == f"revision {head} (up to date)"
