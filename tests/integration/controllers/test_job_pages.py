"""Pages of jobs from the read side: FIFO order, label selectors, continue tokens, and views
built once per resourceVersion (a page of unchanged jobs reuses them; a write shows at once)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest
from harness import Harness, job_manifest, queue_manifests

from phalanx.backends.base import Backend
from phalanx.controllers.health import HealthTracker
from phalanx.controllers.queries import Queries
from phalanx.controllers.state import SpecCache
from phalanx.model.metadata import parse_selector
from phalanx.store import Store, Transition, open_store
from phalanx.testing import job_manifest as pod_set_job

pytestmark = pytest.mark.integration


def job(name: str, team: str) -> dict[str, object]:
    return pod_set_job(name, labels={"team": team}, replicas=2, pod_set="w", resources={"cpu": 1})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(None, tmp_path)
    teams = {"a": "x", "b": "y", "c": "x", "d": "y", "e": "x"}
    s.apply([], [(n, f"uid-{n}", job(n, t), "q", 0) for n, t in teams.items()], now=1.0)
    yield s
    s.close()


@pytest.fixture
def queries(store: Store, tmp_path: Path) -> Queries:
    # Pages read only the store and the data dir: no backend is called.
    return Queries(
        store, cast(Backend, None), SpecCache(), HealthTracker(store, time.time), tmp_path
    )


def write(store: Store, name: str, **fields: object) -> None:
    record = store.get_job(name)
    assert record is not None
    assert store.transition(Transition(record.id, job=fields))


def test_pages_follow_fifo_order_selectors_and_continue_tokens(queries: Queries) -> None:
    first = queries.page_jobs(limit=2)
    assert [v.name for v in first.items] == ["a", "b"] and first.continue_token
    second = queries.page_jobs(limit=2, continue_token=first.continue_token)
    third = queries.page_jobs(limit=2, continue_token=second.continue_token)
    assert [v.name for v in second.items] == ["c", "d"]
    assert [v.name for v in third.items] == ["e"] and third.continue_token == ""
    x = queries.page_jobs(selector=parse_selector("team=x"), limit=2)
    assert [v.name for v in x.items] == ["a", "c"]
    rest = queries.page_jobs(selector=parse_selector("team=x"), continue_token=x.continue_token)
    assert [v.name for v in rest.items] == ["e"]
    assert [v.name for v in queries.list_jobs()] == ["a", "b", "c", "d", "e"]
    assert (first.items[0].pod_count, first.items[0].request.cpu_milli) == (2, 2000)


def test_a_view_is_built_once_per_resource_version(queries: Queries, store: Store) -> None:
    before = queries.page_jobs(limit=3).items
    write(store, "b", message="waits", reason_code="NeverFits")
    after = queries.page_jobs(limit=3).items
    assert after[0] is before[0] and after[2] is before[2]  # unchanged: the same views
    assert after[1] is not before[1]
    assert (after[1].message, after[1].reason_code) == ("waits", "NeverFits")
    assert after[1].metadata.resource_version > before[1].metadata.resource_version


def test_views_of_jobs_holding_capacity_are_built_afresh(queries: Queries, store: Store) -> None:
    # Their progress comes from files their pods write, which move no resourceVersion.
    write(store, "a", phase="Admitted", attempt=1)
    first = queries.page_jobs(limit=1).items[0]
    again = queries.page_jobs(limit=1).items[0]
    assert first.phase.value == "Admitted" and again is not first and again == first


def test_queue_views_count_waiting_and_admitted_jobs(harness: Harness) -> None:
    harness.plane.apply(queue_manifests(gpus=2))
    harness.plane.apply([job_manifest("runs", "import time; time.sleep(30)", gpus=2)])
    harness.plane.apply([job_manifest(f"waits-{i}", "print('later')", gpus=2) for i in range(3)])
    harness.run_until(lambda: harness.phase("runs") == "Running")
    [queue] = harness.plane.list_queues()
    assert (queue.pending, queue.admitted) == (3, 1)
    assert queue.usage[0].used.gpu_milli == 2000
    harness.plane.cancel_job("waits-0")
    [queue] = harness.plane.list_queues()
    assert (queue.pending, queue.admitted) == (2, 1)


def test_a_page_is_picked_once_per_store_revision(
    queries: Queries, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    listed: list[dict[str, object]] = []
    list_job_versions = store.list_job_versions
    monkeypatch.setattr(
        store,
        "list_job_versions",
        lambda **kw: listed.append(kw) or list_job_versions(**kw),
    )
    first = queries.page_jobs(limit=3)
    assert queries.page_jobs(limit=3) == first and len(listed) == 1  # nothing was written
    queries.page_jobs(limit=2)  # another page: picked, not the first one's
    assert len(listed) == 2
    write(store, "b", message="waits")
    after = queries.page_jobs(limit=3)
    assert len(listed) == 3 and after.items[1].message == "waits"
    assert after.resource_version > first.resource_version
