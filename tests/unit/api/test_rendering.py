"""JSON sent as bytes (``api.rendering``): what FastAPI would have sent after validating against
the schemas, so that skipping its response validation cannot drift silently; and job pages
rendered once per resourceVersion, afresh for jobs holding capacity; whole pages kept by the
store's revision, never served once a write has moved it on."""

from __future__ import annotations

import dataclasses
import json
import math
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from pydantic import TypeAdapter
from test_conversion import T0, make_metadata, make_view

from phalanx.api.conversion import apply_out, job_out, reason_out
from phalanx.api.rendering import JobJson, apply_json, json_bytes
from phalanx.api.schemas import ApplyOutcome, JobInfo, full_job_item, job_item
from phalanx.backends.base import Backend
from phalanx.controllers.health import HealthTracker
from phalanx.controllers.queries import Queries
from phalanx.controllers.state import SpecCache
from phalanx.controllers.views import ApplyResult, EventView, JobView, ProgressView
from phalanx.model.objects import JobPhase
from phalanx.model.reasons import Reason, ReasonCode
from phalanx.store import Store, Transition, open_store
from phalanx.testing import job_manifest


def validated(adapter: TypeAdapter[Any], value: object) -> object:
    """What FastAPI sends for ``value`` under a response model: validated, then dumped."""
    return json.loads(adapter.dump_json(adapter.validate_python(value)))


VIEWS = {
    "pending": make_view(
        phase=JobPhase.PENDING,
        attempt=0,
        pods=(),
        admitted_at=None,
        reason_code="QuotaExceeded",
        message="queue team-a uses 4/4 GPUs",
        reason_facts={"used": 4, "nominal": 4.0, "queue": "team-a"},
        metadata=make_metadata("train", labels={"team": "a"}, annotations={"note": "é ✓"}),
    ),
    "running": make_view(
        progress=ProgressView(
            step=120,
            reported_at=T0 + 50,
            checkpoint_step=100,
            checkpoint_at=T0 + 40,
            checkpoint_path="/ckpt/100",
            total_steps=1000,
            expected_end_at=T0 + 500,
        ),
        metadata=make_metadata(
            "train", owner_references=({"kind": "PipelineRun", "name": "r", "uid": "u"},)
        ),
    ),
    "succeeded": make_view(
        phase=JobPhase.SUCCEEDED, started_at=T0 + 2, finished_at=T0 + 90, message="done"
    ),
    "failed-with-events": make_view(
        phase=JobPhase.FAILED,
        restarts=2,
        reason_code="BackoffLimitExceeded",
        reason_facts={"restarts": 2, "ratio": math.nan},
        events=(
            EventView(T0, "Normal", "Created", "submitted"),
            EventView(T0 + 9, "Warning", "PodFailed", "exit 1", {"exit_code": 1}),
        ),
    ),
}


@pytest.mark.parametrize("view", list(VIEWS.values()), ids=list(VIEWS))
def test_job_json_is_what_the_schema_validates(view: JobView) -> None:
    out = job_out(view)
    assert json.loads(json_bytes(out)) == validated(TypeAdapter(JobInfo), out)
    # Nothing beyond the schema's fields (validation would have dropped it).
    assert set(out) == set(TypeAdapter(JobInfo).json_schema()["properties"])


@pytest.mark.parametrize("view", list(VIEWS.values()), ids=list(VIEWS))
def test_a_list_item_is_valid_and_the_client_restores_the_full_job(view: JobView) -> None:
    full = json.loads(json_bytes(job_out(view)))
    item = json.loads(json_bytes(job_item(job_out(view))))
    assert item == validated(TypeAdapter(JobInfo), item)
    restored = full_job_item(item)
    assert restored == full
    assert list(restored) == list(full)  # the same order too: `get -o yaml` prints it


def test_a_pending_item_leaves_out_defaults_and_repeats() -> None:
    item = job_item(job_out(VIEWS["pending"]))
    left_out = set(job_out(VIEWS["pending"])) - set(item)
    assert left_out == {  # make_view gives it a flavor and an event
        "attempt",
        "restarts",
        "admitted_at",
        "admitted_at_iso",
        "started_at",
        "started_at_iso",
        "finished_at",
        "finished_at_iso",
        "created_at_iso",
        "pods",
        "progress",
    }
    assert item["reason"] == {"code": "QuotaExceeded", "facts": VIEWS["pending"].reason_facts}
    assert set(item["metadata"]) == {
        "name",
        "uid",
        "labels",
        "annotations",  # not empty here
        "resourceVersion",
        "generation",
        "creationTimestamp",
    }


