"""Kubernetes tests run against a real kube-apiserver + etcd with KWOK nodes (8 GPUs each),
started once per session by scripts/testcluster (see cluster.py)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cluster import SCRIPT, Cluster, ClusterUnavailableError, Plane


def _built() -> bool:
    out = subprocess.run([str(SCRIPT), "paths"], capture_output=True, text=True, check=False)
    bin_dir = next(
        (line.split("=", 1)[1] for line in out.stdout.splitlines() if line.startswith("bin_dir=")),
        "",
    )
    return all(
        (Path(bin_dir) / name).exists() for name in ("etcd", "kube-apiserver", "kwok", "kubectl")
    )


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    required = os.environ.get("PHALANX_REQUIRE_K8S") == "1"
    if not _built():
        message = "test cluster binaries are not built; run scripts/testcluster/testcluster build"
        if required:
            pytest.fail(message)
        pytest.skip(message)
    try:
        started = Cluster(tmp_path_factory.mktemp("cluster"), nodes=4)
    except ClusterUnavailableError as exc:
        if required:
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    yield started
    started.down()


@pytest.fixture
def plane(cluster: Cluster, tmp_path: Path) -> Iterator[Plane]:
    cluster.kubectl(
        "delete", "pods", "--all", "--all-namespaces", "--grace-period=0", "--force", "--wait=true"
    )
    for node in ("kwok-gpu-0000", "kwok-gpu-0001", "kwok-gpu-0002", "kwok-gpu-0003"):
        cluster.kubectl("label", "node", node, "phalanx.dev/kwok-not-ready-", "--overwrite")
    p = Plane(cluster, tmp_path)
    yield p
    p.close()
