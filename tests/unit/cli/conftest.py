"""Fixtures: a real phalanx server (ApiServer: SQLite, local backend with two virtual 2-GPU
nodes, uvicorn on a free port) in a background thread, and a CliRunner pointed at its data
directory the way a user's shell would be (server.json + token file)."""

from __future__ import annotations

import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from phalanx.api.server import ApiServer, ServerSettings
from phalanx.cli.main import app
from phalanx.client import Client

SETUP_YAML = """\
apiVersion: phalanx.dev/v1alpha1
kind: ResourceFlavor
metadata: {name: default}
---
apiVersion: phalanx.dev/v1alpha1
kind: Queue
metadata: {name: team-a}
spec:
  flavors:
  - name: default
    resources: {cpu: 2, memory: 4Gi, nvidia.com/gpu: 4}
"""


def job_yaml(name: str, code: str, *, gpus: str = "1", replicas: int = 1) -> str:
    """A Job in queue team-a whose pods run ``python -c code`` (code on one line)."""
    return f"""\
apiVersion: phalanx.dev/v1alpha1
kind: Job
metadata: {{name: {name}}}
spec:
  queue: team-a
  podSets:
  - name: worker
    replicas: {replicas}
    resources: {{cpu: 100m, memory: 64Mi, nvidia.com/gpu: "{gpus}"}}
    command: ["{sys.executable}", "-c", "{code}"]
"""


@pytest.fixture
def setup_file(tmp_path: Path) -> Path:
    """A YAML file with flavor ``default`` and queue ``team-a`` (4 GPUs of quota)."""
    path = tmp_path / "setup.yaml"
    path.write_text(SETUP_YAML)
    return path


@pytest.fixture
def job_file(tmp_path: Path) -> Callable[..., Path]:
    """``job_file(name, code, gpus=, replicas=)``: write a Job YAML file, return its path."""

    def write(name: str, code: str, *, gpus: str = "1", replicas: int = 1) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(job_yaml(name, code, gpus=gpus, replicas=replicas))
        return path

    return write


@dataclass
class RunningServer:
    data_dir: Path
    url: str
    server: ApiServer

    def client(self) -> Client:
        return Client(data_dir=self.data_dir)

    def wait_phase(self, job: str, *phases: str, timeout_s: float = 20) -> None:
        with self.client() as client:
            client.wait_for(job, phases, timeout_s=timeout_s, poll_s=0.05)


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No PHALANX_* variables, and a home of the test's own: the standard data dir is
    ``home_data_dir`` and the registry of running servers lies under ``tmp_path/run``."""
    for name in ("PHALANX_SERVER", "PHALANX_TOKEN", "PHALANX_DATA_DIR", "XDG_DATA_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))


@pytest.fixture
def home_data_dir(clean_env: None, tmp_path: Path) -> Path:
    """The data dir commands use without --data-dir or PHALANX_DATA_DIR (empty)."""
    return tmp_path / "home" / ".local" / "share" / "phalanx"


@pytest.fixture
def server(tmp_path: Path, clean_env: None) -> Iterator[RunningServer]:
    data_dir = tmp_path / "data"
    api = ApiServer(
        ServerSettings(data_dir=data_dir, nodes="2x2", port=0, log_level="warning", tick_s=0.05)
    )
    thread = threading.Thread(target=api.run, name="phalanx-test-server", daemon=True)
    thread.start()
    running = RunningServer(api.data_dir, api.url, api)
    deadline = time.monotonic() + 10
    while not (data_dir / "server.json").exists():
        assert time.monotonic() < deadline, "the server did not write server.json"
        time.sleep(0.01)
    try:
        yield running
    finally:
        with running.client() as client:
            for job in client.jobs():
                if not job["is_finished"]:
                    client.cancel(job["name"])
            deadline = time.monotonic() + 15
            while any(
                p["phase"] in ("Pending", "Running") for j in client.jobs() for p in j["pods"]
            ):
                if time.monotonic() > deadline:
                    break
                time.sleep(0.05)
        api.request_stop()
        thread.join(timeout=15)


Invoke = Callable[..., Result]


@pytest.fixture
def cli(server: RunningServer) -> Invoke:
    """Run ``phalanx --data-dir <server's> ARGS...``; returns the Result (stdout/stderr apart)."""
    runner = CliRunner()

    def invoke(*args: str, input: str | None = None) -> Result:
        return runner.invoke(app, ["--data-dir", str(server.data_dir), *args], input=input)

    return invoke


@pytest.fixture
def unused_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
