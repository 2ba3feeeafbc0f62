"""Views → JSON: quantities in Kubernetes notation, devices, times, metadata."""

from __future__ import annotations

import pytest

from phalanx.api import conversion
from phalanx.controllers.queries import job_size
from phalanx.controllers.views import (
    ApplyResult,
    EventView,
    FlavorUsage,
    FlavorView,
    JobView,
    MetadataView,
    NodeView,
    PodView,
    QueueView,
)
from phalanx.model.objects import DeviceShare, JobPhase, PodPhase
from phalanx.model.reasons import Reason, ReasonCode
from phalanx.model.resources import Resources, cpu_milli, memory_bytes
from phalanx.testing import make_node

T0 = 1_700_000_000.0


def make_metadata(name: str, **overrides: object) -> MetadataView:
    fields: dict[str, object] = {
        "name": name,
        "uid": "0f" * 16,
        "labels": {},
        "annotations": {},
        "owner_references": (),
        "resource_version": 7,
        "generation": 1,
        "created_at": T0,
    }
    fields.update(overrides)
    return MetadataView(**fields)  # type: ignore[arg-type]


JOB_MANIFEST: dict[str, object] = {
    "apiVersion": "phalanx.dev/v1alpha1",
    "kind": "Job",
    "metadata": {"name": "train"},
    "spec": {
        "queue": "team-a",
        "podSets": [
            {
                "name": "worker",
                "replicas": 2,
                "resources": {"cpu": "500m", "memory": "8Gi", "nvidia.com/gpu": "0.5"},
                "command": ["python", "train.py"],
            }
        ],
    },
}


def make_view(**overrides: object) -> JobView:
    pods = (
        PodView(
            "p0",
            "worker",
            0,
            1,
            "node-0",
            (DeviceShare(3, 500),),
            PodPhase.RUNNING,
            started_at=T0 + 2,
        ),
        PodView("p1", "worker", 1, 1, "node-0", (DeviceShare(3, 500),), PodPhase.PENDING),
    )
    fields: dict[str, object] = {
        "name": "train",
        "manifest": JOB_MANIFEST,
        "queue": "team-a",
        "priority": 5,
        "phase": JobPhase.RUNNING,
        "message": "1 of 2 pods running",
        "reason_code": "",
        "created_at": T0,
        "admitted_at": T0 + 1,
        "started_at": None,
        "finished_at": None,
        "flavor": "h100",
        "attempt": 1,
        "restarts": 0,
        "pods": pods,
        "events": (EventView(T0, "Normal", "Created", "submitted to queue team-a"),),
        "metadata": make_metadata("train"),
        "pod_count": 2,
        "request": Resources(cpu_milli(1), memory_bytes("16Gi"), 1000),
    }
    fields.update(overrides)
    return JobView(**fields)  # type: ignore[arg-type]


def test_job_out_renders_quantities_devices_and_times() -> None:
    out = conversion.job_out(make_view())
    assert out["request"] == {"cpu": "1", "memory": "16Gi", "nvidia.com/gpu": "1"}
    assert out["pod_count"] == 2
    assert out["running_pods"] == 1
    assert out["is_finished"] is False
    assert out["created_at"] == T0
    assert out["created_at_iso"] == "2023-11-14T22:13:20Z"
    assert out["admitted_at_iso"] == "2023-11-14T22:13:21Z"
    assert out["started_at"] is None and out["started_at_iso"] is None
    pod = out["pods"][0]
    assert pod["name"] == "worker-0"
    assert pod["devices"] == [{"index": 3, "milli": 500}]
    assert pod["phase"] == "Running"
    assert pod["started_at_iso"] == "2023-11-14T22:13:22Z"
    assert out["events"] == [
        {
            "at": T0,
            "at_iso": "2023-11-14T22:13:20Z",
            "type": "Normal",
            "reason": "Created",
            "message": "submitted to queue team-a",
            "facts": {},
        }
    ]
    assert out["reason"] is None  # no reason yet: the job never went through a cycle


def test_job_out_gives_the_reason_structured() -> None:
    facts = {"queue": "team-a", "flavor": "h100", "resource": "nvidia.com/gpu", "used": 16000}
    view = make_view(
        phase=JobPhase.PENDING,
        reason_code="QuotaExceeded",
        message="queue team-a uses 16/16 nvidia.com/gpu of flavor h100, ...",
        reason_facts=facts,
    )
    out = conversion.job_out(view)
    assert out["reason"] == {
        "code": "QuotaExceeded",
        "message": "queue team-a uses 16/16 nvidia.com/gpu of flavor h100, ...",
        "facts": facts,
    }
    assert (out["reason_code"], out["message"]) == ("QuotaExceeded", out["reason"]["message"])


