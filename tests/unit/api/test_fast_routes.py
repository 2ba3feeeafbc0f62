"""The fast routes (POST /apply with JSON, GET /jobs) answer as the FastAPI routes do, after
the same authorization, with the same audit records and error responses; requests they do not
recognise in full still reach the FastAPI routes."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from conftest import AppTransport
from phalanx.api import app as app_module
from phalanx.api import fast_routes
from phalanx.testing import queue_manifests

#: A queue without GPUs: the jobs below stay Pending, no pod starts.
QUEUE = queue_manifests(gpu=0, cpu=4, memory="4Gi")


def job(name: str, **spec: object) -> dict[str, object]:
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Job",
        "metadata": {"name": name, "labels": {"team": "a"}},
        "spec": {
            "queue": "q",
            "podSets": [
                {
                    "name": "main",
                    "command": ["true"],
                    "env": {"SECRET_ISH": "v"},
                    "resources": {"cpu": "100m", "nvidia.com/gpu": 1},
                }
            ],
            **spec,
        },
    }


@pytest.fixture
def routed(monkeypatch: pytest.MonkeyPatch) -> Callable[[], dict[str, int]]:
    """Counts of requests the FastAPI routes (not the fast routes) handled, by route."""
    counts = {"apply": 0, "jobs": 0}
    body, principal = app_module._apply_body, app_module.principal_of

    async def apply_body(request: object) -> object:
        counts["apply"] += 1
        return await body(request)  # type: ignore[arg-type]

    def principal_of(request: object) -> object:
        if getattr(request, "url", None) is not None and request.url.path == "/api/v1/jobs":  # type: ignore[attr-defined]
            counts["jobs"] += 1
        return principal(request)  # type: ignore[arg-type]

    monkeypatch.setattr(app_module, "_apply_body", apply_body)
    monkeypatch.setattr(app_module, "principal_of", principal_of)
    return lambda: dict(counts)


def post_json(
    http: httpx.Client, body: object, params: dict[str, str] | None = None
) -> httpx.Response:
    return http.post("/api/v1/apply", params=params, content=json.dumps(body))


def test_apply_both_ways_answers_alike(
    http: httpx.Client, routed: Callable[[], dict[str, int]]
) -> None:
    assert post_json(http, {"manifests": QUEUE}).status_code == 200
    fast = post_json(http, {"manifests": [job("fast-1"), job("fast-2")], "source": "a.json"})
    assert routed()["apply"] == 0  # neither went through FastAPI
    # A query parameter is not the fast route's: FastAPI's answers, as before.
    slow = post_json(http, {"manifests": [job("slow-1"), job("slow-2")]}, {"source": "x"})
    assert routed()["apply"] == 1
    assert fast.status_code == slow.status_code == 200
    assert fast.headers["content-type"] == slow.headers["content-type"] == "application/json"
    outcomes = [fast.json(), slow.json()]
    assert [[o["action"] for o in out] for out in outcomes] == [["created"] * 2] * 2
    assert [o["name"] for o in outcomes[0]] == ["fast-1", "fast-2"]
    assert outcomes[0][0].keys() == outcomes[1][0].keys()
    # Applied again: unchanged, either way.
    again = post_json(http, {"manifests": [job("fast-1")]})
    assert [o["action"] for o in again.json()] == ["unchanged"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        pytest.param({"manifests": [job("Bad_Name")]}, 400, "SpecInvalid", id="spec-error"),
        pytest.param({"manifests": [job("one", priority=5)]}, 409, "Conflict", id="conflict"),
        pytest.param({"manifests": []}, 400, "BadRequest", id="no-manifests"),
        pytest.param({"manifests": [1]}, 400, "BadRequest", id="not-objects"),
        pytest.param([1, 2], 400, "BadRequest", id="not-an-object"),
    ],
)
def test_apply_errors_are_the_apps_own(
    http: httpx.Client, body: object, status: int, code: str
) -> None:
    post_json(http, {"manifests": [*QUEUE, job("one")]}).raise_for_status()
    response = post_json(http, body)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    if code == "SpecInvalid":
        assert response.json()["error"]["details"][0]["path"] == "metadata.name"


def test_apply_is_authorized_and_audited(app: FastAPI, http: httpx.Client) -> None:
    identity = app.state.identity
    identity.create_user("vera", "viewer")
    identity.create_user("uma", "user")
    _, viewer_token = identity.create_token("vera", "t", None)
    _, user_token = identity.create_token("uma", "t", None)
    post_json(http, {"manifests": QUEUE}).raise_for_status()
    with httpx.Client(transport=AppTransport(app), base_url="http://phalanx.test") as other:
        refused = other.post(
            "/api/v1/apply",
            content=json.dumps({"manifests": [job("v-1")]}),
            headers={"Authorization": f"Bearer {viewer_token}"},
        )
        assert refused.status_code == 403
        anonymous = other.post("/api/v1/apply", content=json.dumps({"manifests": [job("a-1")]}))
        assert anonymous.status_code == 401
        mine = other.post(
            "/api/v1/apply",
            content=json.dumps({"manifests": [job("u-1"), job("u-2")]}),
            headers={"Authorization": f"Bearer {user_token}"},
        )
        assert mine.status_code == 200
    stored = http.get("/api/v1/jobs/u-1").json()
    assert stored["manifest"]["metadata"]["owner"] == "uma"  # admission stamped the owner
    records = {(r.user, r.action, r.name, r.status) for r in app.state.audit.query()}
    apply = "POST /api/v1/apply"
    # Refused before the route read the body: one record, without the objects.
    assert ("vera", apply, "", 403) in records
    assert {("uma", apply, "u-1", 200), ("uma", apply, "u-2", 200)} <= records
    assert not any(name in ("v-1", "a-1") for *_, name, _ in records)


def test_job_pages_both_ways_answer_alike(
    http: httpx.Client, routed: Callable[[], dict[str, int]]
) -> None:
    post_json(http, {"manifests": [*QUEUE, *(job(f"p-{i}") for i in range(5))]}).raise_for_status()
    fast = http.get("/api/v1/jobs", params={"limit": "2", "labelSelector": "team=a"})
    assert routed()["jobs"] == 0
    # The same parameter twice is not the fast route's: FastAPI answers.
    slow = http.get("/api/v1/jobs?limit=2&limit=2&labelSelector=team%3Da")
    assert routed()["jobs"] == 1
    deadline = time.monotonic() + 20
    while fast.headers["x-resource-version"] != slow.headers["x-resource-version"]:
        assert time.monotonic() < deadline, "the loop kept writing"
        time.sleep(0.2)  # the loop is still giving the jobs their reasons: ask both again
        fast = http.get("/api/v1/jobs", params={"limit": "2", "labelSelector": "team=a"})
        slow = http.get("/api/v1/jobs?limit=2&limit=2&labelSelector=team%3Da")
    assert fast.status_code == slow.status_code == 200
    assert fast.content == slow.content
    assert [j["name"] for j in fast.json()] == ["p-0", "p-1"]
    for header in ("x-continue", "x-resource-version", "content-type"):
        assert fast.headers[header] == slow.headers[header], header
    rest = http.get("/api/v1/jobs", params={"limit": "5", "continue": fast.headers["x-continue"]})
    assert [j["name"] for j in rest.json()] == ["p-2", "p-3", "p-4"]
    assert "x-continue" not in rest.headers


@pytest.mark.parametrize(
    ("query", "fragment"),
    [
        pytest.param("limit=0", "limit", id="limit-too-small"),
        pytest.param("limit=x", "limit", id="limit-not-a-number"),
        pytest.param("labelSelector=a%3D%3D%3D", "labelSelector", id="bad-selector"),
        pytest.param("continue=nope", "continue token", id="foreign-token"),
    ],
)
def test_bad_page_queries_are_400(http: httpx.Client, query: str, fragment: str) -> None:
    response = http.get(f"/api/v1/jobs?{query}")
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]["message"]


def test_pages_hide_env_from_other_users(app: FastAPI, http: httpx.Client) -> None:
    post_json(http, {"manifests": [*QUEUE, job("admins")]}).raise_for_status()
    identity = app.state.identity
    identity.create_user("vera", "viewer")
    _, token = identity.create_token("vera", "t", None)
    with httpx.Client(
        transport=AppTransport(app),
        base_url="http://phalanx.test",
        headers={"Authorization": f"Bearer {token}"},
    ) as viewer:
        (seen,) = viewer.get("/api/v1/jobs", params={"limit": "10"}).json()
    env = seen["manifest"]["spec"]["podSets"][0]["env"]
    assert env == {"SECRET_ISH": "(hidden)"}
    (own,) = http.get("/api/v1/jobs", params={"limit": "10"}).json()
    assert own["manifest"]["spec"]["podSets"][0]["env"] == {"SECRET_ISH": "v"}


def test_a_page_kept_at_the_current_revision_skips_the_worker_thread(
    http: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    post_json(http, {"manifests": [*QUEUE, *(job(f"k-{i}") for i in range(3))]}).raise_for_status()
    hops = {"page": 0}
    hop = fast_routes.run_in_threadpool

    async def counted(func: Callable[..., Any], *args: object) -> Any:
        hops["page"] += 1
        return await hop(func, *args)

    monkeypatch.setattr(fast_routes, "run_in_threadpool", counted)
    # Until the loop has given every job its reason, each answer may be at a newer revision.
    deadline = time.monotonic() + 20
    first = http.get("/api/v1/jobs", params={"limit": "2"})
    while True:
        hops["page"] = 0
        again = http.get("/api/v1/jobs", params={"limit": "2"})
        if again.headers["x-resource-version"] == first.headers["x-resource-version"]:
            break
        assert time.monotonic() < deadline, "the loop kept writing"
        first = again
        time.sleep(0.2)
    assert hops["page"] == 0  # answered from the kept page
    assert again.content == first.content
    assert again.headers["x-continue"] == first.headers["x-continue"]
    # A write moves the revision on: the page is built again, and shows it.
    post_json(http, {"manifests": [job("k-3")]}).raise_for_status()
    hops["page"] = 0
    rest = http.get("/api/v1/jobs", params={"limit": "2", "continue": again.headers["x-continue"]})
    assert hops["page"] == 1
    assert [j["name"] for j in rest.json()] == ["k-2", "k-3"]
    http.get("/api/v1/jobs", params={"limit": "2"}).raise_for_status()
    assert hops["page"] == 2  # the first page too: it was kept at an older revision
