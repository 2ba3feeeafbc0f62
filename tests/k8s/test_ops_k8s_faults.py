"""Kubernetes-only faults for the doctor (issue 13's scenario suite, on the KWOK cluster):
pods whose image cannot be pulled, pods whose container config names a missing ConfigMap,
and pods that are placed but never start. KWOK's ``phalanx-pod-waiting`` stage reports the
container waiting reason and message a kubelet would; ``kwok-start-delay-seconds`` keeps a
pod in ContainerCreating.

Scored as tests/scenarios/runner.py scores the local scenarios: 0 when an expected
root-cause object is missing from the findings, else the precision of the named causes.
"""

from __future__ import annotations

import pytest
from cluster import Cluster, Plane, job, queue

from phalanx.ops.doctor import diagnose
from phalanx.ops.findings import Finding
from phalanx.ops.gpu_usage import UsageSources
from phalanx.ops.observation import observe

pytestmark = pytest.mark.k8s

ONE_TRY = {"policy": "Never"}


def score(findings: list[Finding], expected: set[tuple[str, str]]) -> float:
    named = {(f.code.value, f.object) for f in findings}
    if any(obj not in {o for _, o in named} for _, obj in expected):
        return 0.0
    return len(expected & named) / len(named) if named else 0.0


def doctor(plane: Plane) -> list[Finding]:
    return diagnose(observe(plane.plane, usage=UsageSources(use_nvml=False)))


def waiting(reason: str, message: str) -> dict[str, str]:
    return {
        "phalanx.dev/kwok-waiting-reason": reason,
        "phalanx.dev/kwok-waiting-message": message,
    }


def test_image_pull_failure_is_named_while_the_pod_waits(cluster: Cluster, plane: Plane) -> None:
    plane.plane.apply(queue(gpus=8))
    message = "pull access denied for registry.invalid/trainer, repository does not exist"
    plane.plane.apply([job("pull", gpus=2, annotations=waiting("ErrImagePull", message))])
    plane.run_until(lambda: any(p.reason for p in plane.job("pull").pods))
    findings = doctor(plane)
    assert score(findings, {("ImagePullFailed", "job/pull")}) == 1.0, findings
    (found,) = findings
    assert found.facts["pod_reason"] == "ErrImagePull"
    assert found.facts["message"] == message
    assert "registry.invalid/trainer" in found.summary


def test_missing_configmap_is_named_after_the_startup_timeout(
    cluster: Cluster, plane: Plane
) -> None:
    plane.plane.apply(queue(gpus=8))
    message = 'configmap "train-config" not found'
    plane.plane.apply(
        [
            job(
                "cfg",
                gpus=1,
                annotations=waiting("CreateContainerConfigError", message),
                startupTimeout="2s",
                restartPolicy=ONE_TRY,
            )
        ]
    )
    plane.run_until(lambda: plane.job("cfg").phase.value == "Failed", timeout_s=40)
    findings = doctor(plane)
    assert score(findings, {("ContainerConfigError", "job/cfg")}) == 1.0, findings
    (found,) = findings
    assert 'ConfigMap "train-config"' in found.fix
    assert found.facts["startup_timeouts"] == 1
    assert any("PodWaiting" in e for e in found.events)


def test_pods_that_never_start_are_named(cluster: Cluster, plane: Plane) -> None:
    plane.plane.apply(queue(gpus=8))
    plane.plane.apply(
        [
            job(
                "stuck",
                gpus=4,
                replicas=2,
                annotations={"phalanx.dev/kwok-start-delay-seconds": "100000"},
                startupTimeout="2s",
                restartPolicy=ONE_TRY,
            )
        ]
    )
    plane.run_until(lambda: plane.job("stuck").phase.value == "Failed", timeout_s=40)
    findings = doctor(plane)
    assert score(findings, {("PodsNeverStarted", "job/stuck")}) == 1.0, findings
    (found,) = findings
    assert sorted(found.facts["pods"]) == ["worker-0", "worker-1"]  # type: ignore[call-overload]
