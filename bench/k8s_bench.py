"""Benchmark: phalanx vs the default kube-scheduler on a 500-node KWOK cluster (8 GPUs each).

Submits 2,000 single-pod jobs and 200 8-pod gangs (1 GPU per pod: 3,600 pods) through phalanx
and prints pods bound per second and the time until every pod runs. Then deletes them and
creates the same 3,600 pods unbound, for the kube-scheduler built from the same Kubernetes
release, and prints the same figures and the ratio. Needs `scripts/testcluster/testcluster
build --with-scheduler`. Not a test: figures vary with the machine.

    python bench/k8s_bench.py [--nodes 500] [--singles 2000] [--gangs 200]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "testcluster" / "testcluster"
sys.path.insert(0, str(ROOT / "tests" / "k8s"))

from kubernetes import client as k8s  # noqa: E402
from kubernetes import config as k8s_config  # noqa: E402

from phalanx.backends.kubernetes import KubernetesBackend  # noqa: E402
from phalanx.controllers.plane import ControlPlane, ControlPlaneConfig  # noqa: E402
from phalanx.store import open_store  # noqa: E402

API = "phalanx.dev/v1alpha1"


def _job(name: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "queue": "q",
            "podSets": [
                {
                    "name": "w",
                    "replicas": replicas,
                    "image": "busybox:1.36",
                    "command": ["sleep", "3600"],
                    "resources": {"cpu": "500m", "memory": "1Gi", "nvidia.com/gpu": 1},
                }
            ],
        },
    }


def _count(core: Any, selector: str) -> tuple[int, int]:
    """(pods bound to a node, pods running) among pods matching ``selector``; raw JSON, so the
    client's slow model deserialisation does not slow the measurement."""
    response = core.list_pod_for_all_namespaces(label_selector=selector, _preload_content=False)
    pods = json.loads(response.data)["items"]
    bound = sum(1 for p in pods if p["spec"].get("nodeName"))
    return bound, sum(1 for p in pods if p.get("status", {}).get("phase") == "Running")


def _wait(core: Any, selector: str, total: int, started: float) -> tuple[float, float]:
    bound_at = running_at = 0.0
    while not running_at:
        bound, running = _count(core, selector)
        now = time.perf_counter() - started
        if bound >= total and not bound_at:
            bound_at = now
        if running >= total:
            running_at = now
        time.sleep(0.2)
    return bound_at, running_at


def run_phalanx(kubeconfig: str, singles: int, gangs: int) -> tuple[float, float, int]:
    data_dir = Path(tempfile.mkdtemp(prefix="phalanx-k8s-bench-"))
    plane = ControlPlane(
        open_store(None, data_dir),
        KubernetesBackend(kubeconfig=kubeconfig),
        ControlPlaneConfig(data_dir, grace_period_s=0),
    )
    plane.apply(
        [
            {
                "apiVersion": API,
                "kind": "ResourceFlavor",
                "metadata": {"name": "default"},
                "spec": {},
            },
            {
                "apiVersion": API,
                "kind": "Queue",
                "metadata": {"name": "q"},
                "spec": {
                    "flavors": [
                        {
                            "name": "default",
                            "resources": {"cpu": 100000, "memory": "1Pi", "nvidia.com/gpu": 100000},
                        }
                    ]
                },
            },
        ]
    )
    total = singles + gangs * 8
    manifests = [_job(f"s{i}", 1) for i in range(singles)] + [
        _job(f"g{i}", 8) for i in range(gangs)
    ]
    core = plane.backend.core  # type: ignore[attr-defined]
    plane.start()  # the control loop runs in its own thread, as in `phalanx up`
    started = time.perf_counter()
    plane.apply(manifests)
    bound_at, running_at = _wait(
        core, "app.kubernetes.io/managed-by=phalanx,phalanx.dev/role=pod", total, started
    )
    plane.stop()
    plane.backend.close()
    return bound_at, running_at, total


def _delete_all(kubeconfig: str) -> None:
    """Delete phalanx's pods and wait until they are gone, before the baseline runs."""
    core = k8s.CoreV1Api(k8s_config.new_client_from_config(config_file=kubeconfig))
    core.delete_collection_namespaced_pod("default", grace_period_seconds=0)
    while _count(core, "")[0]:
        time.sleep(0.5)


def run_kube_scheduler(kubeconfig: str, total: int) -> tuple[float, float]:
    api = k8s_config.new_client_from_config(config_file=kubeconfig)
    core = k8s.CoreV1Api(api)

    def body(i: int) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": f"ks-{i}", "labels": {"bench": "kube-scheduler"}},
            "spec": {
                "containers": [
                    {
                        "name": "c",
                        "image": "busybox:1.36",
                        "command": ["sleep", "3600"],
                        "resources": {
                            "requests": {"cpu": "500m", "memory": "1Gi", "nvidia.com/gpu": "1"},
                            "limits": {"nvidia.com/gpu": "1"},
                        },
                    }
                ]
            },
        }

    started = time.perf_counter()
    # As many concurrent creations as phalanx's backend uses (8 API workers).
    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: core.create_namespaced_pod("default", body(i)), range(total)))
    return _wait(core, "bench=kube-scheduler", total, started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--singles", type=int, default=2000)
    parser.add_argument("--gangs", type=int, default=200)
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="phalanx-k8s-bench-cluster-"))
    out = subprocess.run(
        [
            str(SCRIPT),
            "up",
            "--nodes",
            str(args.nodes),
            "--dir",
            str(directory),
            "--daemon",
            "--with-scheduler",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode:
        sys.exit(f"testcluster up failed: {out.stderr[-1500:]}")
    kubeconfig = str(directory / "kubeconfig")
    try:
        bound_s, running_s, total = run_phalanx(kubeconfig, args.singles, args.gangs)
        print(
            f"phalanx:        {total} pods bound in {bound_s:.1f}s ({total / bound_s:.0f} pods/s), all running after {running_s:.1f}s"
        )
        _delete_all(kubeconfig)
        k_bound, k_running = run_kube_scheduler(kubeconfig, total)
        print(
            f"kube-scheduler: {total} pods bound in {k_bound:.1f}s ({total / k_bound:.0f} pods/s), all running after {k_running:.1f}s"
        )
        print(
            f"ratio phalanx/kube-scheduler: pods bound per second x{(total / bound_s) / (total / k_bound):.2f}, time to all running x{running_s / k_running:.2f}"
        )
        print(
            "note: both create pods with 8 concurrent API requests; kube-scheduler then binds each (no gang admission)."
        )
    finally:
        subprocess.run(
            [str(SCRIPT), "down", "--dir", str(directory)], capture_output=True, check=False
        )


if __name__ == "__main__":
    main()
