"""Cron schedules: which minutes fire, and the schedule reconciler's concurrency policies
against a real (SQLite) store."""

from __future__ import annotations

import calendar
from pathlib import Path

import pytest

from phalanx import kinds
from phalanx.pipelines.reconciler import KIND, LABEL_PIPELINE, ScheduleReconciler
from phalanx.pipelines.schedule import CronError, parse_cron
from phalanx.store import Store, default_url

MONDAY_0300 = calendar.timegm((2026, 11, 30, 3, 0, 0))


@pytest.mark.parametrize(
    ("expression", "offset_min", "fires"),
    [
        ("*/15 3 * * *", 0, True),
        ("*/15 3 * * *", 15, True),
        ("*/15 3 * * *", 16, False),
        ("0 3 * * 1-5", 0, True),
        ("0 3 * * 0,6", 0, False),
        ("0 3 * * 7", 6 * 1440, True),  # 7 = Sunday
        ("0 3 30 * 0", 0, True),  # day of month or day of week
        ("0 3 1 * 0", 0, False),
    ],
)
def test_cron_fires_on_its_minutes(expression: str, offset_min: int, fires: bool) -> None:
    assert parse_cron(expression).matches(MONDAY_0300 + offset_min * 60) is fires


@pytest.mark.parametrize(
    ("expression", "field"),
    [
        ("* * *", "needs 5 fields"),
        ("61 * * * *", "minute"),
        ("* * * 13 *", "month"),
        ("*/0 * * * *", "minute"),
    ],
)
def test_bad_cron_names_the_field(expression: str, field: str) -> None:
    with pytest.raises(CronError, match=field):
        parse_cron(expression)


def _pipeline(policy: str) -> dict[str, object]:
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Pipeline",
        "metadata": {"name": "nightly"},
        "spec": {
            "queue": "q",
            "artifacts": "/tmp/artifacts",
            "steps": [{"name": "a", "task": "m:f"}],
            "schedule": {"cron": "*/5 * * * *", "concurrencyPolicy": policy},
        },
    }


@pytest.mark.parametrize("policy", ["Allow", "Forbid", "Replace"])
def test_schedule_starts_runs_by_its_concurrency_policy(tmp_path: Path, policy: str) -> None:
    store = Store(default_url(tmp_path))
    cancelled: list[str] = []
    reconciler = ScheduleReconciler(store, cancelled.append)
    store.apply(
        [("Pipeline", "nightly", kinds.parse(_pipeline(policy)).manifest)], [], MONDAY_0300 - 1
    )
    assert (
        reconciler.reconcile_pipeline(store.get_object("Pipeline", "nightly"), MONDAY_0300 + 30)
        == "nightly-20261130-0300"
    )  # type: ignore[arg-type]
    run = store.get_object(KIND, "nightly-20261130-0300")
    assert run is not None and run.labels[LABEL_PIPELINE] == "nightly"
    assert run.manifest["spec"] == {
        "pipeline": "nightly",
        "queue": "q",
        "artifacts": "/tmp/artifacts",
    }
    assert run.owner_refs[0]["name"] == "nightly"
    # Nothing more is due within the same 5 minutes.
    assert (
        reconciler.reconcile_pipeline(store.get_object("Pipeline", "nightly"), MONDAY_0300 + 200)
        is None
    )  # type: ignore[arg-type]
    # The first run is still going (it has a running step) when the next is due.
    status = {"phase": "Running", "steps": {"a": {"state": "Running", "job": "nightly-0300-s0"}}}
    store.apply([(KIND, run.name, {**run.manifest, "status": status})], [], MONDAY_0300 + 60)
    second = reconciler.reconcile_pipeline(
        store.get_object("Pipeline", "nightly"), MONDAY_0300 + 300
    )  # type: ignore[arg-type]
    pipeline = store.get_object("Pipeline", "nightly")
    assert pipeline is not None
    first = store.get_object(KIND, run.name)
    assert first is not None
    if policy == "Forbid":
        assert second is None
        assert (
            "nightly-20261130-0300 is still going"
            in pipeline.manifest["status"]["lastSkipped"]["because"]
        )
        assert cancelled == []
    else:
        assert second == "nightly-20261130-0305"
        assert pipeline.manifest["status"]["lastRun"] == second
    if policy == "Replace":
        assert cancelled == ["nightly-0300-s0"]
        assert first.manifest["status"]["phase"] == "Failed"
        assert first.manifest["status"]["message"] == "replaced by run nightly-20261130-0305"
    else:
        assert first.manifest["status"]["phase"] == "Running"
    store.close()
