"""Service and pipeline-run analyzers, GPU time lost per cause, and idle GPUs from measured
utilisation, as pure functions of hand-built observations."""

from __future__ import annotations

from dataclasses import replace

import pytest

from phalanx.controllers.views import (
    EventView,
    JobView,
    MetadataView,
    NodeView,
    PodView,
    ProgressView,
)
from phalanx.model.objects import DeviceShare, JobPhase, PodPhase
from phalanx.model.resources import Resources
from phalanx.ops.doctor import DoctorSettings, diagnose, diagnose_run, diagnose_service
from phalanx.ops.findings import FindingCode
from phalanx.ops.gpu_usage import DeviceUsage
from phalanx.ops.losses import gpu_hours, lost_gpu_seconds
from phalanx.ops.observation import Observation
from phalanx.ops.workloads import ReplicaFacts, RunFacts, ServiceFacts, StepFacts
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
        attempt=1,
        restarts=0,
        metadata=MetadataView(name, "uid", {}, {}, (), 1, 1, NOW - 3600),
        pod_count=1,
        request=Resources(gpu_milli=gpus * 1000),
    )
    return replace(view, **changes)  # type: ignore[arg-type]


def observe(*jobs: JobView, **changes: object) -> Observation:
    obs = Observation(
        now=NOW,
        jobs=jobs,
        queues=(),
        queue_specs={"q": make_queue("q").quota("default", gpu=8).obj()},
        flavors=(make_flavor("default").obj(),),
        nodes=(NodeView(make_node("n1").gpus(8).obj(), Resources()),),
    )
    return replace(obs, **changes)  # type: ignore[arg-type]


def event(at: float, reason: str, **facts: object) -> EventView:
    return EventView(at, "Warning", reason, reason, facts)


def service(*replicas: ReplicaFacts, **changes: object) -> ServiceFacts:
    s = ServiceFacts("web", "q", 1, 1, replicas, is_readiness_known=True)
    return replace(s, **changes)  # type: ignore[arg-type]


def pairs(obs: Observation) -> set[tuple[str, str]]:
    return {(f.code.value, f.object) for f in diagnose(obs)}


# ---- services ----


def test_a_service_with_a_ready_replica_is_fine() -> None:
    obs = observe(services=(service(ReplicaFacts("web-1", "Ready", "Running", "", NOW - 10)),))
    assert pairs(obs) == set()


def test_pending_replicas_name_the_service_and_leave_the_cause_to_the_replica() -> None:
    replica = ReplicaFacts("web-1", "Pending", "Pending", "QuotaExceeded", NOW - 10)
    (found,) = diagnose(observe(services=(service(replica),)))
    assert (found.code, found.object) == (FindingCode.SERVICE_UNAVAILABLE, "service/web")
    assert found.facts["pending_reasons"] == {"web-1": "QuotaExceeded"}
    assert "QuotaExceeded" in found.summary


def test_failed_replicas_are_a_crash_loop_with_their_exit_codes() -> None:
    failed = job(
        "web-1",
        JobPhase.FAILED,
        events=(event(NOW - 5, "Failed", cause="Application", exit_code=3),),
    )
    replica = ReplicaFacts("web-1", "Failed", "Failed", "Failed", NOW - 5)
    obs = observe(failed, services=(service(replica),))
    found = next(f for f in diagnose(obs) if f.object == "service/web")
    assert found.code is FindingCode.SERVICE_CRASH_LOOP
    assert found.facts["exit_codes"] == ["3"]


@pytest.mark.parametrize(
    ("replaced_ago_s", "code"),
    [
        ((30.0, 20.0, 10.0), FindingCode.SERVICE_CRASH_LOOP),
        ((30.0, 20.0), FindingCode.SERVICE_CRASH_LOOP),  # loop_failures is 2
        ((30.0,), FindingCode.SERVICE_NOT_READY),  # one replacement is not a loop
        ((3000.0, 2000.0), FindingCode.SERVICE_NOT_READY),  # outside the window
    ],
    ids=["replaced-three-times", "replaced-twice", "replaced-once", "replaced-long-ago"],
)
def test_replicas_replaced_again_and_again_are_a_crash_loop(
    replaced_ago_s: tuple[float, ...], code: FindingCode
) -> None:
    starting = ReplicaFacts("web-4", "Starting", "Running", "", NOW - 300)
    s = service(starting, replaced=tuple(NOW - t for t in replaced_ago_s))
    (found,) = diagnose(observe(services=(s,)))
    assert found.code is code


