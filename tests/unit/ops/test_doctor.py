"""The doctor's analyzers as pure functions of hand-built observations (the scenario suite,
tests/scenarios, runs them on a real control plane)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from phalanx.controllers.views import (
    EventView,
    JobView,
    MetadataView,
    NodeFailureView,
    NodeView,
    PodView,
    ProgressView,
)
from phalanx.model.objects import JobPhase, PodPhase
from phalanx.model.resources import Resources
from phalanx.ops.doctor import DoctorSettings, diagnose, diagnose_job, diagnose_node
from phalanx.ops.findings import Finding, FindingCode, Severity, ordered
from phalanx.ops.observation import Observation
from phalanx.testing import make_flavor, make_node, make_queue

NOW = 1_700_000_000.0


def job(name: str, phase: JobPhase, *, gpus: int = 1, **changes: object) -> JobView:
    view = JobView(
        name=name,
        manifest={},
        queue="q",
        priority=0,
        phase=phase,
        message="",
        reason_code="",
        created_at=NOW - 3600,
        admitted_at=None,
        started_at=None,
        finished_at=None,
        flavor="",
        attempt=0,
        restarts=0,
        metadata=MetadataView(name, "uid", {}, {}, (), 1, 1, NOW - 3600),
        pod_count=1,
        request=Resources(gpu_milli=gpus * 1000),
    )
    return replace(view, **changes)  # type: ignore[arg-type]


def observe(*jobs: JobView, nodes: tuple[NodeView, ...] = ()) -> Observation:
    return Observation(
        now=NOW,
        jobs=jobs,
        queues=(),
        queue_specs={"q": make_queue("q").quota("default", gpu=8).obj()},
        flavors=(make_flavor("default").obj(),),
        nodes=nodes or (NodeView(make_node("n1").gpus(8).obj(), Resources()),),
    )


def running(name: str, **changes: object) -> JobView:
    return job(
        name, JobPhase.RUNNING, attempt=1, admitted_at=NOW - 3000, started_at=NOW - 3000, **changes
    )


def codes(findings: list[Finding]) -> list[tuple[str, str]]:
    return [(f.code.value, f.object) for f in findings]


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("ErrImagePull", FindingCode.IMAGE_PULL_FAILED),
        ("ImagePullBackOff", FindingCode.IMAGE_PULL_FAILED),
        ("CreateContainerConfigError", FindingCode.CONTAINER_CONFIG_ERROR),
    ],
)
def test_kubernetes_pods_that_never_start(reason: str, code: FindingCode) -> None:
    pod = PodView("p", "worker", 0, 1, "n1", (), PodPhase.PENDING, reason=reason)
    view = job(
        "img",
        JobPhase.ADMITTED,
        attempt=1,
        pods=(pod,),
        progress=ProgressView(step=1, reported_at=NOW),
    )
    [finding] = diagnose(observe(view))
    assert (finding.code, finding.object, finding.severity) == (code, "job/img", Severity.CRITICAL)
    assert finding.facts["pod_reason"] == reason


def test_idle_gpus_need_gpus_and_silence() -> None:
    quiet = running("quiet", progress=ProgressView(step=5, reported_at=NOW - 1000))
    busy = running("busy", progress=ProgressView(step=5, reported_at=NOW - 10))
    cpu_only = running("cpu", gpus=0)
    found = diagnose(observe(quiet, busy, cpu_only))
    assert codes(found) == [("IdleGPUs", "job/quiet")]
    assert found[0].facts["idle_gpu_s"] == 1000.0
    # A longer threshold: nothing is idle yet.
    assert diagnose(observe(quiet), DoctorSettings(idle_after_s=2000)) == []


def test_a_stale_checkpoint_needs_progress_after_it() -> None:
    progressing = ProgressView(
        step=900, reported_at=NOW - 5, checkpoint_step=10, checkpoint_at=NOW - 7200
    )
    stuck = ProgressView(
        step=10, reported_at=NOW - 7200, checkpoint_step=10, checkpoint_at=NOW - 7200
    )
    assert FindingCode.STALE_CHECKPOINT in {
        f.code for f in diagnose(observe(running("a", progress=progressing)))
    }
    # Progress stopped when the checkpoint was written: idle, not a stale checkpoint.
    assert [f.code for f in diagnose(observe(running("b", progress=stuck)))] == [
        FindingCode.IDLE_GPUS
    ]


def _failure(at: float, cause: str, **facts: object) -> EventView:
    return EventView(at, "Warning", "Restarting", f"{cause} failure", {"cause": cause, **facts})


def test_one_finding_per_cause_with_the_events_quoted() -> None:
    events = (
        _failure(NOW - 300, "OOM", memory_limit_bytes=1 << 30),
        _failure(NOW - 200, "OOM", memory_limit_bytes=1 << 30),
        _failure(NOW - 100, "Application", exit_code=1),
    )
    view = job("j", JobPhase.PENDING, attempt=3, restarts=3, events=events)
    found = diagnose(observe(view))
    assert codes(found) == [("OOMLoop", "job/j")]  # one app failure is no loop yet
    assert len(found[0].events) == 2
    assert found[0].events[0].startswith("2023-11-14T")
    assert found[0].events[0].endswith("Restarting: OOM failure")


def test_node_lost_replaces_not_ready_and_filters_by_node() -> None:
    lost = _failure(NOW - 10, "Node", node="n1", pod_reason="NodeFault", is_lost=True)
    view = job("j", JobPhase.PENDING, attempt=1, events=(lost,))
    down = NodeView(replace(make_node("n1").gpus(8).obj(), is_ready=False), Resources())
    failing = NodeView(
        make_node("n2").gpus(8).obj(),
        Resources(),
        failures=tuple(
            NodeFailureView(NOW - i, f"j{i}", 1, "worker-0", "NodeFault") for i in range(3)
        ),
    )
    obs = observe(view, nodes=(down, failing))
    assert sorted(codes(diagnose(obs))) == [("NodeFailing", "node/n2"), ("NodeLost", "node/n1")]
    assert codes(diagnose_node(obs, "n2")) == [("NodeFailing", "node/n2")]
    assert codes(diagnose_job(obs, "j")) == [("NodeLost", "node/n1")]


def test_a_ready_node_that_keeps_losing_a_jobs_pods_is_named_once() -> None:
    # The node stays ready and is not quarantined (one job's failures): the job's losses
    # there name it; its tally of the same failures would name it again.
    losses = tuple(
        _failure(NOW - i, "Node", node="n1", pod_reason="NodeFault", is_lost=True)
        for i in (30, 20, 10)
    )
    view = job("j", JobPhase.PENDING, attempt=4, events=losses)
    failing = NodeView(
        make_node("n1").gpus(8).obj(),
        Resources(),
        failures=tuple(
            NodeFailureView(NOW - i, "j", a, "worker-0", "NodeFault")
            for a, i in ((1, 30), (2, 20), (3, 10))
        ),
    )
    obs = observe(view, nodes=(failing,))
    assert codes(diagnose(obs)) == [("NodeLost", "node/n1")]
    # Without the job's losses in view the tally is what names the node.
    assert codes(diagnose(observe(job("k", JobPhase.PENDING), nodes=(failing,)))) == [
        ("NodeFailing", "node/n1")
    ]


def test_findings_are_ordered_by_severity_then_confidence_and_deduplicated() -> None:
    def f(code: FindingCode, severity: Severity, confidence: float, obj: str = "job/a") -> Finding:
        return Finding(code, severity, obj, "", "", confidence)

    info = f(FindingCode.CAPACITY_BUSY, Severity.INFO, 0.6, "flavor/x")
    weak = f(FindingCode.IDLE_GPUS, Severity.WARNING, 0.5)
    strong = f(FindingCode.HANG, Severity.WARNING, 0.9)
    critical = f(FindingCode.OOM_LOOP, Severity.CRITICAL, 0.1)
    assert ordered([info, weak, strong, critical, strong]) == [critical, strong, weak, info]


def test_a_finding_as_json() -> None:
    finding = Finding(
        FindingCode.QUOTA_EXHAUSTED,
        Severity.WARNING,
        "queue/q",
        "full",
        "wait",
        0.951,
        "job/w",
        {"used": 8000},
        ("t Admitted: x",),
    )
    assert finding.to_dict() == {
        "code": "QuotaExhausted",
        "severity": "warning",
        "object": "queue/q",
        "subject": "job/w",
        "summary": "full",
        "evidence": {"facts": {"used": 8000}, "events": ["t Admitted: x"]},
        "fix": "wait",
        "confidence": 0.95,
    }


def test_every_finding_code_is_catalogued_in_the_operations_doc() -> None:
    doc = (Path(__file__).resolve().parents[3] / "docs" / "operations.md").read_text()
    missing = [code.value for code in FindingCode if f"`{code.value}`" not in doc]
    assert missing == [], f"add these finding codes to docs/operations.md: {missing}"
