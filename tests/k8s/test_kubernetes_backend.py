"""The Kubernetes backend against a real kube-apiserver with KWOK GPU nodes: what the scheduler
decides is exactly what `kubectl get pods` shows."""

from __future__ import annotations

import json
import time

import pytest
from cluster import Cluster, Plane, job, queue

pytestmark = pytest.mark.k8s


def _nodes_of(cluster: Cluster, selector: str) -> list[str]:
    return sorted(p["spec"]["nodeName"] for p in cluster.pods(selector))


def test_a_4x8_gang_lands_on_four_nodes_at_once(cluster: Cluster, plane: Plane) -> None:
    plane.plane.apply(queue())
    plane.plane.apply([job("big", gpus=8, replicas=4)])
    plane.run_until(lambda: plane.job("big").phase.value == "Running")
    decided = sorted(p.node for p in plane.job("big").pods)
    assert decided == ["kwok-gpu-0000", "kwok-gpu-0001", "kwok-gpu-0002", "kwok-gpu-0003"]
    assert _nodes_of(cluster, "phalanx.dev/job=big") == decided
    for pod in cluster.pods("phalanx.dev/job=big"):
        assert pod["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "8"
        assert pod["metadata"]["labels"]["phalanx.dev/pod-set"] == "worker"
    svc = json.loads(cluster.kubectl("get", "service", "px-big-a1", "-o", "json"))
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["selector"] == {
        "phalanx.dev/job": "big",
        "phalanx.dev/attempt": "1",
        "phalanx.dev/rank": "0",
    }


def test_foreign_pods_are_respected_and_the_gang_waits_whole(
    cluster: Cluster, plane: Plane
) -> None:
    foreign = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "someone-else", "namespace": "default"},
        "spec": {
            "nodeName": "kwok-gpu-0002",
            "containers": [
                {
                    "name": "c",
                    "image": "x",
                    "resources": {
                        "requests": {"nvidia.com/gpu": "1"},
                        "limits": {"nvidia.com/gpu": "1"},
                    },
                }
            ],
        },
    }
    cluster.kubectl("apply", "-f", "-", input_text=json.dumps(foreign))
    plane.run_until(
        lambda: any(h.node == "kwok-gpu-0002" for h in plane.plane.backend.held_capacity())
    )
    plane.plane.apply(queue())
    plane.plane.apply([job("big", gpus=8, replicas=4)])
    plane.run_until(lambda: bool(plane.job("big").message))
    waiting = plane.job("big")
    assert waiting.phase.value == "Pending"
    assert "only 3 of 4 pods fit at once" in waiting.message
    assert cluster.pods("phalanx.dev/job=big") == []
    cluster.kubectl("delete", "pod", "someone-else", "--grace-period=0", "--force")
    plane.run_until(lambda: plane.job("big").phase.value == "Running")
    assert len(cluster.pods("phalanx.dev/job=big")) == 4


def test_pod_failure_injected_by_kwok_applies_the_restart_policy(
    cluster: Cluster, plane: Plane
) -> None:
    plane.plane.apply(queue())
    annotations = {"phalanx.dev/kwok-runtime-seconds": "1", "phalanx.dev/kwok-fail-exit-code": "3"}
    plane.plane.apply(
        [
            job(
                "flaky",
                gpus=1,
                replicas=2,
                annotations=annotations,
                restartPolicy={"policy": "OnFailure", "maxRestarts": 1, "backoff": "0.1s"},
            )
        ]
    )
    plane.run_until(lambda: plane.job("flaky").phase.value == "Failed", timeout_s=60)
    done = plane.job("flaky")
    assert done.restarts == 1 and done.attempt == 2
    assert "exited with code 3" in done.message
    assert [e.reason for e in done.events].count("Restarting") == 1


def test_a_node_going_not_ready_loses_its_pods_and_the_gang_moves(
    cluster: Cluster, plane: Plane
) -> None:
    plane.plane.apply(queue())
    plane.plane.apply(
        [
            job(
                "gang",
                gpus=8,
                replicas=2,
                restartPolicy={"policy": "OnFailure", "maxRestarts": 2, "backoff": "0.1s"},
            )
        ]
    )
    plane.run_until(lambda: plane.job("gang").phase.value == "Running")
    first = sorted(p.node for p in plane.job("gang").pods)
    cluster.kubectl("label", "node", first[0], "phalanx.dev/kwok-not-ready=true", "--overwrite")
    plane.run_until(
        lambda: plane.job("gang").attempt == 2 and plane.job("gang").phase.value == "Running",
        timeout_s=60,
    )
    second = sorted(p.node for p in plane.job("gang").pods if p.attempt == 2)
    assert first[0] not in second
    assert (
        sorted(
            p["spec"]["nodeName"]
            for p in cluster.pods("phalanx.dev/job=gang,phalanx.dev/attempt=2")
        )
        == second
    )
    lost = [p for p in plane.job("gang").pods if p.attempt == 1 and p.node == first[0]]
    assert lost and lost[0].phase.value == "Lost"


def test_control_plane_restart_creates_nothing_twice(cluster: Cluster, plane: Plane) -> None:
    plane.plane.apply(queue())
    plane.plane.apply([job("a", gpus=4, replicas=2), job("b", gpus=2, replicas=3)])
    plane.run_until(
        lambda: plane.job("a").phase.value == "Running" and plane.job("b").phase.value == "Running"
    )
    before = {p.pod_id: p.node for j in ("a", "b") for p in plane.job(j).pods}
    plane.restart()
    for _ in range(10):
        plane.plane.tick()
        time.sleep(0.1)
    after = {p.pod_id: p.node for j in ("a", "b") for p in plane.job(j).pods}
    assert after == before
    names = [
        p["metadata"]["name"]
        for p in cluster.pods("app.kubernetes.io/managed-by=phalanx,phalanx.dev/role=pod")
    ]
    assert sorted(names) == sorted(before)
    assert {plane.job("a").phase.value, plane.job("b").phase.value} == {"Running"}