def test_a_replica_that_never_passes_readiness_is_named_after_the_grace() -> None:
    late = ReplicaFacts("web-1", "Starting", "Running", "", NOW - 121)
    early = ReplicaFacts("web-1", "Starting", "Running", "", NOW - 60)
    (found,) = diagnose(observe(services=(service(late),)))
    assert found.code is FindingCode.SERVICE_NOT_READY
    assert found.facts["not_ready_s"] == 121.0
    # within the grace period it is just starting: unavailable, not a readiness failure
    (still,) = diagnose(observe(services=(service(early),)))
    assert still.code is FindingCode.SERVICE_UNAVAILABLE
    # without the controller's view readiness is unknown: never a readiness failure
    unknown = service(late, is_readiness_known=False)
    assert diagnose(observe(services=(unknown,)))[0].code is FindingCode.SERVICE_UNAVAILABLE


def test_a_service_scaled_to_zero_on_purpose_is_fine_until_it_keeps_waking() -> None:
    idle = service(min_replicas=0, desired=0)
    assert pairs(observe(services=(idle,))) == set()
    waking = replace(idle, cold_starts=(NOW - 3000, NOW - 2000, NOW - 100))
    (found,) = diagnose(observe(services=(waking,)))
    assert (found.code, found.facts["cold_starts"]) == (FindingCode.SERVICE_COLD_STARTS, 3)
    old = replace(idle, cold_starts=(NOW - 9000, NOW - 8000, NOW - 100))
    assert pairs(observe(services=(old,))) == set()
    pinned = replace(waking, min_replicas=1, replicas=(ReplicaFacts("w", "Ready", "", "", 0),))
    assert pairs(observe(services=(pinned,))) == set()


READY_2 = (
    ReplicaFacts("web-1", "Ready", "Running", "", NOW - 600),
    ReplicaFacts("web-2", "Ready", "Running", "", NOW - 600),
)


def answered(*items: tuple[str, str, int]) -> ServiceFacts:
    return service(*READY_2, desired=2, recent_responses=items, responses_window_s=300.0)


@pytest.mark.parametrize(
    ("recent", "severity"),
    [
        ((("web-1", "2xx", 95), ("web-1", "5xx", 5)), None),  # 5 %: at the threshold
        ((("web-1", "2xx", 96), ("web-1", "5xx", 4)), ""),  # 4 %: under the threshold
        ((("web-1", "2xx", 9), ("web-1", "5xx", 10)), ""),  # 19 answers: too few to judge
        ((("web-1", "2xx", 10), ("web-1", "5xx", 10)), "critical"),  # 50 %
        ((("web-1", "4xx", 90), ("web-1", "2xx", 10)), ""),  # 4xx is the clients' doing
    ],
    ids=["at-threshold", "under-threshold", "too-few", "half", "client-errors"],
)
def test_a_5xx_share_over_the_threshold_is_service_errors(
    recent: tuple[tuple[str, str, int], ...], severity: str | None
) -> None:
    found = [f for f in diagnose(observe(services=(answered(*recent),)))]
    if severity == "":
        assert found == []
        return
    (f,) = found
    assert (f.code, f.object) == (FindingCode.SERVICE_ERRORS, "service/web")
    assert f.severity.value == (severity or "warning")
    errors = sum(n for _, c, n in recent if c == "5xx")
    total = sum(n for _, _, n in recent)
    assert (f.facts["errors_5xx"], f.facts["answers"]) == (errors, total)
    assert f.facts["window_s"] == 300.0


