"""The pods of a pipeline's steps on a real kube-apiserver with KWOK GPU nodes.

A PipelineRun whose second step is a 2-pod GPU step, driven by the pipeline-run reconciler
over the Kubernetes backend: the step becomes a gang of two Pods, each bound to a node with
its GPUs, labelled and annotated with its job, run and step, running the image's ``python
-m phalanx.pipelines.step`` with the step's description, the torchrun wiring and the S3
credentials of the run's ``artifactsSecret`` as ``secretKeyRef`` (no value in the Pod).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from cluster import Cluster, Plane, queue

from phalanx.pipelines.reconciler import LABEL_RUN, LABEL_STEP, PipelineRunReconciler

pytestmark = pytest.mark.k8s

SECRET_VALUE = "kwok-s3-secret-9e1b"
IMAGE = "registry.example/ml-project:1.4"


def _run() -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": "phalanx.dev/v1alpha1",
            "kind": "Secret",
            "metadata": {"name": "kwok-s3"},
            "spec": {
                "stringData": {
                    "AWS_ACCESS_KEY_ID": "KWOKKEY",
                    "AWS_SECRET_ACCESS_KEY": SECRET_VALUE,
                    "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
                }
            },
        },
        {
            "apiVersion": "phalanx.dev/v1alpha1",
            "kind": "PipelineRun",
            "metadata": {"name": "kwok-train"},
            "spec": {
                "queue": "q",
                "image": IMAGE,
                "artifacts": "s3://ml-artifacts/kwok",
                "artifactsSecret": "kwok-s3",
                # No cache index to read: the steps start without an S3 server.
                "noCache": True,
                "code": {"workingDir": "/home/someone/project", "python": "/opt/venv/bin/python"},
                "steps": [
                    {
                        "name": "train",
                        "task": "project.flow:train",
                        "codeHash": "sha256:" + "ab" * 32,
                        "inputs": {"epochs": {"value": 3}},
                        "replicas": 2,
                        "resources": {"nvidia.com/gpu": 8, "cpu": "4", "memory": "32Gi"},
                    },
                ],
            },
        },
    ]


def test_a_multi_pod_gpu_step_becomes_a_gang_of_pods(cluster: Cluster, plane: Plane) -> None:
    pytest.importorskip("s3fs", reason="the artifact store of the run is s3:// (s3fs)")
    reconciler = PipelineRunReconciler(plane.plane)
    plane.plane.reconcilers.append(reconciler)
    plane.plane.apply([*queue(), *_run()])
    run = plane.plane.store.get_object("PipelineRun", "kwok-train")
    assert run is not None

    def step_pods() -> list[dict[str, Any]]:
        pods = cluster.pods("phalanx.dev/job=kwok-train-s0")
        return [p for p in pods if p["status"].get("phase") == "Running"]

    plane.run_until(lambda: len(step_pods()) == 2, timeout_s=60)
    status = plane.plane.store.get_object("PipelineRun", "kwok-train")
    assert status is not None
    assert status.manifest["status"]["steps"]["train"]["state"] == "Running"

    # The step's Job belongs to the run and names it.
    job = plane.plane.store.get_job("kwok-train-s0")
    assert job is not None
    meta = job.manifest["metadata"]
    assert meta["ownerReferences"] == [
        {"kind": "PipelineRun", "name": "kwok-train", "uid": run.uid}
    ]
    assert meta["labels"] == {LABEL_RUN: "kwok-train", LABEL_STEP: "train"}

    pods = sorted(step_pods(), key=lambda p: p["metadata"]["labels"]["phalanx.dev/rank"])
    assert [p["metadata"]["labels"]["phalanx.dev/rank"] for p in pods] == ["0", "1"]
    assert len({p["spec"]["nodeName"] for p in pods}) == 2  # 8 GPUs each: one pod per node
    for rank, pod in enumerate(pods):
        labels, annotations = pod["metadata"]["labels"], pod["metadata"]["annotations"]
        assert labels["phalanx.dev/job"] == "kwok-train-s0"
        assert labels["phalanx.dev/pod-set"] == "step"
        assert annotations[LABEL_RUN] == "kwok-train" and annotations[LABEL_STEP] == "train"
        (container,) = pod["spec"]["containers"]
        assert container["image"] == IMAGE
        # The image's interpreter, not the paths of the machine the run was submitted from.
        assert container["command"] == ["python", "-m", "phalanx.pipelines.step"]
        assert container.get("workingDir", "") != "/home/someone/project"
        resources = container["resources"]
        assert resources["limits"]["nvidia.com/gpu"] == "8"
        assert resources["requests"]["cpu"] == "4"
        assert resources["requests"]["memory"] == "32Gi"
        env = {e["name"]: e for e in container["env"]}
        assert env["RANK"]["value"] == str(rank) and env["WORLD_SIZE"]["value"] == "2"
        assert env["MASTER_ADDR"]["value"]
        described = json.loads(env["PHALANX_PIPELINE_STEP"]["value"])
        assert described["run"] == "kwok-train" and described["step"] == "train"
        assert described["task"] == "project.flow:train"
        assert described["artifacts"] == "s3://ml-artifacts/kwok"
        assert described["inputs"]["epochs"]["inline"] == "3"
        assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"] == {
            "secretKeyRef": {"name": "kwok-s3", "key": "AWS_SECRET_ACCESS_KEY"}
        }
        ref = env["AWS_ENDPOINT_URL"]["valueFrom"]["secretKeyRef"]
        assert (ref["name"], ref["key"]) == ("kwok-s3", "AWS_ENDPOINT_URL")
        # optional keys the Secret lacks are left out
        assert "AWS_SESSION_TOKEN" not in env and "AWS_DEFAULT_REGION" not in env
        assert SECRET_VALUE not in json.dumps(pod)
    found = json.loads(cluster.kubectl("get", "secret", "kwok-s3", "-o", "json"))
    assert set(found["data"]) >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    plane.plane.reconcilers.remove(reconciler)
