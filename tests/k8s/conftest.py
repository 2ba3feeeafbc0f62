"""Kubernetes tests run against a real kube-apiserver + etcd with KWOK nodes (8 GPUs each),
started once per session by scripts/testcluster (see cluster.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cluster import SCRIPT, Cluster, ClusterUnavailableError, Plane, start_cluster


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
def cluster(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator[Cluster]:
    required = os.environ.get("PHALANX_REQUIRE_K8S") == "1"
    if not _built():
        message = "test cluster binaries are not built; run scripts/testcluster/testcluster build"
        if required:
            pytest.fail(message)
        pytest.skip(message)
    try:
        started = start_cluster(
            lambda: tmp_path_factory.mktemp("cluster"), 4, _reporter(pytestconfig)
        )
    except ClusterUnavailableError as exc:
        if required:
            pytest.fail(str(exc))
        pytest.skip(str(exc))
    yield started
    started.down()


def _reporter(config: pytest.Config) -> Callable[[str], None]:
    """Writes to the terminal even while output is captured: a retried start is news."""
    terminal = config.pluginmanager.get_plugin("terminalreporter")

    def report(text: str) -> None:
        if terminal is None:
            print(text, file=sys.stderr)
        else:
            terminal.write_line(f"\n{text}", yellow=True)

    return report


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
