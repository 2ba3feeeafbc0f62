"""/metrics through the real app, read back with prometheus_client's own parser."""

from __future__ import annotations

import httpx
from opsharness import FLAVOR, SimPlane, job, queue
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from phalanx.backends.sim import SimWorkload


def scrape(http: httpx.Client) -> dict[str, list[Sample]]:
    response = http.get("/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return {f.name: f.samples for f in text_string_to_metric_families(response.text)}


def value(samples: list[Sample], name: str = "", **labels: str) -> float:
    hits = [
        s.value
        for s in samples
        if (not name or s.name == name) and all(s.labels.get(k) == v for k, v in labels.items())
    ]
    assert len(hits) == 1, (name, labels, samples)
    return hits[0]


def test_metrics_report_queues_pending_reasons_nodes_and_admission(
    sim: SimPlane, http: httpx.Client
) -> None:
    sim.apply([FLAVOR, queue("q", gpus=8)])
    sim.run(3)
    sim.apply([job("holder", 6), job("half", 0.5)])
    sim.run(2)
    sim.apply([job("waiter", 4)])
    sim.run(2)
    m = scrape(http)
    q = {"queue": "q", "flavor": "default"}
    assert value(m["phalanx_queue_usage"], resource="nvidia.com/gpu", **q) == 6.5
    assert value(m["phalanx_queue_nominal"], resource="nvidia.com/gpu", **q) == 8
    assert value(m["phalanx_queue_borrowed"], resource="nvidia.com/gpu", **q) == 0
    assert value(m["phalanx_queue_usage"], resource="cpu", **q) == 2
    assert value(m["phalanx_pending_jobs"], queue="q", reason="QuotaExceeded") == 1
    assert value(m["phalanx_jobs"], phase="Running") == 2
    assert value(m["phalanx_jobs"], phase="Pending") == 1
    # 6 whole GPUs on one node, a half on a seventh device; per-device shares add up
    assert sum(s.value for s in m["phalanx_node_gpus_allocated"]) == 6.5
    shares = sorted(s.value for s in m["phalanx_gpu_allocated"] if s.value)
    assert shares == [0.5] + [1.0] * 6
    assert value(m["phalanx_node_gpus"], node="n1") == 8
    assert value(m["phalanx_node_ready"], node="n2") == 1
    assert value(m["phalanx_node_quarantined"], node="n2") == 0
    # two admissions, after 0 s (both submitted on a tick and admitted on it)
    hist = m["phalanx_admission_latency_seconds"]
    assert value(hist, "phalanx_admission_latency_seconds_count") == 2
    assert value(hist, "phalanx_admission_latency_seconds_bucket", le="1.0") == 2
    assert value(m["phalanx_scheduling_cycles"], "phalanx_scheduling_cycles_total") >= 1
    assert value(m["phalanx_reconciler_runs"], reconciler="jobs") >= 1


def test_metrics_count_outcomes_borrowing_and_preemption_losses(
    sim: SimPlane, http: httpx.Client
) -> None:
    sim.apply([FLAVOR, queue("a", gpus=8, cohort="c"), queue("b", gpus=0, cohort="c")])
    sim.apply([job("borrower", 8, q="b")])
    sim.run(100)
    m = scrape(http)
    b = {"queue": "b", "flavor": "default", "resource": "nvidia.com/gpu"}
    assert value(m["phalanx_queue_borrowed"], **b) == 8
    sim.apply([job("owner", 8, q="a")])  # reclaims its quota: the borrower is preempted
    m = scrape(http)
    # 8 GPUs x 100 s of work lost (no checkpoint): 800 GPU-s
    assert abs(value(m["phalanx_lost_gpu_hours"], cause="Preempted") - 800 / 3600) < 1e-6
    sim.plane.cancel_job("owner")
    sim.run(2)
    m = scrape(http)
    assert value(m["phalanx_finished_jobs"], phase="Cancelled", reason="Cancelled") == 1


def test_metrics_count_gpu_hours_lost_to_failures_per_cause(
    sim: SimPlane, http: httpx.Client
) -> None:
    sim.apply([FLAVOR, queue("q", gpus=8)])
    restart = {"policy": "OnFailure", "maxRestarts": 3, "backoff": "1s"}
    sim.backend.set_workload("flaky", SimWorkload(50, failing_attempts=(1, 2)))
    sim.plane.apply([job("flaky", 2, restartPolicy=restart)])
    sim.run(200)
    m = scrape(http)
    # two failed attempts of 50 s each on 2 GPUs (no checkpoint): 200 GPU-s; then it succeeded
    assert sim.plane.get_job("flaky").phase.value == "Succeeded"
    assert abs(value(m["phalanx_lost_gpu_hours"], cause="Application") - 200 / 3600) < 1e-3
    assert value(m["phalanx_lost_gpu_hours"], cause="Preempted") == 0


def test_metrics_report_services_and_pipeline_runs(sim: SimPlane, http: httpx.Client) -> None:
    m = scrape(http)
    assert "phalanx_service_replicas" not in m or not m["phalanx_service_replicas"]
    service = {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {
            "queue": "q",
            "minReplicas": 2,
            "maxReplicas": 3,
            "template": {"command": ["serve"], "resources": {"cpu": 1}},
        },
    }
    run = {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "PipelineRun",
        "metadata": {"name": "etl"},
        "spec": {"queue": "q", "steps": [{"name": "a", "task": "m:f"}]},
    }
    sim.apply([FLAVOR, queue("q"), service, run])
    m = scrape(http)
    # no controller runs here: the Service wants its minReplicas and has none
    assert value(m["phalanx_service_desired_replicas"], service="web") == 2
    assert value(m["phalanx_service_replicas"], service="web", phase="Ready") == 0
    assert value(m["phalanx_service_cold_starts"], service="web") == 0
    assert value(m["phalanx_pipeline_runs"], phase="Pending") == 1


def test_metrics_need_the_token(sim: SimPlane, http: httpx.Client) -> None:
    response = http.get("/metrics", headers={"Authorization": "Bearer wrong"})
    assert response.status_code == 401
