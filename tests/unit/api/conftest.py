"""Fixtures: a real ControlPlane (SQLite store, local backend with two virtual 2-GPU nodes) on
tmp_path, served in-process by the real FastAPI app through httpx's ASGI transport."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI

from asgi_client import AppTransport
from phalanx.api import create_app
from phalanx.backends.local.backend import LocalBackend
from phalanx.backends.local.nodes import parse_nodes_option
from phalanx.client import Client
from phalanx.controllers.plane import ControlPlane, ControlPlaneConfig
from phalanx.store import open_store

TOKEN = "test-token"
PYTHON = sys.executable


def stop_all_jobs(plane: ControlPlane, timeout_s: float = 15) -> None:
    """Cancel unfinished jobs and wait for their pods to stop, so no process outlives a test."""
    for job in plane.list_jobs():
        if not job.phase.is_terminal:
            plane.cancel_job(job.name)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        live = [
            p
            for j in plane.list_jobs()
            for p in plane.get_job(j.name).pods
            if not p.phase.is_finished
        ]
        if not live:
            return
        time.sleep(0.05)


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    store = open_store(None, tmp_path)
    backend = LocalBackend(tmp_path, parse_nodes_option("2x2"))
    control = ControlPlane(
        store, backend, ControlPlaneConfig(data_dir=tmp_path, tick_s=0.05, grace_period_s=2)
    )
    control.start()
    try:
        yield control
    finally:
        stop_all_jobs(control)
        control.stop()
        backend.close()
        store.close()


@pytest.fixture
def app_transport() -> type[AppTransport]:
    """The in-process transport class, for tests that build their own app."""
    return AppTransport


@pytest.fixture
def app(plane: ControlPlane) -> FastAPI:
    return create_app(plane, TOKEN)


@pytest.fixture
def http(app: FastAPI) -> Iterator[httpx.Client]:
    """Raw HTTP against the app, with the bearer token."""
    with httpx.Client(
        transport=AppTransport(app),
        base_url="http://phalanx.test",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as client:
        yield client


@pytest.fixture
def anonymous(app: FastAPI) -> Iterator[httpx.Client]:
    """Raw HTTP against the app, without a token."""
    with httpx.Client(transport=AppTransport(app), base_url="http://phalanx.test") as client:
        yield client


@pytest.fixture
def client(app: FastAPI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Client]:
    """The SDK against the app in-process."""
    for name in ("PHALANX_SERVER", "PHALANX_TOKEN", "PHALANX_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    with Client(
        server="http://phalanx.test",
        token=TOKEN,
        data_dir=tmp_path / "client",
        transport=AppTransport(app),
    ) as sdk:
        yield sdk


SETUP_YAML = """
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


@pytest.fixture
def setup_yaml() -> str:
    """YAML of a flavor ``default`` and a queue ``team-a`` with 4 GPUs of quota."""
    return SETUP_YAML


class JobFactory:
    """``make_job(name, code)``: a Job manifest whose pods run ``python -c code``."""

    def __call__(
        self, name: str, code: str, *, replicas: int = 1, gpus: str | int = 1, queue: str = "team-a"
    ) -> dict[str, object]:
        return {
            "apiVersion": "phalanx.dev/v1alpha1",
            "kind": "Job",
            "metadata": {"name": name},
            "spec": {
                "queue": queue,
                "podSets": [
                    {
                        "name": "worker",
                        "replicas": replicas,
                        "resources": {"cpu": "100m", "memory": "64Mi", "nvidia.com/gpu": gpus},
                        "command": [PYTHON, "-c", code],
                    }
                ],
            },
        }


@pytest.fixture
def make_job() -> JobFactory:
    return JobFactory()