def test_apply_out_carries_warnings_as_reasons() -> None:
    warning = Reason(
        ReasonCode.NEVER_FITS,
        {"flavor": "default", "check": "Node", "needed_gpu_milli": 1_000_000, "max_node_gpus": 2},
    )
    out = conversion.apply_out(ApplyResult("Job", "huge", "created", (warning,)))
    assert out["warnings"] == [
        {"code": "NeverFits", "message": warning.message, "facts": dict(warning.facts)}
    ]


def test_running_pods_count_only_the_current_attempt() -> None:
    old = PodView("old", "worker", 0, 1, "node-1", (), PodPhase.RUNNING)
    new = PodView("new", "worker", 0, 2, "node-0", (), PodPhase.RUNNING)
    out = conversion.job_out(make_view(attempt=2, pods=(old, new)))
    assert out["running_pods"] == 1


@pytest.mark.parametrize("phase", [JobPhase.SUCCEEDED, JobPhase.FAILED, JobPhase.CANCELLED])
def test_terminal_phases_are_finished(phase: JobPhase) -> None:
    assert conversion.job_out(make_view(phase=phase))["is_finished"] is True


def test_a_jobs_size_comes_from_its_spec_even_unreadable() -> None:
    pod_count, request = job_size(JOB_MANIFEST)
    assert (pod_count, request.to_quantities()) == (
        2,
        {"cpu": "1", "memory": "16Gi", "nvidia.com/gpu": "1"},
    )
    assert job_size({"kind": "Job"}) == (0, Resources())


def test_queue_out_sums_flavors() -> None:
    view = QueueView(
        name="team-a",
        manifest={"kind": "Queue"},
        cohort="research",
        usage=(
            FlavorUsage(
                "h100",
                Resources(cpu_milli(4), memory_bytes("8Gi"), 2000),
                Resources(cpu_milli(32), memory_bytes("256Gi"), 8000),
            ),
            FlavorUsage(
                "a100", Resources(0, 0, 500), Resources(cpu_milli(16), memory_bytes("64Gi"), 4000)
            ),
        ),
        pending=3,
        admitted=1,
        metadata=make_metadata("team-a"),
    )
    out = conversion.queue_out(view)
    assert out["used"] == {"cpu": "4", "memory": "8Gi", "nvidia.com/gpu": "2.5"}
    assert out["nominal"] == {"cpu": "48", "memory": "320Gi", "nvidia.com/gpu": "12"}
    assert [u["flavor"] for u in out["usage"]] == ["h100", "a100"]
    assert out["usage"][1]["used"] == {"nvidia.com/gpu": "0.5"}


def test_node_out_lists_devices_with_their_use() -> None:
    node = make_node("n1").gpus(2, "H100").cpu(8).memory("64Gi").obj()
    view = NodeView(
        node,
        Resources(cpu_milli(1), memory_bytes("1Gi"), 1500),
        {0: 1000, 1: 500},
        ("train/worker-0",),
    )
    out = conversion.node_out(view)
    assert out["allocatable"] == {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": "2"}
    assert out["used"] == {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1.5"}
    assert [(g["index"], g["used_milli"], g["model"]) for g in out["gpus"]] == [
        (0, 1000, "H100"),
        (1, 500, "H100"),
    ]
    assert out["gpu_model"] == "H100"
    assert out["pods"] == ["train/worker-0"]


def test_flavor_out_reads_the_manifest() -> None:
    manifest = {
        "metadata": {"name": "h100"},
        "spec": {"nodeLabels": {"nvidia.com/gpu.product": "H100"}},
    }
    out = conversion.flavor_out(FlavorView(manifest, make_metadata("h100")))
    assert (out["name"], out["node_labels"]) == ("h100", {"nvidia.com/gpu.product": "H100"})


def test_metadata_is_kubernetes_style() -> None:
    owner = {"kind": "Queue", "name": "team-a"}
    view = make_view(
        metadata=make_metadata(
            "train",
            labels={"team": "a"},
            annotations={"note": "first run"},
            owner_references=(owner,),
            resource_version=42,
            generation=3,
        )
    )
    assert conversion.job_out(view)["metadata"] == {
        "name": "train",
        "uid": "0f" * 16,
        "labels": {"team": "a"},
        "annotations": {"note": "first run"},
        "ownerReferences": [{"kind": "Queue", "name": "team-a", "uid": ""}],
        "resourceVersion": 42,
        "generation": 3,
        "creationTimestamp": "2023-11-14T22:13:20Z",
    }
