"""The test cluster (etcd + kube-apiserver + KWOK, built by scripts/testcluster) for tests.

``start_cluster`` runs ``testcluster up --daemon`` in a temporary directory, and once more in a
fresh one (fresh ports, fresh certificates) when that start fails; the first failure's output is
handed to ``on_retry``, a second failure raises with both. When the binaries are not built, the
tests are skipped with the command that builds them — unless PHALANX_REQUIRE_K8S=1 (CI), where
that is an error.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from phalanx.backends.kubernetes import KubernetesBackend
from phalanx.controllers.plane import ControlPlane, ControlPlaneConfig
from phalanx.controllers.views import JobView
from phalanx.store import open_store

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "testcluster" / "testcluster"


class ClusterUnavailableError(RuntimeError):
    pass


def bin_dir() -> Path:
    out = subprocess.run([str(SCRIPT), "paths"], capture_output=True, text=True, check=False)
    for line in out.stdout.splitlines():
        key, _, value = line.partition("=")
        if key.strip() in ("bin", "BIN_DIR", "bin_dir"):
            return Path(value.strip().strip("'\""))
    raise ClusterUnavailableError(
        f"cannot tell where the test cluster binaries are: {out.stdout} {out.stderr}"
    )


class Cluster:
    def __init__(self, directory: Path, nodes: int) -> None:
        self.dir = directory
        out = subprocess.run(
            [str(SCRIPT), "up", "--nodes", str(nodes), "--dir", str(directory), "--daemon"],
            capture_output=True,
            text=True,
            check=False,
        )
        if out.returncode != 0:
            raise ClusterUnavailableError(
                f"testcluster up --dir {directory} failed (exit {out.returncode}):\n"
                f"{out.stderr[-4000:]}"
            )
        env = {}
        for line in (directory / "env").read_text().splitlines():
            if line.startswith("export "):
                key, _, value = line[len("export ") :].partition("=")
                env[key] = value.strip("'")
        self.kubeconfig = env["KUBECONFIG"]
        self.kubectl_bin = env["PHALANX_TESTCLUSTER_KUBECTL"]

    def kubectl(self, *args: str, input_text: str | None = None) -> str:
        out = subprocess.run(
            [self.kubectl_bin, "--kubeconfig", self.kubeconfig, *args],
            capture_output=True,
            text=True,
            input=input_text,
            check=False,
        )
        if out.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {out.stderr}")
        return out.stdout

    def pods(self, selector: str) -> list[dict[str, Any]]:
        return list(
            json.loads(self.kubectl("get", "pods", "-A", "-l", selector, "-o", "json"))["items"]
        )

    def down(self) -> None:
        subprocess.run(
            [str(SCRIPT), "down", "--dir", str(self.dir)], capture_output=True, check=False
        )


def start_cluster(
    make_dir: Callable[[], Path], nodes: int, on_retry: Callable[[str], None]
) -> Cluster:
    """A running cluster in a directory from ``make_dir``, started at most twice.

    One failed start is retried in a new directory, so the ports and certificates are new too;
    ``on_retry`` gets the failure's report (exit status, log tail) so it is never silent.
    Raises ClusterUnavailableError with both reports when the second start fails as well.
    """
    try:
        return Cluster(make_dir(), nodes)
    except ClusterUnavailableError as first:
        on_retry(f"the test cluster did not start; starting it once more.\n{first}")
        try:
            return Cluster(make_dir(), nodes)
        except ClusterUnavailableError as second:
            raise ClusterUnavailableError(
                f"the test cluster failed to start twice.\nfirst start: {first}\n"
                f"second start: {second}"
            ) from second


class Plane:
    """A control plane on the test cluster, driven tick by tick."""

    def __init__(self, cluster: Cluster, data_dir: Path) -> None:
        self.cluster = cluster
        self.data_dir = data_dir
        self.plane = self._make()

    def _make(self) -> ControlPlane:
        backend = KubernetesBackend(kubeconfig=self.cluster.kubeconfig, namespace="default")
        return ControlPlane(
            open_store(None, self.data_dir),
            backend,
            ControlPlaneConfig(self.data_dir, tick_s=0.1, grace_period_s=0),
        )

    def restart(self) -> None:
        """A new control plane and backend on the same store, as after a crash."""
        self.plane.backend.close()
        self.plane = self._make()
        self.plane.reconcile()

    def run_until(self, predicate: Callable[[], bool], timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.plane.tick()
            if predicate():
                return
            time.sleep(0.1)
        jobs = [(j.name, j.phase.value, j.message) for j in self.plane.list_jobs()]
        raise AssertionError(f"timed out; jobs: {jobs}")

    def job(self, name: str) -> JobView:
        return self.plane.get_job(name)

    def close(self) -> None:
        for job in self.plane.list_jobs():
            self.plane.cancel_job(job.name)
        self.plane.tick()
        self.plane.backend.close()
        self.plane.store.close()


def queue(gpus: int = 64) -> list[dict[str, object]]:
    return [
        {
            "apiVersion": "phalanx.dev/v1alpha1",
            "kind": "ResourceFlavor",
            "metadata": {"name": "h100"},
            "spec": {"nodeLabels": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}},
        },
        {
            "apiVersion": "phalanx.dev/v1alpha1",
            "kind": "Queue",
            "metadata": {"name": "q"},
            "spec": {
                "flavors": [
                    {
                        "name": "h100",
                        "resources": {"cpu": 512, "memory": "4Ti", "nvidia.com/gpu": gpus},
                    }
                ]
            },
        },
    ]


def job(
    name: str,
    *,
    gpus: float,
    replicas: int = 1,
    annotations: dict[str, str] | None = None,
    **spec: object,
) -> dict[str, object]:
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Job",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": {
            "queue": "q",
            **spec,
            "podSets": [
                {
                    "name": "worker",
                    "replicas": replicas,
                    "image": "busybox:1.36",
                    "command": ["sh", "-c", "sleep 3600"],
                    "resources": {"cpu": 1, "memory": "1Gi", "nvidia.com/gpu": gpus},
                }
            ],
        },
    }


__all__ = [
    "Cluster",
    "ClusterUnavailableError",
    "Plane",
    "bin_dir",
    "job",
    "queue",
    "start_cluster",
    "sys",
]
