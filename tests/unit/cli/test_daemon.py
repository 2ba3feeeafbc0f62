"""``phalanx up --daemon`` and ``phalanx down`` as a user runs them: real processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def phalanx(
    data_dir: Path | None, *args: str, home: Path | None = None, timeout_s: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``phalanx [--data-dir DATA_DIR] ARGS`` as a user would, with a home of its own
    (default: next to the data dir), so the standard data dir and the registry of servers are
    the test's."""
    home = home or (data_dir.parent / "home" if data_dir else Path.cwd() / "home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHALANX_", "XDG_"))}
    env |= {"HOME": str(home), "XDG_RUNTIME_DIR": str(home / "run")}
    options = ["--data-dir", str(data_dir)] if data_dir else []
    return subprocess.run(
        [sys.executable, "-m", "phalanx.cli", *options, *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
        check=False,
    )


def test_up_daemon_then_down(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    started = phalanx(data_dir, "up", "--daemon", "--nodes", "1x1", "--port", "0")
    try:
        assert started.returncode == 0, started.stderr
        info = json.loads((data_dir / "server.json").read_text())
        assert (
            started.stdout.splitlines()[0] == f"phalanx is up at {info['url']} (pid {info['pid']})"
        )
        assert (data_dir / "token").stat().st_mode & 0o777 == 0o600
        assert info["token_file"] == str(data_dir / "token")

        nodes = phalanx(data_dir, "get", "nodes")
        assert nodes.returncode == 0, nodes.stderr
        assert nodes.stdout.splitlines()[1].split()[:3] == ["node-0", "True", "0/1"]

        again = phalanx(data_dir, "up", "--daemon", "--nodes", "1x1", "--port", "0")
        assert again.returncode == 1
        assert again.stderr.startswith(f"error: a phalanx server is already running for {data_dir}")
    finally:
        stopped = phalanx(data_dir, "down")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout == f"phalanx stopped (pid {info['pid']})\n"
    assert not (data_dir / "server.json").exists()
    log = (data_dir / "server.log").read_text()
    assert "Finished server process" in log
    assert "phalanx stopped; pods keep running" in log  # a clean shutdown, not a kill

    down_again = phalanx(data_dir, "down")
    assert down_again.stdout == f"phalanx is not running (data dir {data_dir})\n"


def test_up_daemon_reports_a_start_failure(tmp_path: Path) -> None:
    result = phalanx(tmp_path / "data", "up", "--daemon", "--nodes", "9q", "--port", "0")
    assert result.returncode == 1
    assert result.stderr.startswith("error: the server exited with code 1 while starting")
    assert "--nodes: is neither an existing YAML file nor NxG shorthand" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_server_with_its_own_data_dir_is_found_and_named(tmp_path: Path) -> None:
    # A new user's session: `up --data-dir D --daemon`, then commands without it, then with it
    # after the command name.
    data_dir, home = tmp_path / "data", tmp_path / "home"
    started = phalanx(data_dir, "up", "--daemon", "--nodes", "1x2", "--port", "0")
    try:
        assert started.returncode == 0, started.stderr
        assert f"  stop it with: phalanx down --data-dir {data_dir}" in started.stdout
        assert "or export PHALANX_DATA_DIR=" in started.stdout

        lost = phalanx(None, "get", "jobs", home=home)
        assert lost.returncode == 1
        # Whether something else answers at the default URL or not, the fix is named.
        assert f"pass --data-dir {data_dir} or set PHALANX_DATA_DIR={data_dir}" in lost.stderr

        down_elsewhere = phalanx(None, "down", home=home)
        assert down_elsewhere.returncode == 1
        assert down_elsewhere.stderr.endswith(
            f"stop it with `phalanx down --data-dir {data_dir}`\n"
        )

        nodes = phalanx(None, "get", "nodes", "--data-dir", str(data_dir), home=home)
        assert nodes.returncode == 0, nodes.stderr
        assert nodes.stdout.splitlines()[1].split()[:3] == ["node-0", "True", "0/2"]
    finally:
        stopped = phalanx(None, "down", "--data-dir", str(data_dir), home=home)
    assert stopped.returncode == 0, stopped.stderr
    assert not list((home / "run" / "phalanx" / "servers").glob("*.json"))
