"""``phalanx up --ha``: refused without a PostgreSQL store (flag or PHALANX_HA=1), by the CLI
and by the server; servers on one data dir may run side by side only when all have --ha; the
token they share is created once."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from phalanx.api.server import (
    SERVER_FILE,
    ApiServer,
    ServerError,
    ServerSettings,
    _check_not_running,
    load_or_create_token,
)
from phalanx.cli.main import app


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        pytest.param(["--ha"], {}, "the default SQLite store", id="flag-default-store"),
        pytest.param([], {"PHALANX_HA": "1"}, "the default SQLite store", id="environment"),
        pytest.param(
            ["--ha", "--store-url", "sqlite:////tmp/x.db"],
            {},
            "'sqlite:////tmp/x.db'",
            id="sqlite-url",
        ),
    ],
)
def test_ha_needs_postgresql(
    tmp_path: Path, args: list[str], env: dict[str, str], named: str
) -> None:
    result = CliRunner().invoke(
        app, ["--data-dir", str(tmp_path), "up", *args, "--port", "0"], env=env
    )
    assert result.exit_code == 1, result.output
    assert result.stderr.strip() == (
        f"error: --ha needs a PostgreSQL store shared by every control plane, not {named}; "
        "pass --store-url postgresql+psycopg://USER:PASSWORD@HOST/DB (or set "
        "PHALANX_STORE_URL), the same for each"
    )
    assert not (tmp_path / SERVER_FILE).exists()


def test_the_server_refuses_ha_on_sqlite_too(tmp_path: Path) -> None:
    with pytest.raises(ServerError, match="--ha needs a PostgreSQL store"):
        ApiServer(ServerSettings(data_dir=tmp_path, nodes="1x1", port=0, ha=True))


def write_info(path: Path, *, is_ha: bool) -> None:
    # This very process stands for a live server.
    path.write_text(json.dumps({"pid": os.getpid(), "url": "http://127.0.0.1:1", "ha": is_ha}))


def test_ha_servers_share_a_data_dir_with_each_other_only(tmp_path: Path) -> None:
    info = tmp_path / SERVER_FILE
    write_info(tmp_path / f"server-{os.getpid()}.json", is_ha=True)
    _check_not_running(info, is_ha=True)
    with pytest.raises(ServerError, match="start this one with --ha and the same --store-url"):
        _check_not_running(info, is_ha=False)
    write_info(info, is_ha=False)
    with pytest.raises(ServerError, match="a phalanx server without --ha is running"):
        _check_not_running(info, is_ha=True)


def test_files_of_servers_that_are_gone_are_removed(tmp_path: Path) -> None:
    stale = tmp_path / "server-999999999.json"
    stale.write_text(json.dumps({"pid": 999_999_999, "url": "http://127.0.0.1:1", "ha": True}))
    _check_not_running(tmp_path / SERVER_FILE, is_ha=False)
    assert not stale.exists()


def test_the_token_is_created_once_and_shared(tmp_path: Path) -> None:
    first = load_or_create_token(tmp_path)
    assert load_or_create_token(tmp_path) == first
    assert (tmp_path / "token").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["token"]  # no temporary file left
