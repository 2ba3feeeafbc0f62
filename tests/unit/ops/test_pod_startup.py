"""Pods that never start (Kubernetes): while they wait, and after startupTimeout ended the
attempt; the doctor on hand-built views (tests/k8s/test_ops_k8s_faults.py runs the same
faults on the KWOK cluster)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from phalanx.controllers.views import EventView, JobView, MetadataView, NodeView, PodView
from phalanx.model.objects import DeviceShare, JobPhase, PodPhase
from phalanx.model.resources import Resources
from phalanx.ops.doctor import DoctorSettings, diagnose
from phalanx.ops.findings import FindingCode, Severity
from phalanx.ops.observation import Observation
from phalanx.testing import make_flavor, make_node, make_queue

NOW = 1_700_000_000.0


def job(phase: JobPhase, **changes: object) -> JobView:
    view = JobView(
        name="j",
        manifest={},
        queue="q",
        priority=0,
        phase=phase,
        message="",
        reason_code="",
        created_at=NOW - 3600,
        admitted_at=NOW - 60,
        started_at=None,
        finished_at=None,
        flavor="default",
        attempt=1,
        restarts=0,
        metadata=MetadataView("j", "uid", {}, {}, (), 1, 1, NOW - 3600),
        pod_count=1,
        request=Resources(gpu_milli=1000),
    )
    return replace(view, **changes)  # type: ignore[arg-type]


def pod(reason: str = "", attempt: int = 1) -> PodView:
    return PodView(
        "p", "worker", 0, attempt, "n1", (DeviceShare(0, 1000),), PodPhase.PENDING, reason=reason
    )


def waiting_event(reason: str, message: str) -> EventView:
    facts = {"pod": "worker-0", "waiting_reason": reason, "waiting_message": message}
    return EventView(NOW - 30, "Warning", "PodWaiting", message, facts)


def startup_failed(reason: str) -> EventView:
    facts = {
        "cause": "Startup",
        "waited_s": 2.0,
        "not_running": ({"pod": "worker-0", "node": "n1", "waiting_reason": reason},),
    }
    return EventView(NOW - 10, "Warning", "Failed", "startup timeout", facts)


def observe(view: JobView) -> Observation:
    return Observation(
        now=NOW,
        jobs=(view,),
        queues=(),
        queue_specs={"q": make_queue("q").quota("default", gpu=8).obj()},
        flavors=(make_flavor("default").obj(),),
        nodes=(NodeView(make_node("n1").gpus(8).obj(), Resources()),),
    )


@pytest.mark.parametrize(
    ("reason", "message", "code", "fix_says"),
    [
        ("ErrImagePull", "pull access denied for x/y", FindingCode.IMAGE_PULL_FAILED, "image"),
        (
            "CreateContainerConfigError",
            'configmap "train-config" not found',
            FindingCode.CONTAINER_CONFIG_ERROR,
            'ConfigMap "train-config"',
        ),
        (
            "CreateContainerConfigError",
            'secret "db" not found',
            FindingCode.CONTAINER_CONFIG_ERROR,
            'Secret "db"',
        ),
    ],
    ids=["image", "configmap", "secret"],
)
def test_a_waiting_pod_names_its_reason_and_message(
    reason: str, message: str, code: FindingCode, fix_says: str
) -> None:
    view = job(JobPhase.ADMITTED, pods=(pod(reason),), events=(waiting_event(reason, message),))
    (found,) = diagnose(observe(view))
    assert (found.code, found.object, found.severity) == (code, "job/j", Severity.CRITICAL)
    assert found.facts["message"] == message and fix_says in found.fix
    assert found.events and "PodWaiting" in found.events[0]


def test_after_the_startup_timeout_the_failure_event_names_the_reason() -> None:
    failed = job(
        JobPhase.FAILED,
        events=(
            waiting_event("ImagePullBackOff", "Back-off pulling image"),
            startup_failed("ImagePullBackOff"),
        ),
    )
    (found,) = diagnose(observe(failed))
    assert found.code is FindingCode.IMAGE_PULL_FAILED
    assert found.facts["startup_timeouts"] == 1


def test_pods_that_never_start_without_a_reason() -> None:
    failed = job(JobPhase.FAILED, events=(startup_failed(""),))
    (found,) = diagnose(observe(failed))
    assert (found.code, found.facts["pods"]) == (FindingCode.PODS_NEVER_STARTED, ["worker-0"])
    # still waiting: named after the grace period, not before
    early = job(JobPhase.ADMITTED, pods=(pod(),), admitted_at=NOW - 60)
    assert diagnose(observe(early)) == []
    late = replace(early, admitted_at=NOW - 601)
    (waiting,) = diagnose(observe(late))
    assert (waiting.code, waiting.severity) == (FindingCode.PODS_NEVER_STARTED, Severity.WARNING)
    assert diagnose(observe(late), DoctorSettings(startup_grace_s=900)) == []


def test_an_earlier_attempts_pod_reason_is_not_this_attempts() -> None:
    view = job(JobPhase.RUNNING, attempt=2, pods=(pod("ErrImagePull", attempt=1),))
    assert diagnose(observe(view)) == []
