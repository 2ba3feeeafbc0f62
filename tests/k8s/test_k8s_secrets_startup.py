"""Secrets and pods that never start, against a real kube-apiserver with KWOK GPU nodes.

Secrets: a phalanx Secret referenced by a pod's env becomes a real ``Secret`` of the same
name in the namespace (labelled as phalanx's), the pod refers to it through
``valueFrom.secretKeyRef`` and no value appears in its spec; a Secret of that name that
phalanx did not create is never overwritten.
"""

from __future__ import annotations

import base64
import json

import pytest
from cluster import Cluster, Plane, job, queue

pytestmark = pytest.mark.k8s

VALUE = "k8s-s3cret-d41d8c"


def secret(name: str, **data: str) -> dict[str, object]:
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Secret",
        "metadata": {"name": name},
        "spec": {"stringData": data},
    }


def job_with_secret(name: str, secret_name: str) -> dict[str, object]:
    manifest = job(name, gpus=1)
    manifest["spec"]["podSets"][0]["env"] = [  # type: ignore[index]
        {"name": "PLAIN", "value": "1"},
        {"name": "PASSWORD", "valueFrom": {"secretKeyRef": {"name": secret_name, "key": "pw"}}},
    ]
    return manifest


def test_secrets_become_kubernetes_secrets_referenced_by_the_pod(
    cluster: Cluster, plane: Plane
) -> None:
    plane.plane.apply([*queue(), secret("px-db", pw=VALUE)])
    plane.plane.apply([job_with_secret("sec", "px-db")])
    plane.run_until(lambda: plane.job("sec").phase.value == "Running")
    found = json.loads(cluster.kubectl("get", "secret", "px-db", "-o", "json"))
    assert found["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "phalanx"
    assert found["metadata"]["labels"]["phalanx.dev/secret"] == "px-db"
    assert base64.b64decode(found["data"]["pw"]).decode() == VALUE
    (pod,) = cluster.pods("phalanx.dev/job=sec")
    assert VALUE not in json.dumps(pod)
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    assert env["PASSWORD"]["valueFrom"] == {"secretKeyRef": {"name": "px-db", "key": "pw"}}
    assert env["PLAIN"]["value"] == "1"

    # a new value is written to the Kubernetes Secret at the next launch that uses it
    plane.plane.apply([secret("px-db", pw="second")])
    plane.plane.apply([job_with_secret("sec2", "px-db")])
    plane.run_until(lambda: plane.job("sec2").phase.value == "Running")
    found = json.loads(cluster.kubectl("get", "secret", "px-db", "-o", "json"))
    assert base64.b64decode(found["data"]["pw"]).decode() == "second"


def test_a_secret_phalanx_did_not_create_is_not_overwritten(cluster: Cluster, plane: Plane) -> None:
    cluster.kubectl("create", "secret", "generic", "theirs", "--from-literal=pw=original")
    try:
        plane.plane.apply([*queue(), secret("theirs", pw=VALUE)])
        plane.plane.apply([job_with_secret("clash", "theirs")])
        plane.run_until(lambda: plane.job("clash").phase.value == "Failed")
        message = str(plane.job("clash").reason_facts["pod_message"])
        assert "not created by phalanx" in message and "theirs" in message
        found = json.loads(cluster.kubectl("get", "secret", "theirs", "-o", "json"))
        assert base64.b64decode(found["data"]["pw"]).decode() == "original"
    finally:
        cluster.kubectl("delete", "secret", "theirs", "--ignore-not-found")


# ---- pods that never start (KWOK stages phalanx-pod-waiting and phalanx-pod-rejected) ----


def events_of(plane: Plane, name: str, reason: str) -> list[dict[str, object]]:
    return [dict(e.facts) for e in plane.job(name).events if e.reason == reason]


def test_a_pod_that_never_starts_is_an_event_and_times_out_by_policy(
    cluster: Cluster, plane: Plane
) -> None:
    """ImagePullBackOff becomes a PodWaiting event; after startupTimeout the attempt is
    restarted (OnFailure, one restart) and then failed (StartupTimeout); its pods are
    deleted and its quota and devices go to the next job."""
    plane.plane.apply(queue(gpus=8))
    waiting = {
        "phalanx.dev/kwok-waiting-reason": "ImagePullBackOff",
        "phalanx.dev/kwok-waiting-message": 'Back-off pulling image "registry.invalid/x"',
    }
    plane.plane.apply(
        [
            job(
                "pull",
                gpus=8,
                annotations=waiting,
                startupTimeout="3s",
                restartPolicy={"policy": "OnFailure", "maxRestarts": 1, "backoff": "0.2s"},
            )
        ]
    )
    plane.run_until(lambda: bool(events_of(plane, "pull", "PodWaiting")))
    (first,) = events_of(plane, "pull", "PodWaiting")
    assert first["waiting_reason"] == "ImagePullBackOff"
    assert "registry.invalid" in str(first["waiting_message"])
    assert plane.job("pull").phase.value == "Admitted"

    plane.run_until(lambda: plane.job("pull").phase.value == "Failed", timeout_s=40)
    failed = plane.job("pull")
    assert failed.reason_code == "StartupTimeout"
    assert failed.reason_facts["cause"] == "Startup"
    assert failed.reason_facts["restarts"] == 1
    (pod,) = failed.reason_facts["not_running"]  # type: ignore[misc]
    assert pod["waiting_reason"] == "ImagePullBackOff"
    restarting = events_of(plane, "pull", "Restarting")
    assert [e["cause"] for e in restarting] == ["Startup"]

    plane.plane.apply([job("next", gpus=8)])  # the queue's 8 GPUs are free again
    plane.run_until(lambda: plane.job("next").phase.value == "Running")
    plane.run_until(lambda: not cluster.pods("phalanx.dev/job=pull"))


def test_a_pod_the_kubelet_rejects_fails_with_its_reason(cluster: Cluster, plane: Plane) -> None:
    plane.plane.apply(queue())
    rejected = {
        "phalanx.dev/kwok-reject-reason": "UnexpectedAdmissionError",
        "phalanx.dev/kwok-reject-message": "Allocate failed due to no healthy devices",
    }
    plane.plane.apply([job("rejected", gpus=1, annotations=rejected)])
    plane.run_until(lambda: plane.job("rejected").phase.value == "Failed")
    facts = plane.job("rejected").reason_facts
    assert facts["pod_reason"] == "UnexpectedAdmissionError"
    assert "no healthy devices" in str(facts["pod_message"])
    (event,) = events_of(plane, "rejected", "Failed")
    assert event["pod_reason"] == "UnexpectedAdmissionError"
