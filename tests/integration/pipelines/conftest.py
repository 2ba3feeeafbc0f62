"""A real server (uvicorn on a free port, the local backend with two virtual 4-GPU nodes,
real processes) for the pipeline tests, and a project directory whose modules they write."""

from __future__ import annotations

import importlib
import os
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
from typer.testing import CliRunner, Result

from phalanx.api.server import ApiServer, ServerSettings
from phalanx.cli.main import app
from phalanx.client import Client

SETUP = [
    {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "ResourceFlavor",
        "metadata": {"name": "default"},
        "spec": {},
    },
    {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Queue",
        "metadata": {"name": "team"},
        "spec": {
            "flavors": [
                {"name": "default", "resources": {"cpu": 16, "memory": "32Gi", "nvidia.com/gpu": 8}}
            ]
        },
    },
]


@dataclass
class PipelineServer:
    data_dir: Path
    project: Path
    artifacts: Path

    def client(self) -> Client:
        return Client(data_dir=self.data_dir)

    def cli(self, *args: str) -> Result:
        return CliRunner().invoke(app, ["--data-dir", str(self.data_dir), *args])

    def write(self, module: str, text: str) -> None:
        """Write (or rewrite) a module of the project; the next import reads it again."""
        (self.project / f"{module}.py").write_text(textwrap.dedent(text))
        sys.modules.pop(module, None)
        importlib.invalidate_caches()

    def run(self, target: str, *args: str) -> Result:
        return self.cli(
            "pipeline", "run", target, "-q", "team", "--artifacts", str(self.artifacts), *args
        )

    def get_run(self, name: str) -> dict[str, Any]:
        with self.client() as client:
            return cast(dict[str, Any], client._get(f"/pipelineruns/{name}"))

    def states(self, name: str) -> dict[str, str]:
        steps = self.get_run(name)["status"]["steps"]
        return {step: status["state"] for step, status in steps.items()}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PipelineServer]:
    tmp = tmp_path_factory.mktemp("pipelines")
    names = ("PHALANX_SERVER", "PHALANX_TOKEN", "PHALANX_DATA_DIR", "XDG_RUNTIME_DIR")
    old = {k: os.environ.pop(k, None) for k in names}
    os.environ["XDG_RUNTIME_DIR"] = str(tmp / "run")
    project = tmp / "project"
    project.mkdir()
    old_cwd = Path.cwd()
    os.chdir(project)  # `phalanx pipeline run` imports from, and ships, this directory
    api = ApiServer(
        ServerSettings(
            data_dir=tmp / "data",
            nodes="2x4",
            port=0,
            log_level="warning",
            tick_s=0.05,
            router_port=None,
            # Steps import the project from this directory and write the artifact store
            # beside it, both the test's: pods run as the test's own user.
            pod_user="none",
        )
    )
    thread = threading.Thread(target=api.run, name="phalanx-pipelines-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not (tmp / "data" / "server.json").exists():
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    live = PipelineServer(api.data_dir, project, tmp / "artifacts")
    try:
        with live.client() as client:
            client.apply(SETUP)
        yield live
    finally:
        api.request_stop()
        thread.join(timeout=15)
        os.chdir(old_cwd)
        if str(project) in sys.path:
            sys.path.remove(str(project))
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
