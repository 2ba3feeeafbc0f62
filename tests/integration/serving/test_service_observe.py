"""The Service controller's observe step reads again only the jobs that can be replicas: a
job's labels are fixed when it is submitted, so other jobs' writes (reasons, phases) cost it
no reads (they used to cost a row read each, every tick, with 10,000 jobs pending)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from phalanx.backends.local.backend import LocalBackend
from phalanx.backends.local.nodes import parse_nodes_option
from phalanx.controllers.plane import ControlPlane, ControlPlaneConfig
from phalanx.model.service import SERVICE_LABEL
from phalanx.serving.controller import ServiceController, ServingConfig
from phalanx.store import open_store
from phalanx.testing import job_manifest, queue_manifests


def job(name: str, labels: dict[str, str] | None = None) -> dict[str, object]:
    return job_manifest(
        name, labels=labels, resources={"cpu": "100m", "memory": "64Mi", "nvidia.com/gpu": 1}
    )


def test_observe_reads_added_jobs_and_known_replicas_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = open_store(None, tmp_path)
    backend = LocalBackend(tmp_path, parse_nodes_option("1x1"))
    plane = ControlPlane(store, backend, ControlPlaneConfig(tmp_path, tick_s=0.05))
    services = ServiceController.attach(plane, ServingConfig())
    try:
        plane.apply(queue_manifests(gpu=0))
        services._observe()  # the first pass reads everything
        read: list[str] = []
        list_jobs = store.list_jobs

        def spy(*args: Any, **kwargs: Any) -> Any:
            read.extend(kwargs.get("names") or ())
            return list_jobs(*args, **kwargs)

        monkeypatch.setattr(store, "list_jobs", spy)
        plane.apply([job("plain"), job("replica", {SERVICE_LABEL: "svc"})])
        services._observe()
        assert sorted(read) == ["plain", "replica"]  # both new: read once
        assert set(services._replicas) == {"replica"}

        read.clear()
        plane.cancel_job("plain")
        plane.cancel_job("replica")
        services._observe()
        assert read == ["replica"]  # the plain job's write is not read again
        assert services._replicas["replica"].phase == "Cancelled"

        read.clear()
        plane.delete_job("plain")
        plane.delete_job("replica")
        services._observe()
        assert "plain" not in read
        assert services._replicas == {}
    finally:
        services.close()
        backend.close()
        store.close()