def test_a_nan_fact_is_written_as_null_not_as_invalid_json() -> None:
    body = json_bytes(job_out(VIEWS["failed-with-events"]))
    assert b"NaN" not in body
    assert json.loads(body)["reason"]["facts"] == {"restarts": 2, "ratio": None}


def test_apply_outcomes_are_what_the_schema_validates() -> None:
    warning = Reason(
        ReasonCode.NEVER_FITS,
        {"flavor": "default", "check": "Node", "needed_gpu_milli": 8000, "max_node_gpus": 4},
    )
    outcomes = [
        apply_out(ApplyResult("Job", "train", "created", (warning,))),
        apply_out(ApplyResult("Queue", "team-a", "unchanged")),
    ]
    adapter = TypeAdapter(list[ApplyOutcome])
    assert json.loads(json_bytes(outcomes)) == validated(adapter, outcomes)


def test_apply_json_is_json_bytes_of_the_outcomes_with_warnings_shared_or_not() -> None:
    never = Reason(
        ReasonCode.NEVER_FITS,
        {"flavor": "default", "check": "Node", "needed_gpu_milli": 8000, "max_node_gpus": 4},
    )
    other = Reason(ReasonCode.NEVER_FITS, {"flavor": "h100", "check": "Node", "max_node_gpus": 2})
    results = [
        ApplyResult("Queue", "team-a", "unchanged"),
        ApplyResult("Job", "a-0", "created", (never,)),
        ApplyResult("Job", "a-1", "created", (never,)),  # the same warning, encoded once
        ApplyResult("Job", 'é-"q"', "unchanged", (other,)),
        ApplyResult("Job", "a-2", "created", (never, other)),
        ApplyResult("Job", "a-3", "created", (other, never)),
    ]
    body = apply_json(results)
    assert body == json_bytes([apply_out(r) for r in results])
    assert [o["warnings"] for o in json.loads(body)][-2:] == [
        [json.loads(json_bytes(reason_out(w))) for w in pair]
        for pair in ((never, other), (other, never))
    ]


def test_apply_json_writes_a_nan_fact_as_json_bytes_does() -> None:
    odd = Reason(ReasonCode.NEVER_FITS, {"ratio": math.nan})
    results = [ApplyResult("Job", "a", "created", (odd,))]
    assert apply_json(results) == json_bytes([apply_out(r) for r in results])
    assert b"NaN" not in apply_json(results)


# -- pages -------------------------------------------------------------------------------


def job(name: str) -> dict[str, object]:
    return job_manifest(name, labels={"team": "x"}, pod_set="w", resources={"cpu": 1})


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = open_store(None, tmp_path)
    s.apply([], [(n, f"uid-{n}", job(n), "q", 0) for n in "abcd"], now=1.0)
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


def page_json(queries: Queries, pages: JobJson, limit: int, token: str = "") -> list[object]:
    """The page's JSON, checked against page_jobs and the schema."""
    body, next_token, revision = pages.page(None, None, limit, token)
    expected = queries.page_jobs(None, None, limit, token)
    items = json.loads(body)
    adapter = TypeAdapter(JobInfo)
    assert items == [validated(adapter, job_item(job_out(v))) for v in expected.items]
    # What the client makes of each item is the job in full, as before items were lighter.
    assert [full_job_item(i) for i in items] == [
        validated(adapter, job_out(v)) for v in expected.items
    ]
    assert (next_token, revision) == (expected.continue_token, expected.resource_version)
    return cast(list[object], items)


def test_pages_are_page_jobs_as_json_with_the_same_tokens(queries: Queries, store: Store) -> None:
    pages = JobJson(queries)
    first = page_json(queries, pages, 3)
    again = page_json(queries, pages, 3)  # from the cache
    assert again == first
    _, token, _ = pages.page(None, None, 3, "")
    rest = page_json(queries, pages, 3, token)
    assert [cast(dict[str, object], j)["name"] for j in first + rest] == list("abcd")
    with pytest.raises(ValueError, match="continue token"):
        pages.page(None, None, 3, "nope")


