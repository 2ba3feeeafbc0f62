"""The dashboard's routes through the real app in-process (no browser): sign-in with the
HttpOnly cookie and its CSRF guard, redirects, pages read through the API, the watch relay."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from phalanx.api import create_app
from phalanx.backends.sim import SimBackend
from phalanx.backends.sim.backend import VirtualClock
from phalanx.controllers.plane import ControlPlane, ControlPlaneConfig
from phalanx.store import Store
from phalanx.testing import job_manifest, make_node, queue_manifests

pytestmark = pytest.mark.integration

TOKEN = "ui-token"
BASE = "http://phalanx.test"
MANIFESTS: list[dict[str, object]] = [
    *queue_manifests(gpu=8, cpu=8, memory="8Gi"),
    *(job_manifest(f"j{i}", pod_set="w", resources={"nvidia.com/gpu": 1}) for i in range(3)),
]

Run = Callable[[Callable[[httpx.AsyncClient], Awaitable[None]]], None]


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Run]:
    """Runs a coroutine with a client of the app (one event loop for the whole test)."""
    clock = VirtualClock(1_700_000_000.0)
    backend = SimBackend([make_node("n1").gpus(8).obj()], clock)
    store = Store(f"sqlite:///{tmp_path}/phalanx.db")
    plane = ControlPlane(store, backend, ControlPlaneConfig(tmp_path), clock=lambda: clock.now)
    plane.apply(MANIFESTS)
    app = create_app(plane, TOKEN)

    def runner(body: Callable[[httpx.AsyncClient], Awaitable[None]]) -> None:
        async def main() -> None:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
                await body(client)

        asyncio.run(main())

    yield runner
    store.close()


def test_pages_send_a_browser_without_a_token_to_sign_in(run: Run) -> None:
    async def body(client: httpx.AsyncClient) -> None:
        page = await client.get("/ui/jobs?queue=q")
        assert page.status_code == 303
        assert page.headers["location"] == "/ui/login?next=%2Fui%2Fjobs%3Fqueue%3Dq"
        partial = await client.get("/ui/jobs?partial=1")  # the script's refresh: no redirect
        assert partial.status_code == 401
        form = await client.get("/ui/login")
        assert form.status_code == 200 and 'name="token"' in form.text

    run(body)


def test_sign_in_sets_an_http_only_strict_cookie_and_pages_read_the_api(run: Run) -> None:
    async def body(client: httpx.AsyncClient) -> None:
        wrong = await client.post("/ui/login", data={"token": "nope"})
        assert wrong.status_code == 401 and "not accepted" in wrong.text
        assert "set-cookie" not in wrong.headers
        signed = await client.post(
            "/ui/login", data={"token": TOKEN, "next": "/ui/jobs"}, headers={"Origin": BASE}
        )
        assert signed.status_code == 303 and signed.headers["location"] == "/ui/jobs"
        cookie = signed.headers["set-cookie"].lower()
        assert f"phalanx_token={TOKEN.lower()}" in cookie
        assert "httponly" in cookie and "samesite=strict" in cookie
        jobs = await client.get("/ui/jobs")
        assert jobs.status_code == 200
        assert jobs.text.count("<tr data-job=") == 3
        page = await client.get("/ui/jobs?limit=2")
        assert page.text.count("<tr data-job=") == 2 and 'rel="next"' in page.text
        for path in ("/", "/ui/queues", "/ui/jobs/j1", "/ui/nodes", "/ui/reports"):
            response = await client.get(path)
            assert response.status_code == 200, (path, response.text[:500])
        missing = await client.get("/ui/jobs/nope")
        assert missing.status_code == 200 and 'data-status="404"' in missing.text
        out = await client.post("/ui/logout", headers={"Origin": BASE})
        assert out.status_code == 303 and 'phalanx_token=""' in out.headers["set-cookie"]

    run(body)


def test_cross_site_posts_are_refused(run: Run) -> None:
    async def body(client: httpx.AsyncClient) -> None:
        evil = await client.post(
            "/ui/login", data={"token": TOKEN}, headers={"Origin": "http://evil.example"}
        )
        assert evil.status_code == 403 and "set-cookie" not in evil.headers
        bounce = await client.post("/ui/login", data={"token": TOKEN, "next": "//evil.example/x"})
        assert bounce.headers["location"] == "/"  # never another origin

    run(body)


def test_the_watch_relay_streams_the_apis_events_for_the_cookie(run: Run) -> None:
    async def body(client: httpx.AsyncClient) -> None:
        refused = await client.get("/ui/watch?timeoutSeconds=0.2")
        assert refused.status_code == 401
        client.cookies.set("phalanx_token", TOKEN)
        response = await client.get("/ui/watch?kinds=Job&resourceVersion=0&timeoutSeconds=0.5")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [
            json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")
        ]
        assert {e["name"] for e in events} == {"j0", "j1", "j2"}
        assert all(e["kind"] == "Job" for e in events)

    run(body)


def test_static_assets_are_served_and_cached(run: Run) -> None:
    async def body(client: httpx.AsyncClient) -> None:
        script = await client.get("/ui/static/app.js")
        assert script.status_code == 200
        assert script.headers["content-type"].startswith("text/javascript")
        assert "immutable" in script.headers["cache-control"]
        assert (await client.get("/ui/static/nope.js")).status_code == 404

    run(body)


def test_the_start_up_warm_up_leaves_the_api_document_to_be_built_when_asked(
    tmp_path: Path,
) -> None:
    from fastapi import FastAPI

    from phalanx.api.ui import warm_up

    clock = VirtualClock(1_700_000_000.0)
    store = Store(f"sqlite:///{tmp_path}/phalanx.db")
    backend = SimBackend([make_node("n1").gpus(8).obj()], clock)
    plane = ControlPlane(store, backend, ControlPlaneConfig(tmp_path), clock=lambda: clock.now)
    app: FastAPI = create_app(plane, TOKEN)
    warm_up(app, plane.queries)
    assert app.openapi_schema is None  # a route added after start is documented too
    app.add_api_route("/api/v1/later", lambda: {}, methods=["GET"])
    assert "/api/v1/later" in app.openapi()["paths"]
    store.close()
    warm_up(app, plane.queries)  # a closed store: nothing to warm, nothing raised