def test_a_fractional_pair_shares_one_reserved_device(cluster: Cluster, plane: Plane) -> None:
    plane.plane.apply(queue())
    plane.plane.apply([job("frac", gpus=0.5, replicas=2)])
    plane.run_until(lambda: plane.job("frac").phase.value == "Running")
    pods = plane.job("frac").pods
    assert len({(p.node, p.devices[0].index) for p in pods}) == 1
    node, device = pods[0].node, pods[0].devices[0].index
    share = json.loads(cluster.kubectl("get", "pod", f"px-gpu-share-{node}-{device}", "-o", "json"))
    assert share["spec"]["nodeName"] == node
    assert share["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    for pod in cluster.pods("phalanx.dev/job=frac"):
        env = {e["name"]: e["value"] for e in pod["spec"]["containers"][0]["env"]}
        assert env["NVIDIA_VISIBLE_DEVICES"] == str(device)
        assert "nvidia.com/gpu" not in pod["spec"]["containers"][0]["resources"].get("limits", {})
    # Fill the other nodes, then the rest of this one: the shared device is never handed out.
    plane.plane.apply([job("fill", gpus=8, replicas=3)])
    plane.run_until(lambda: plane.job("fill").phase.value == "Running")
    assert node not in {p.node for p in plane.job("fill").pods}
    plane.plane.apply([job("whole", gpus=1, replicas=7)])
    plane.run_until(lambda: plane.job("whole").phase.value == "Running")
    whole = plane.job("whole").pods
    assert {p.node for p in whole} == {node}
    assert device not in {d.index for p in whole for d in p.devices}
    plane.plane.apply([job("one-more", gpus=1)])
    plane.run_until(lambda: bool(plane.job("one-more").message))
    assert plane.job("one-more").phase.value == "Pending"
    requested = sum(
        int(p["spec"]["containers"][0]["resources"].get("limits", {}).get("nvidia.com/gpu", "0"))
        for p in cluster.pods("app.kubernetes.io/managed-by=phalanx")
        if p["spec"]["nodeName"] == node
    )
    assert requested <= 8


def test_deploy_manifests_pass_server_side_dry_run(cluster: Cluster) -> None:
    from cluster import ROOT

    cluster.kubectl("apply", "-f", str(ROOT / "deploy" / "kubernetes" / "namespace.yaml"))
    out = cluster.kubectl("apply", "--dry-run=server", "-f", str(ROOT / "deploy" / "kubernetes"))
    for kind in (
        "serviceaccount/phalanx",
        "clusterrole.rbac.authorization.k8s.io/phalanx",
        "deployment.apps/phalanx",
    ):
        assert kind in out


def test_an_oom_kill_reported_by_the_cluster_fails_fast_naming_the_limit(
    cluster: Cluster, plane: Plane
) -> None:
    plane.plane.apply(queue())
    annotations = {
        "phalanx.dev/kwok-runtime-seconds": "1",
        "phalanx.dev/kwok-fail-reason": "OOMKilled",
    }
    plane.plane.apply(
        [
            job(
                "hungry",
                gpus=1,
                annotations=annotations,
                restartPolicy={"policy": "OnFailure", "maxRestarts": 3},
            )
        ]
    )
    plane.run_until(lambda: plane.job("hungry").phase.value == "Failed", timeout_s=60)
    done = plane.job("hungry")
    assert done.restarts == 0, "onOOM defaults to Fail: no restart"
    assert "1Gi" in done.message and "OOM" in done.message.upper()


def test_node_loss_restarts_elsewhere_without_counting_a_restart(
    cluster: Cluster, plane: Plane
) -> None:
    plane.plane.apply(queue())
    plane.plane.apply([job("solo", gpus=8, restartPolicy={"policy": "Never"})])
    plane.run_until(lambda: plane.job("solo").phase.value == "Running")
    node = plane.job("solo").pods[0].node
    cluster.kubectl("label", "node", node, "phalanx.dev/kwok-not-ready=true", "--overwrite")
    plane.run_until(
        lambda: plane.job("solo").attempt == 2 and plane.job("solo").phase.value == "Running",
        timeout_s=60,
    )
    moved = plane.job("solo")
    assert moved.restarts == 0
    assert {p.node for p in moved.pods if p.attempt == 2} != {node}


def test_the_checkpoint_directory_is_a_volume_at_the_same_path(
    cluster: Cluster, plane: Plane
) -> None:
    plane.plane.apply(queue())
    with_claim = job(
        "ckpt", gpus=1, replicas=2, checkpoint={"persistentVolumeClaim": "training-checkpoints"}
    )
    plane.plane.apply([with_claim, job("scratch", gpus=1)])
    plane.run_until(
        lambda: (
            plane.job("ckpt").phase.value == "Running"
            and plane.job("scratch").phase.value == "Running"
        )
    )
    for pod in cluster.pods("phalanx.dev/job=ckpt"):
        container = pod["spec"]["containers"][0]
        path = {e["name"]: e["value"] for e in container["env"]}["PHALANX_CHECKPOINT_DIR"]
        assert container["volumeMounts"][0]["mountPath"] == path
        assert container["volumeMounts"][0]["subPath"] == path.rsplit("/", 1)[-1]
        assert pod["spec"]["volumes"][0]["persistentVolumeClaim"] == {
            "claimName": "training-checkpoints"
        }
    (scratch,) = cluster.pods("phalanx.dev/job=scratch")
    assert scratch["spec"]["volumes"][0]["emptyDir"] == {}
