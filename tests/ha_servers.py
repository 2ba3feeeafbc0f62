"""``phalanx up --ha`` servers as real processes, for the tests that run two control planes on
one PostgreSQL store (tests/integration/test_ha.py, tests/integration/serving/test_service_ha.py).

Each server runs in its own session with its output in ``<name>.log`` beside its data dir; it
is up once it has written ``server-<pid>.json`` there. Its pods live in their own process
groups, so ``kill_leftover_pods`` is what keeps a failed test from leaving them running.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from phalanx.client import Client

#: From the process's start to its ``server-<pid>.json``: imports, migrations and the lease.
#: Most of it is Python's start-up, which on a loaded 2-core machine took more than 30 s.
START_TIMEOUT_S = 90.0


def wait_until(
    predicate: Callable[[], bool], timeout_s: float, what: str, poll_s: float = 0.02
) -> None:
    """Returns once ``predicate()`` holds; AssertionError naming ``what`` after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll_s)


class UpServer:
    """One ``phalanx up --ha`` process on ``store_url``: its server info and an API client."""

    def __init__(
        self, data_dir: Path, store_url: str, name: str, *, lease_ttl_s: float, nodes: str
    ) -> None:
        self.data_dir = data_dir
        self.log_path = data_dir.parent / f"{name}.log"
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    *(sys.executable, "-m", "phalanx.cli", "--data-dir", str(data_dir), "up"),
                    *("--ha", "--lease-ttl", str(lease_ttl_s), "--store-url", store_url),
                    *("--nodes", nodes, "--port", "0"),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,  # its pods live in their own sessions anyway
            )
        self.pid = self.process.pid
        info_path = data_dir / f"server-{self.pid}.json"
        deadline = time.monotonic() + START_TIMEOUT_S
        while not info_path.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                # Never leave a half-started server behind: no one else knows its pid.
                self.process.kill()
                self.process.wait()
                raise AssertionError(
                    f"{name} did not start in {START_TIMEOUT_S:g} s (exit status "
                    f"{self.process.returncode}); its log:\n{self.log_path.read_text()[-4000:]}"
                )
            time.sleep(0.02)
        self.info: dict[str, str] = json.loads(info_path.read_text())
        self.url = self.info["url"]
        self.client = Client(server=self.url, data_dir=data_dir)

    def kill(self) -> None:
        """SIGKILL the server alone: its pods live on."""
        os.kill(self.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        self.client.close()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def kill_leftover_pods(data_dir: Path) -> None:
    """A failed test must not leave pods running (they are their own process groups)."""
    for pid_file in (data_dir / "pods").glob("*/pid.json"):
        with contextlib.suppress(OSError, ValueError):
            os.killpg(int(json.loads(pid_file.read_text())["pid"]), signal.SIGKILL)