def test_a_write_shows_in_the_next_page(queries: Queries, store: Store) -> None:
    pages = JobJson(queries)
    page_json(queries, pages, 4)
    write(store, "b", message="waits", reason_code="NeverFits")
    items = cast(list[dict[str, Any]], page_json(queries, pages, 4))
    assert (items[1]["message"], items[1]["reason_code"]) == ("waits", "NeverFits")
    assert items[1]["metadata"]["resourceVersion"] > items[0]["metadata"]["resourceVersion"]


def test_jobs_holding_capacity_are_rendered_afresh(
    queries: Queries, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Their progress comes from files their pods write, which move no resourceVersion.
    write(store, "a", phase="Admitted", attempt=1)
    pages = JobJson(queries)
    page_json(queries, pages, 4)
    steps = iter([ProgressView(5, T0, None, None, ""), ProgressView(9, T0 + 1, None, None, "")])
    build = queries.job_views

    def with_progress(keys: list[tuple[int, int]]) -> dict[int, JobView]:
        views = build(keys)
        return {
            job_id: dataclasses.replace(v, progress=next(steps)) if v.name == "a" else v
            for job_id, v in views.items()
        }

    monkeypatch.setattr(queries, "job_views", with_progress)
    progress = [
        cast(list[dict[str, Any]], json.loads(pages.page(None, None, 4, "")[0]))[0]["progress"]
        for _ in range(2)
    ]
    assert [p["step"] for p in progress] == [5, 9]


def test_a_kept_page_is_served_until_the_next_write(queries: Queries, store: Store) -> None:
    pages = JobJson(queries)
    assert pages.cached(None, None, 4, "") is None
    built = pages.page(None, None, 4, "")
    assert pages.cached(None, None, 4, "") == built
    assert pages.cached(None, None, 3, "") is None  # another page
    # A write by another writer than this process's loop (straight to the store).
    write(store, "c", message="moved on", reason_code="NeverFits")
    assert pages.cached(None, None, 4, "") is None
    items = cast(list[dict[str, Any]], json.loads(pages.page(None, None, 4, "")[0]))
    assert items[2]["message"] == "moved on"
    kept = pages.cached(None, None, 4, "")
    assert kept is not None and json.loads(kept[0]) == items


def test_a_page_with_a_job_holding_capacity_is_not_kept(queries: Queries, store: Store) -> None:
    write(store, "a", phase="Admitted", attempt=1)
    pages = JobJson(queries)
    pages.page(None, None, 4, "")
    assert pages.cached(None, None, 4, "") is None
    assert pages.cached(None, None, 2, "") is None
    _, token, _ = pages.page(None, None, 2, "")
    pages.page(None, None, 2, token)  # c, d: pending only
    assert pages.cached(None, None, 2, token) is not None


def test_no_page_misses_a_write_at_or_before_its_revision(queries: Queries, store: Store) -> None:
    """A writer moves the jobs on while readers ask for kept pages (and build them): every page
    shows each job at least as of its last write committed before the request began."""
    pages = JobJson(queries)
    seen: list[tuple[int, int, list[dict[str, Any]]]] = []
    is_writing = threading.Event()
    is_writing.set()

    def read() -> None:
        while is_writing.is_set():
            before = store.revision()
            found = pages.cached(None, None, 4, "") or pages.page(None, None, 4, "")
            seen.append((before, found[2], json.loads(found[0])))

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        for i in range(60):
            write(store, "abcd"[i % 4], message=f"write {i}")
    finally:
        is_writing.clear()
        for reader in readers:
            reader.join()
    changes, _ = store.changes(0, limit=10_000)
    assert len(seen) > 10
    for revision, answered_at, items in seen:
        assert answered_at >= revision
        for item in items:
            due = max(
                (c.revision for c in changes if c.name == item["name"] and c.revision <= revision),
                default=0,
            )
            assert item["metadata"]["resourceVersion"] >= due, (revision, item["name"])
    assert len({before for before, _, _ in seen}) > 1
