"""Services inside the quota system: replicas within their queue's nominal quota are not
preempted by batch work of equal priority; a replica on quota borrowed from the cohort is
reclaimed (the usual graceful stop) when the lender needs it back, and waits with the reason."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from service_harness import ServingHarness, service_manifest


def queues() -> list[dict[str, Any]]:
    """Queues ``q`` (the Service's) and ``batch`` in one cohort, 1 CPU of nominal quota each:
    ``q`` may borrow ``batch``'s unused CPU."""
    flavor = {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "ResourceFlavor",
        "metadata": {"name": "default"},
        "spec": {},
    }
    return [flavor] + [
        {
            "apiVersion": "phalanx.dev/v1alpha1",
            "kind": "Queue",
            "metadata": {"name": name},
            "spec": {
                "cohort": "shared",
                "flavors": [
                    {
                        "name": "default",
                        "resources": {"cpu": {"nominal": 1}, "memory": "1Ti", "nvidia.com/gpu": 0},
                    }
                ],
            },
        }
        for name in ("q", "batch")
    ]


def batch_job(name: str, queue: str, cpu: str) -> dict[str, Any]:
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "queue": queue,
            "priority": 0,
            "podSets": [
                {
                    "name": "main",
                    "resources": {"cpu": cpu, "memory": "32Mi"},
                    "command": [sys.executable, "-c", "import time; time.sleep(60)"],
                }
            ],
        },
    }


@pytest.fixture
def serving(tmp_path: Path) -> Iterator[ServingHarness]:
    harness = ServingHarness(tmp_path)
    harness.plane.apply(queues())
    try:
        yield harness
    finally:
        harness.close()


def test_nominal_replicas_stay_and_a_borrowing_one_is_reclaimed(serving: ServingHarness) -> None:
    # three replicas of 500m: two within q's nominal 1 CPU, the third on batch's CPU
    serving.plane.apply(
        [service_manifest("svc", minReplicas=3, resources={"cpu": "500m", "memory": "32Mi"})]
    )
    serving.wait_ready("svc", 3)
    # batch work of equal priority in the Service's own queue, too big for the 500m left in
    # the cohort, preempts nothing: it waits
    serving.plane.apply([batch_job("same-queue", "q", "600m")])
    time.sleep(1.0)
    assert serving.plane.get_job("same-queue").phase.value == "Pending"
    assert serving.view("svc").ready == 3
    # the lender wants its CPU back: one replica is reclaimed, two stay (within nominal)
    serving.plane.apply([batch_job("lender", "batch", "1")])
    serving.wait(
        "the lender running",
        lambda: serving.plane.get_job("lender").phase.value == "Running",
    )
    serving.wait(
        "two replicas ready, one waiting for quota",
        lambda: (
            serving.view("svc").ready == 2
            and any(r.phase == "Pending" for r in serving.view("svc").replicas)
        ),
    )
    preempted = [
        j
        for j in serving.store.list_jobs()
        if j.labels.get("phalanx.dev/service") == "svc"
        and any(e.reason == "Preempted" for e in serving.plane.get_job(j.name).events)
    ]
    assert len(preempted) == 1
    waiting = next(r for r in serving.view("svc").replicas if r.phase == "Pending")
    assert waiting.reason is not None and waiting.reason["code"] in ("QuotaExceeded", "Preempting")
    assert serving.plane.get_job("same-queue").phase.value == "Pending"
