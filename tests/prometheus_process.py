"""A real Prometheus (Debian's ``prometheus``) for tests, scraping what a test names.

It listens on port 0 and the test reads the address it got from its log ("Listening on"), so
no port is chosen ahead and taken by another process before Prometheus binds it. Without the
binary the test is skipped, unless PHALANX_REQUIRE_PROMETHEUS=1 (CI), where that is a failure.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

#: Prometheus's log line for the bound address, e.g. ``msg="Listening on" address=127.0.0.1:46217``.
LISTENING = re.compile(r'msg="Listening on" address=(\S+)')


def prometheus_binary() -> str:
    """The ``prometheus`` on PATH; skips the test (fails it in CI) when there is none."""
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("PHALANX_REQUIRE_PROMETHEUS") == "1":
            pytest.fail("prometheus is required here (apt-get install prometheus)")
        pytest.skip("no prometheus binary (Debian package prometheus)")
    return binary


def bearer_scrape(job_name: str, target: str, token_file: Path) -> dict[str, object]:
    """A scrape config for a phalanx server at ``target`` (host:port), every second, with the
    bearer token read from ``token_file``."""
    return {
        "job_name": job_name,
        "scrape_interval": "1s",
        "metrics_path": "/metrics",
        "authorization": {"type": "Bearer", "credentials_file": str(token_file)},
        "static_configs": [{"targets": [target]}],
    }


@dataclass(frozen=True, slots=True)
class Prometheus:
    url: str
    log_path: Path

    def log_tail(self, chars: int = 2000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


@contextmanager
def running_prometheus(
    directory: Path, scrape_configs: list[dict[str, object]], binary: str | None = None
) -> Iterator[Prometheus]:
    """Prometheus scraping ``scrape_configs`` every second, its files under ``directory``;
    yields once it listens (its HTTP API may still answer 503 while it loads) and stops it
    afterwards. Raises AssertionError with its log when it exits or does not listen in 60 s."""
    config = directory / "prometheus.yml"
    config.write_text(
        json.dumps(  # YAML is a superset of JSON
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "scrape_configs": scrape_configs,
            }
        )
    )
    log_path = directory / "prometheus.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                binary or prometheus_binary(),
                f"--config.file={config}",
                f"--storage.tsdb.path={directory / 'tsdb'}",
                "--web.listen-address=127.0.0.1:0",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        yield Prometheus(f"http://{_address(proc, log_path)}", log_path)
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _address(proc: subprocess.Popen[bytes], log_path: Path) -> str:
    deadline = time.monotonic() + 60
    while True:
        found = LISTENING.search(log_path.read_text(errors="replace"))
        if found:
            return found.group(1)
        exited = proc.poll()
        if exited is not None or time.monotonic() > deadline:
            why = f"exited with status {exited}" if exited is not None else "is not listening"
            tail = log_path.read_text(errors="replace")[-2000:]
            raise AssertionError(f"prometheus {why} after its start; its log:\n{tail}")
        time.sleep(0.05)
