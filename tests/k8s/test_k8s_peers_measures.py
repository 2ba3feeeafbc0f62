"""The side-by-side benchmark's gang measures (bench/k8s_peers.py): stranded GPU·s from pod
records, and the bind times it reads from the API server's audit log, on a real test cluster
started with the benchmark's audit policy."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from cluster import SCRIPT, bin_dir

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("k8s_peers", ROOT / "bench" / "k8s_peers.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["k8s_peers"] = module
    spec.loader.exec_module(module)
    return module


bench = _bench()


def pod(
    name: str,
    gpus: int = 8,
    *,
    seen: float = 0.0,
    asked: float | None = None,
    bound: float | None = None,
    ended: float | None = None,
    succeeded: bool = True,
    unschedulable: float | None = None,
    terminating: float | None = None,
) -> Any:
    """A pod record: its bind request received at ``asked`` and answered (and seen bound) at
    ``bound``."""
    return bench.PodRecord(
        "ns",
        "job",
        gpus,
        seen,
        bound_at=bound,
        ended_at=ended,
        succeeded=succeeded if ended is not None else False,
        unschedulable_at=unschedulable,
        terminating_at=terminating,
        bind_received_at=asked,
        bind_answered_at=bound,
        name=name,
    )


CASES = [
    pytest.param(
        2,
        [pod("a", asked=1.0, bound=1.2, ended=30), pod("b", asked=1.1, bound=1.4, ended=30)],
        (0.0, 0.0),
        id="binds-in-flight-together-strand-nothing",
    ),
    pytest.param(
        2,
        [pod("a", asked=1.0, bound=1.2, ended=30), pod("b", asked=1.5, bound=1.6, ended=30)],
        (8 * 0.3, 0.0),
        id="a-bind-answered-before-the-sibling-was-asked",
    ),
    pytest.param(
        2,
        [
            pod("a", asked=1.0, bound=1.0, ended=30),
            pod("b", unschedulable=2.0, asked=11.0, bound=11.0, ended=40),
        ],
        (8 * 10.0, 8 * 9.0),
        id="sibling-waits-then-is-unschedulable",
    ),
    pytest.param(
        3,
        [pod("a", asked=0.0, bound=0.0, ended=None), pod("b", asked=0.0, bound=0.0, ended=None)],
        (2 * 8 * 50.0, 0.0),
        id="a-pod-never-created-strands-until-now",
    ),
    pytest.param(
        2,
        [
            pod("a", asked=0.0, bound=0.0, ended=5.0),
            pod("b", asked=8.0, bound=8.0, ended=28.0),
        ],
        (8 * 5.0, 0.0),
        id="a-succeeded-pod-keeps-its-place",
    ),
    pytest.param(
        2,
        [
            pod("a", asked=0.0, bound=0.0, terminating=4.0, ended=4.5, succeeded=False),
            pod("b", asked=0.0, bound=0.0, terminating=4.2, ended=4.6, succeeded=False),
            pod("a2", seen=6.0, asked=7.0, bound=7.0, ended=30.0),
            pod("b2", seen=6.5, asked=9.0, bound=9.0, ended=30.0),
        ],
        (8 * 2.0, 0.0),
        id="a-torn-down-gang-strands-nothing-its-next-generation-does",
    ),
    pytest.param(
        2,
        [
            pod("a", asked=0.0, bound=0.0, terminating=4.1, ended=4.6, succeeded=False),
            pod("b", terminating=4.0, ended=4.5, succeeded=False),
        ],
        (8 * 4.0, 0.0),
        id="a-gang-given-up-strands-until-marked-for-deletion",
    ),
    pytest.param(
        4,
        [
            pod("a", seen=0.0, asked=0.4, bound=0.5, ended=30.0),
            pod("b", seen=0.2, asked=0.4, bound=0.6, ended=30.0),
            pod("c", seen=3.0, asked=3.1, bound=3.2, ended=30.0),
            pod("d", seen=3.0, asked=3.1, bound=3.2, ended=30.0),
        ],
        (8 * 0.1 + 16 * 2.4 + 16 * 0.1, 0.0),
        id="pods-not-yet-created-are-holes",
    ),
    pytest.param(
        2,
        [
            pod("a", seen=0.0, asked=1.0, bound=1.2, ended=30.0),
            pod("b", seen=1.5, asked=1.1, bound=1.3, ended=30.0),
        ],
        (0.0, 0.0),
        id="a-pod-the-watch-shows-late-existed-when-its-bind-was-received",
    ),
    pytest.param(
        2,
        [pod("a", asked=None, bound=None), pod("b", unschedulable=1.0)],
        (0.0, 0.0),
        id="nothing-bound-holds-nothing",
    ),
]


@pytest.mark.parametrize(("size", "pods", "expected"), CASES)
def test_stranded_gpu_seconds(size: int, pods: list[Any], expected: tuple[float, float]) -> None:
    got = bench.stranded_gpu_s(size, pods, now=50.0)
    assert got == pytest.approx(expected)


def test_a_pod_seen_bound_before_its_bind_is_answered_holds_from_then() -> None:
    # The watch can show the bind before the API server logs its answer: the earlier counts.
    a = pod("a", asked=1.0, bound=1.5, ended=30)
    a.bound_at = 1.2
    b = pod("b", asked=1.4, bound=1.6, ended=30)
    assert bench.stranded_gpu_s(2, [a, b], now=50.0) == pytest.approx((8 * 0.2, 0.0))


@pytest.mark.k8s
def test_the_audit_log_gives_each_bind_its_received_and_answered_times(tmp_path: Path) -> None:
    if not (bin_dir() / "kube-apiserver").exists():
        message = "test cluster binaries are not built; run scripts/testcluster/testcluster build"
        if os.environ.get("PHALANX_REQUIRE_K8S") == "1":
            pytest.fail(message)
        pytest.skip(message)
    policy = tmp_path / "audit-policy.yaml"
    policy.write_text(bench.AUDIT_POLICY)
    directory = tmp_path / "cluster"
    out = subprocess.run(
        [str(SCRIPT), "up", "--nodes", "1", "--dir", str(directory), "--daemon"],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TESTCLUSTER_AUDIT_POLICY": str(policy)},
    )
    assert out.returncode == 0, out.stderr[-3000:]
    try:
        api = bench.Api(directory)
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "p0", "namespace": "default"},
            "spec": {
                "schedulerName": "nobody",
                "containers": [{"name": "main", "image": "busybox:1.36"}],
            },
        }
        api.call("POST", "/api/v1/namespaces/default/pods", body)
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": "p0", "namespace": "default"},
            "target": {"apiVersion": "v1", "kind": "Node", "name": "kwok-gpu-0000"},
        }
        before = time.time()
        api.call("POST", "/api/v1/namespaces/default/pods/p0/binding", binding)
        after = time.time()
        # A bind refused (bound already) is in the log but is not the pod's bind.
        with pytest.raises(Exception, match="409"):
            api.call("POST", "/api/v1/namespaces/default/pods/p0/binding", binding)
        audit = directory / "logs" / "audit.log"
        lines = [json.loads(line) for line in audit.read_text().splitlines()]
        # Only binds are logged (not the pod's creation, nor anything else the cluster does).
        assert {e["objectRef"].get("subresource") for e in lines} == {"binding"}
        assert len(lines) == 2
        binds = bench.bind_requests(audit, "default")
        assert list(binds) == ["p0"]
        received, answered = binds["p0"]
        assert before - 0.01 <= received <= answered <= after + 0.01
        assert bench.bind_requests(audit, "other") == {}
    finally:
        subprocess.run(
            [str(SCRIPT), "down", "--dir", str(directory)], capture_output=True, check=False
        )
