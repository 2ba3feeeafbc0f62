"""A command pointed at a data dir without a server names the server that runs elsewhere."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import pytest
from typer.testing import CliRunner, Result

from phalanx.cli.main import app
from phalanx.client import (
    Client,
    RunningServer,
    _discovery,
    register_server,
    running_servers,
    unregister_server,
)


class Server(Protocol):
    """What the ``server`` fixture gives."""

    data_dir: Path
    url: str


def one_line_error(result: Result) -> str:
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


@pytest.fixture
def registered(server: Server) -> Iterator[Server]:
    """The test server, listed in the registry the way `phalanx up` lists itself (it runs in
    this process, so its pid is ours)."""
    register_server(server.data_dir, server.url, os.getpid())
    yield server
    unregister_server(server.data_dir, os.getpid())


@pytest.fixture
def silent_default_url(unused_port: int, monkeypatch: pytest.MonkeyPatch) -> str:
    """Nothing answers at the URL tried when no server.json names one."""
    url = f"http://127.0.0.1:{unused_port}"
    monkeypatch.setattr(_discovery, "DEFAULT_URL", url)
    return url


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["get", "jobs"], id="get"),
        pytest.param(["apply", "-f", "-"], id="apply"),
        pytest.param(["describe", "node", "node-0"], id="describe"),
    ],
)
def test_no_server_here_names_the_running_one(
    args: list[str], registered: Server, home_data_dir: Path, silent_default_url: str
) -> None:
    line = one_line_error(CliRunner().invoke(app, args, input="kind: Job\n"))
    there = registered.data_dir
    assert line == (
        f"error: no phalanx server for data dir {home_data_dir} (no server.json there, and "
        f"nothing answers at {silent_default_url}); a server is running with --data-dir "
        f"{there}: pass --data-dir {there} or set PHALANX_DATA_DIR={there}"
    )


def test_no_server_anywhere_says_how_to_start_one(
    home_data_dir: Path, silent_default_url: str
) -> None:
    line = one_line_error(CliRunner().invoke(app, ["get", "jobs"]))
    assert line == (
        f"error: no phalanx server for data dir {home_data_dir} (no server.json there, and "
        f"nothing answers at {silent_default_url}); start one with `phalanx up`, or pass the "
        "data dir of a running server with --data-dir or PHALANX_DATA_DIR"
    )


def test_the_server_at_the_default_url_wants_its_token(
    registered: Server, home_data_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The user's case: `phalanx up --data-dir D` listens on the default URL, then
    # `phalanx apply` looks in the default data dir and finds no token.
    monkeypatch.setattr(_discovery, "DEFAULT_URL", registered.url)
    line = one_line_error(CliRunner().invoke(app, ["apply", "-f", "-"], input="kind: Job\n"))
    there = registered.data_dir
    assert line == (
        f"error: no phalanx server for data dir {home_data_dir} (no server.json or token "
        f"there), and the one at {registered.url} wants a token; a server is running with "
        f"--data-dir {there}: pass --data-dir {there} or set PHALANX_DATA_DIR={there} "
        "(or give its token with --token or PHALANX_TOKEN)"
    )


def test_a_token_of_another_data_dir(
    registered: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / "token").write_text("not-this-servers\n")
    monkeypatch.setattr(_discovery, "DEFAULT_URL", registered.url)
    line = one_line_error(CliRunner().invoke(app, ["--data-dir", str(stale), "get", "jobs"]))
    assert line.startswith(
        f"error: no phalanx server for data dir {stale} (no server.json there), and the one at "
        f"{registered.url} refused the token of data dir {stale}; a server is running with "
        f"--data-dir {registered.data_dir}: "
    )
    assert "--token or PHALANX_TOKEN" in line


def test_down_names_the_server_of_another_data_dir(registered: Server, home_data_dir: Path) -> None:
    line = one_line_error(CliRunner().invoke(app, ["down"]))
    there = registered.data_dir
    assert line == (
        f"error: no phalanx server for data dir {home_data_dir}; a server is running with "
        f"--data-dir {there} (pid {os.getpid()}, {registered.url}): stop it with "
        f"`phalanx down --data-dir {there}`"
    )
    with Client(data_dir=there) as client:  # not stopped
        assert client.health()["pid"] == os.getpid()


def test_down_without_any_server_is_still_fine(home_data_dir: Path) -> None:
    result = CliRunner().invoke(app, ["down"])
    assert (result.exit_code, result.stdout) == (
        0,
        f"phalanx is not running (data dir {home_data_dir})\n",
    )


def test_the_registry_drops_servers_that_are_gone(clean_env: None, tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    register_server(tmp_path / "gone", "http://127.0.0.1:1", gone.pid)
    register_server(tmp_path / "alive", "http://127.0.0.1:2", os.getpid())
    assert running_servers() == [
        RunningServer(tmp_path / "alive", "http://127.0.0.1:2", os.getpid())
    ]
    assert running_servers(excluding=tmp_path / "alive") == []
    assert len(list(_discovery.registry_dir().glob("*.json"))) == 1  # the stale entry is gone
    unregister_server(tmp_path / "alive", os.getpid() + 1)  # not its entry: kept
    assert len(running_servers()) == 1
    unregister_server(tmp_path / "alive", os.getpid())
    assert running_servers() == []