def test_service_errors_from_one_replica_of_two_name_it_in_the_fix() -> None:
    s = answered(("web-1", "5xx", 30), ("web-2", "2xx", 30))
    (f,) = diagnose(observe(services=(s,)))
    assert f.facts["by_replica"] == {"web-1": "30/30"}
    assert "phalanx delete job web-1" in f.fix
    assert "all from replica web-1" in f.summary
    # errors from both replicas: the program or its template, not one replica
    both = answered(("web-1", "5xx", 30), ("web-2", "5xx", 10), ("web-2", "2xx", 20))
    (g,) = diagnose(observe(services=(both,)))
    assert g.facts["by_replica"] == {"web-1": "30/30", "web-2": "10/30"}
    assert "delete" not in g.fix and "spec.template" in g.fix


def test_service_errors_read_the_window_not_the_totals() -> None:
    s = replace(answered(("web-1", "2xx", 50)), responses=(("web-1", "5xx", 900),))
    assert pairs(observe(services=(s,))) == set()


def test_service_error_thresholds_are_settings() -> None:
    s = answered(("web-1", "2xx", 96), ("web-1", "5xx", 4))
    strict = DoctorSettings(service_error_share=0.02)
    assert {f.code for f in diagnose(observe(services=(s,)), strict)} == {
        FindingCode.SERVICE_ERRORS
    }
    few = answered(("web-1", "5xx", 5))
    assert pairs(observe(services=(few,))) == set()
    lenient = DoctorSettings(service_error_min_answers=5)
    assert {f.code for f in diagnose(observe(services=(few,)), lenient)} == {
        FindingCode.SERVICE_ERRORS
    }


def test_diagnose_service_keeps_its_replicas_causes() -> None:
    replica = ReplicaFacts("web-1", "Pending", "Pending", "QuotaExceeded", NOW - 10)
    other = job("other", JobPhase.FAILED, events=(event(NOW, "Failed", cause="OOM"),))
    obs = observe(other, services=(service(replica),))
    assert {f.object for f in diagnose_service(obs, "web")} == {"service/web"}


# ---- pipeline runs ----


def run(*steps: StepFacts) -> RunFacts:
    return RunFacts("etl", "Failed", "", steps)


def test_a_failed_step_quotes_its_jobs_root_cause() -> None:
    step_job = job(
        "etl-s0",
        JobPhase.FAILED,
        events=(event(NOW - 5, "Failed", cause="OOM", memory_limit_bytes=2**30),),
    )
    obs = observe(
        step_job,
        runs=(
            run(
                StepFacts("extract", "Failed", "etl-s0", "job etl-s0 failed", NOW - 5),
                StepFacts("train", "UpstreamFailed", "", "", None),
            ),
        ),
    )
    assert pairs(obs) == {("OOMLoop", "job/etl-s0"), ("PipelineStepFailed", "pipelinerun/etl")}
    found = next(f for f in diagnose(obs) if f.code is FindingCode.PIPELINE_STEP_FAILED)
    assert found.facts["causes"] == ["OOMLoop job/etl-s0"]
    assert found.facts["upstream_failed"] == ["train"]
    assert "OOM-killed" in found.summary and "memory" in found.fix
    assert {f.object for f in diagnose_run(obs, "etl")} == {"pipelinerun/etl", "job/etl-s0"}


def test_a_step_that_failed_without_a_job_is_its_own_cause() -> None:
    message = "step 'extract' has no queue: give the run one"
    obs = observe(runs=(run(StepFacts("extract", "Failed", "", message, NOW)),))
    (found,) = diagnose(obs)
    assert found.code is FindingCode.PIPELINE_STEP_FAILED
    assert found.facts["causes"] == [] and message in found.fix


def test_a_run_without_failed_steps_is_fine() -> None:
    ok = RunFacts("etl", "Running", "", (StepFacts("extract", "Succeeded", "etl-s0", "", NOW),))
    assert pairs(observe(runs=(ok,))) == set()


# ---- GPU time lost, per cause ----


