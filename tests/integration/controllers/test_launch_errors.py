"""Launch errors end to end (real control plane, local backend, real processes): a pod that
cannot start fails its job by policy as the application's fault, never counts against its
node, and releases its devices; a job whose pods never started can be cancelled; a crash
between writing a pod's launch record and starting it relaunches the pod (same attempt)."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import Harness, job_manifest, queue_manifests

from phalanx.backends.base import PodLaunch
from phalanx.backends.local.backend import LocalBackend
from phalanx.store import PodRecord

pytestmark = pytest.mark.integration


def node_failures(h: Harness) -> dict[str, int]:
    return {
        n.name: len(h.plane.lifecycle.health.get(n.name).failures) for n in h.plane.backend.nodes()
    }


def live_pods(h: Harness) -> list[PodRecord]:
    return h.plane.store.pods(live_only=True)


def test_launch_errors_fail_the_job_not_the_node(harness: Harness) -> None:
    """Three jobs whose workingDir or command cannot be used fail as the application's
    fault: no node failure is recorded (three used to quarantine a healthy node), and each
    one's GPU is free again for the job that follows."""
    h = harness
    h.plane.apply(queue_manifests(gpus=4))
    bad = [
        job_manifest("no-dir", "print(1)", gpus=2, replicas=2),
        job_manifest("no-exec", "print(1)", gpus=2, replicas=2),
        job_manifest("no-dir-2", "print(1)", gpus=2, replicas=2),
    ]
    bad[0]["spec"]["podSets"][0]["workingDir"] = "/nonexistent/dir"  # type: ignore[index]
    bad[1]["spec"]["podSets"][0]["command"] = ["/nonexistent/tool"]  # type: ignore[index]
    bad[2]["spec"]["podSets"][0]["workingDir"] = "/nonexistent/dir"  # type: ignore[index]
    h.plane.apply([*bad, job_manifest("good", "print('ok')", gpus=2, replicas=2)])

    h.run_until(lambda: h.phase("good") == "Succeeded")
    for name in ("no-dir", "no-exec", "no-dir-2"):
        job = h.job(name)
        assert job.phase.value == "Failed", (name, job.message)
        reasons = {p.reason for p in job.pods}  # the gang's other pod may be stopped first
        assert "LaunchError" in reasons and reasons <= {"LaunchError", "Stopped"}, reasons
    assert set(node_failures(h).values()) == {0}
    assert not any(h.plane.lifecycle.health.get(n).is_quarantined for n in node_failures(h))


def test_a_launch_that_raises_fails_the_pod_and_frees_its_devices(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the backend raises at launch (the old NUL-in-env ValueError, an API
    rejection) fails the pod: the job does not stay Admitted holding its GPUs."""
    h = harness
    h.plane.apply(queue_manifests(gpus=4))

    def refuse(pod: PodLaunch) -> None:
        raise ValueError("embedded null byte")

    monkeypatch.setattr(h.plane.backend, "launch", refuse)
    h.plane.apply([job_manifest("raises", "print(1)", gpus=2, replicas=2)])
    h.run_until(lambda: h.phase("raises") == "Failed")
    monkeypatch.undo()
    reasons = {p.reason for p in h.job("raises").pods}
    assert "LaunchError" in reasons and reasons <= {"LaunchError", "Stopped"}, reasons
    assert not live_pods(h)
    assert set(node_failures(h).values()) == {0}
    h.plane.apply([job_manifest("after", "print('ok')", gpus=2, replicas=2)])
    h.run_until(lambda: h.phase("after") == "Succeeded")


def never_spawn(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control plane dies after writing launch.json and before the supervisor starts."""
    monkeypatch.setattr(LocalBackend, "_spawn", lambda *args: None)


def test_a_crash_between_launch_record_and_start_relaunches_the_pod(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    h = harness
    h.plane.apply(queue_manifests(gpus=4))
    never_spawn(monkeypatch)
    h.plane.apply([job_manifest("resumed", "print('ran')", gpus=2, replicas=2)])
    h.run_until(lambda: h.phase("resumed") == "Admitted")
    (pod,) = {p.attempt for p in live_pods(h)}
    monkeypatch.undo()

    h.restart()

    h.run_until(lambda: h.phase("resumed") == "Succeeded")
    job = h.job("resumed")
    assert job.attempt == pod == 1  # the same attempt, not a restart
    assert {p.reason for p in job.pods} == {"Completed"}
    assert set(node_failures(h).values()) == {0}


@pytest.mark.parametrize("how", ["cancel", "delete"])
def test_a_job_whose_pods_never_started_releases_everything_when_cancelled(
    harness: Harness, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    h = harness
    h.plane.apply(queue_manifests(gpus=4))
    never_spawn(monkeypatch)
    h.plane.apply([job_manifest("stuck", "print(1)", gpus=2, replicas=2)])
    h.run_until(lambda: h.phase("stuck") == "Admitted")
    assert live_pods(h)

    if how == "cancel":
        h.plane.cancel_job("stuck")
    else:
        h.plane.delete_job("stuck")
    h.run_until(lambda: not live_pods(h))
    monkeypatch.undo()
    assert set(node_failures(h).values()) == {0}
    h.plane.apply([job_manifest("next", "print('ok')", gpus=2, replicas=2)])
    h.run_until(lambda: h.phase("next") == "Succeeded")
