"""The control loop end to end with real processes: gang rendezvous, preemption, restarts,
deadlines, and recovery after the control plane vanishes mid-run."""

from __future__ import annotations

import pytest
from harness import PY, Harness, job_manifest, queue_manifests

pytestmark = pytest.mark.integration


def test_gang_rendezvous_and_allreduce(harness: Harness) -> None:
    harness.plane.apply(queue_manifests())
    gang = job_manifest("gang", "", gpus=2, replicas=2)
    gang["spec"]["podSets"][0]["command"] = [PY, "-m", "phalanx.examples.allreduce", "--size", "64"]  # type: ignore[index]
    harness.plane.apply([gang])
    harness.run_until(lambda: harness.phase("gang") == "Succeeded")
    job = harness.job("gang")
    assert sorted(p.node for p in job.pods) == ["node-0", "node-1"]
    assert all(len(p.devices) == 2 for p in job.pods)
    assert "rank 0: done" in harness.logs("gang", "worker-0")
    assert "rank 1: done" in harness.logs("gang", "worker-1")
    assert "gpus [0,1]" in harness.logs("gang", "worker-1")
    reasons = [e.reason for e in job.events]
    assert reasons[:1] == ["Created"] and "Admitted" in reasons and reasons[-1] == "Succeeded"
    assert job.admitted_at and job.started_at and job.finished_at


def test_gang_waits_whole_with_a_reason_then_runs(harness: Harness) -> None:
    harness.plane.apply(queue_manifests())
    harness.plane.apply(
        [job_manifest("hold", "import time; time.sleep(1.5)", gpus=2, priority=100)]
    )
    harness.run_until(lambda: harness.phase("hold") == "Running")
    harness.plane.apply([job_manifest("gang", "print('hi')", gpus=2, replicas=2)])
    harness.plane.tick()
    waiting = harness.job("gang")
    assert waiting.phase.value == "Pending"
    assert waiting.reason_code == "Unschedulable"
    facts = waiting.reason_facts
    assert (facts["gang_pods"], facts["gang_minimum"], facts["pods_placed"]) == (2, 2, 1)
    assert not waiting.pods
    harness.run_until(lambda: harness.phase("gang") == "Succeeded")
    assert harness.phase("hold") == "Succeeded"


def test_preemption_stops_the_low_priority_job_and_requeues_it(harness: Harness) -> None:
    harness.plane.apply(queue_manifests())
    harness.plane.apply([job_manifest("low", "import time; time.sleep(60)", gpus=2, replicas=2)])
    harness.run_until(lambda: harness.phase("low") == "Running")
    harness.plane.apply([job_manifest("high", "print('urgent')", gpus=2, priority=10)])
    harness.run_until(lambda: harness.phase("high") in ("Running", "Succeeded"))
    low = harness.job("low")
    assert low.phase.value in ("Preempted", "Pending", "Admitted", "Running")
    preempted = [e.facts for e in low.events if e.reason == "Preempted"]
    assert [
        (f["preemptor"], f["preemptor_priority"], f["victim_priority"], f["preemptor_queue"])
        for f in preempted
    ] == [("high", 10, 0, "q")]
    assert all(p.phase.value == "Stopped" for p in low.pods if p.attempt == 1)
    harness.run_until(lambda: harness.phase("high") == "Succeeded")
    harness.run_until(lambda: harness.phase("low") == "Running" and harness.job("low").attempt == 2)
    harness.plane.cancel_job("low")


def test_failing_exit_code_restarts_the_gang_with_backoff(harness: Harness) -> None:
    harness.plane.apply(queue_manifests())
    script = "import os,sys; sys.exit(3 if os.environ['PHALANX_ATTEMPT'] == '1' and os.environ['RANK'] == '1' else 0)"
    harness.plane.apply(
        [
            job_manifest(
                "flaky",
                script,
                gpus=1,
                replicas=2,
                restartPolicy={"policy": "OnFailure", "maxRestarts": 2, "backoff": "0.2s"},
            )
        ]
    )
    harness.run_until(lambda: harness.phase("flaky") == "Succeeded")
    job = harness.job("flaky")
    assert (job.attempt, job.restarts) == (2, 1)
    restarting = [e.facts for e in job.events if e.reason == "Restarting"]
    assert [(f["exit_code"], f["restarts"], f["max_restarts"]) for f in restarting] == [(3, 1, 2)]


def test_failure_without_restarts_fails_the_job(harness: Harness) -> None:
    harness.plane.apply(queue_manifests())
    harness.plane.apply([job_manifest("bad", "import sys; sys.exit(7)", gpus=0)])
    harness.run_until(lambda: harness.phase("bad") == "Failed")
    job = harness.job("bad")
    assert job.reason_code == "Failed"
    facts = job.reason_facts
    assert (facts["exit_code"], facts["restart_policy"], facts["outcome"]) == (
        7,
        "Never",
        "NoRestartsLeft",
    )


def test_max_runtime_is_enforced(harness: Harness) -> None:
    harness.plane.apply(queue_manifests())
    harness.plane.apply(
        [job_manifest("slow", "import time; time.sleep(60)", gpus=0, maxRuntime="1s")]
    )
    harness.run_until(lambda: harness.phase("slow") == "Failed", timeout_s=15)
    job = harness.job("slow")
    assert job.reason_code == "DeadlineExceeded"
    harness.run_until(lambda: all(p.phase.value == "Stopped" for p in harness.job("slow").pods))


def test_cancel_stops_every_pod(harness: Harness) -> None:
    harness.plane.apply(queue_manifests())
    harness.plane.apply([job_manifest("long", "import time; time.sleep(60)", gpus=1, replicas=2)])
    harness.run_until(lambda: harness.phase("long") == "Running")
    harness.plane.cancel_job("long")
    harness.run_until(lambda: all(p.phase.value == "Stopped" for p in harness.job("long").pods))
    assert harness.phase("long") == "Cancelled"


def test_restart_of_the_control_plane_adopts_running_pods(harness: Harness) -> None:
    harness.plane.apply(queue_manifests())
    script = "import time; print('started', flush=True); time.sleep(2)"
    harness.plane.apply(
        [job_manifest("a", script, gpus=2, replicas=2), job_manifest("b", script, gpus=1)]
    )
    harness.run_until(lambda: harness.phase("a") == "Running")
    before = {p.pod_id: (p.node, p.devices) for p in harness.job("a").pods}
    harness.restart()  # the old plane is abandoned mid-run, as if killed
    harness.run_until(
        lambda: harness.phase("a") == "Succeeded" and harness.phase("b") == "Succeeded"
    )
    after = harness.job("a")
    assert {p.pod_id: (p.node, p.devices) for p in after.pods} == before
    assert after.attempt == 1
    assert harness.logs("a", "worker-0").count("started") == 1