def test_lost_gpu_time_per_cause_counts_from_the_attempt_or_its_checkpoint() -> None:
    events = (
        event(NOW - 1000, "Admitted"),
        event(NOW - 900, "Restarting", cause="OOM"),  # 100 s × 4 GPUs
        event(NOW - 800, "Admitted"),
        event(NOW - 500, "Preempted", lost_gpu_s=120.0),
        event(NOW - 400, "Admitted"),
        event(NOW - 100, "Failed", cause="Node"),  # since the checkpoint at NOW - 150
    )
    view = job(
        "j",
        JobPhase.FAILED,
        gpus=4,
        events=events,
        progress=ProgressView(checkpoint_at=NOW - 150),
    )
    assert lost_gpu_seconds(view) == {"OOM": 400.0, "Preempted": 120.0, "Node": 200.0}
    assert gpu_hours(lost_gpu_seconds(view)) == {"Node": 0.056, "OOM": 0.111, "Preempted": 0.033}


def test_runtime_findings_carry_the_gpu_hours_lost() -> None:
    events = (
        event(NOW - 7200, "Admitted"),
        event(NOW - 3600, "Restarting", cause="Application", exit_code=1),
        event(NOW - 3000, "Admitted"),
        event(NOW, "Failed", cause="Application", exit_code=1),
    )
    obs = observe(job("j", JobPhase.FAILED, gpus=2, events=events))
    (found,) = diagnose(obs)
    assert found.code is FindingCode.CRASH_LOOP
    assert found.facts["lost_gpu_hours"] == round(2 * (3600 + 3000) / 3600, 3)


# ---- idle GPUs from measured utilisation ----


def running(name: str, devices: tuple[int, ...]) -> JobView:
    pod = PodView(
        "p",
        "worker",
        0,
        1,
        "n1",
        tuple(DeviceShare(i, 1000) for i in devices),
        PodPhase.RUNNING,
        started_at=NOW - 60,
    )
    return job(
        name,
        JobPhase.RUNNING,
        gpus=len(devices),
        pods=(pod,),
        started_at=NOW - 60,
        progress=ProgressView(step=5, reported_at=NOW - 10),
    )


@pytest.mark.parametrize(
    ("utilisation", "is_idle"),
    [((0.0, 1.0), True), ((0.0, 40.0), False), ((4.9, 4.9), True), ((5.0, 0.0), False)],
    ids=["both-idle", "one-busy", "just-under", "at-threshold"],
)
def test_measured_utilisation_decides_idle_gpus(
    utilisation: tuple[float, float], is_idle: bool
) -> None:
    usage = {
        f"n1/{i}": DeviceUsage(u, "dcgm-exporter") for i, u in zip((2, 3), utilisation, strict=True)
    }
    obs = observe(running("train", (2, 3)), gpu_usage=usage)
    found = [f for f in diagnose(obs) if f.code is FindingCode.IDLE_GPUS]
    assert bool(found) is is_idle
    if found:
        assert found[0].facts["utilisation_pct"] == {"n1/2": utilisation[0], "n1/3": utilisation[1]}
        assert found[0].facts["source"] == ["dcgm-exporter"]


def test_measured_busy_gpus_overrule_missing_progress_reports() -> None:
    silent = replace(running("train", (0,)), progress=None, started_at=NOW - 7200)
    assert [f.code for f in diagnose(observe(silent))] == [FindingCode.IDLE_GPUS]
    busy = {"n1/0": DeviceUsage(97.0, "nvml")}
    assert diagnose(observe(silent, gpu_usage=busy)) == []


def test_devices_are_matched_by_uuid_first() -> None:
    node = make_node("n1").gpus(8).obj()
    node = replace(node, gpus=tuple(replace(d, uuid=f"GPU-{d.index}") for d in node.gpus))
    obs = observe(
        running("train", (1,)),
        nodes=(NodeView(node, Resources()),),
        gpu_usage={"GPU-1": DeviceUsage(0.0, "nvml"), "n1/1": DeviceUsage(90.0, "other")},
    )
    (found,) = [f for f in diagnose(obs) if f.code is FindingCode.IDLE_GPUS]
    assert found.facts["source"] == ["nvml"]


def test_settings_thresholds_apply() -> None:
    usage = {"n1/0": DeviceUsage(8.0, "nvml")}
    obs = observe(running("train", (0,)), gpu_usage=usage)
    assert diagnose(obs) == []
    assert diagnose(obs, DoctorSettings(idle_util_pct=10.0))[0].code is FindingCode.IDLE_GPUS
