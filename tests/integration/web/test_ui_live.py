"""The dashboard's live stream of Services and pipeline runs (``/ui/watch?kinds=Service`` or
``PipelineRun``) through the real app in-process: which writes touch which object, one event
per touched object drawn as the page draws it, deletions, one run only, the token checked,
and the pages carrying the revision their stream starts from."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from phalanx.api import create_app
from phalanx.api.ui_live import LiveSettings, LiveStream
from phalanx.backends.sim import SimBackend
from phalanx.backends.sim.backend import VirtualClock
from phalanx.controllers.plane import ControlPlane, ControlPlaneConfig
from phalanx.model.service import SERVICE_LABEL
from phalanx.store import Store
from phalanx.testing import job_manifest, make_node, queue_manifests

pytestmark = pytest.mark.integration

TOKEN = "live-token"
BASE = "http://phalanx.test"


def service(name: str, image: str = "v1") -> dict[str, Any]:
    return {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {"queue": "q", "template": {"command": ["true"], "image": image}},
    }


def run_object(name: str, phase: str) -> tuple[str, str, dict[str, Any]]:
    """A PipelineRun as its reconciler leaves it: two steps, the first done."""
    steps = [
        {"name": "first", "task": "m:first", "inputs": {}},
        {"name": "second", "task": "m:second", "inputs": {"x": {"step": "first"}}},
    ]
    manifest = {
        "apiVersion": "phalanx.dev/v1alpha1",
        "kind": "PipelineRun",
        "metadata": {"name": name},
        "spec": {"pipeline": "flow", "steps": steps},
        "status": {
            "phase": phase,
            "steps": {"first": {"state": "Succeeded"}, "second": {"state": "Running"}},
        },
    }
    return ("PipelineRun", name, manifest)


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[ControlPlane]:
    clock = VirtualClock(1_700_000_000.0)
    backend = SimBackend([make_node("n1").gpus(8).obj()], clock)
    store = Store(f"sqlite:///{tmp_path}/phalanx.db")
    plane = ControlPlane(store, backend, ControlPlaneConfig(tmp_path), clock=lambda: clock.now)
    plane.apply(queue_manifests("q"))
    yield plane
    store.close()


def stream_events(plane: ControlPlane, query: str, token: str | None = TOKEN) -> httpx.Response:
    """GET /ui/watch?<query> for a second, as a browser with ``token`` in its cookie."""
    app = create_app(plane, TOKEN)

    async def main() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        cookies = {"phalanx_token": token} if token else {}
        async with httpx.AsyncClient(transport=transport, base_url=BASE, cookies=cookies) as c:
            return await c.get(f"/ui/watch?{query}&timeoutSeconds=1")

    return asyncio.run(main())


def events_of(response: httpx.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    return [json.loads(line[5:]) for line in response.text.splitlines() if line.startswith("data:")]


def test_which_writes_touch_a_service_and_a_run(plane: ControlPlane) -> None:
    plane.apply(
        [
            job_manifest("replica-a", labels={SERVICE_LABEL: "svc"}, pod_set="w"),
            job_manifest("plain", labels={}, pod_set="w"),
        ]
    )
    services = LiveStream(plane.queries, "Service", 0, _never)
    cases = [
        ([("Service", "svc")], ["svc"]),
        ([("ServiceEndpoints", "svc")], ["svc"]),  # which replicas are ready
        ([("Job", "replica-a")], ["svc"]),  # its replica, by label
        ([("Job", "plain"), ("Queue", "q"), ("PipelineRun", "r")], []),
        ([("Service", "b"), ("Job", "replica-a"), ("Service", "b")], ["b", "svc"]),  # once each
    ]
    for changes, touched in cases:
        assert services.touched(changes) == touched, changes
    plane.delete("Job", "replica-a")  # its labels are gone; the stream remembers its owner
    assert services.touched([("Job", "replica-a")]) == ["svc"]
    runs = LiveStream(plane.queries, "PipelineRun", 0, _never, only="r1")
    assert runs.touched([("PipelineRun", "r1"), ("PipelineRun", "r2"), ("Job", "x")]) == ["r1"]


def test_a_service_whose_route_changed_is_touched(plane: ControlPlane) -> None:
    stream = LiveStream(plane.queries, "Service", 0, _never)
    assert stream.routes_changed({"a": "ready: r1", "b": "ready: -"}) == []  # as drawn
    assert stream.routes_changed({"a": "ready: r1", "b": "ready: r2"}) == ["b"]
    assert stream.routes_changed({"b": "ready: r2", "c": "ready: -"}) == ["a", "c"]
    assert stream.routes_changed({"b": "ready: r2", "c": "ready: -"}) == []
    one = LiveStream(plane.queries, "Service", 0, _never, only="a")
    one.routes_changed({})
    assert one.routes_changed({"a": "x", "b": "y"}) == ["a"]


def test_a_stream_sends_what_it_may_show_and_says_what_is_gone(plane: ControlPlane) -> None:
    start = plane.queries.revision()
    plane.apply([service("shown"), service("refused"), service("gone")])
    drawn = {"shown": "<section>shown</section>", "refused": "", "gone": None}

    async def draw(kind: str, name: str) -> str | None:
        assert kind == "Service"
        return drawn[name]

    async def collect() -> list[dict[str, Any]]:
        settings = LiveSettings(poll_s=0.05, timeout_s=0.3)
        stream = LiveStream(plane.queries, "Service", start, draw, settings=settings)
        chunks = [chunk async for chunk in stream.stream()]
        text = b"".join(chunks).decode()
        return [json.loads(line[5:]) for line in text.splitlines() if line.startswith("data:")]

    events = asyncio.run(collect())
    assert [(e["type"], e["name"], e.get("html")) for e in events] == [
        ("MODIFIED", "shown", "<section>shown</section>"),
        ("DELETED", "gone", None),
    ]


async def _never(kind: str, name: str) -> str | None:
    raise AssertionError("not drawn")


def test_a_service_is_sent_drawn_once_per_batch_of_writes_and_deleted(
    plane: ControlPlane,
) -> None:
    start = plane.queries.revision()
    plane.apply([service("svc")])
    plane.apply(
        [
            job_manifest("svc-r1", labels={SERVICE_LABEL: "svc"}, pod_set="w"),
            job_manifest("other", labels={}, pod_set="w"),
        ]
    )
    plane.delete("Service", "svc")
    events = events_of(stream_events(plane, f"kinds=Service&resourceVersion={start}"))
    # three writes touched svc (itself, its replica, its deletion): one event, as it is now
    assert [(e["type"], e["kind"], e["name"]) for e in events] == [("DELETED", "Service", "svc")]
    before = plane.queries.revision()
    plane.apply([service("svc2")])
    events = events_of(stream_events(plane, f"kinds=Service&resourceVersion={before}"))
    assert [(e["type"], e["name"]) for e in events] == [("MODIFIED", "svc2")]
    html = events[0]["html"]
    assert html.startswith('<section class="service" data-service="svc2" data-ready="0">')
    assert events[0]["resourceVersion"] == plane.queries.revision()


def test_runs_are_sent_as_rows_or_as_the_run_page(plane: ControlPlane) -> None:
    start = plane.queries.revision()
    plane.store.apply([run_object("r1", "Running"), run_object("r2", "Running")], [], 1.0)
    events = events_of(stream_events(plane, f"kinds=PipelineRun&resourceVersion={start}"))
    assert [(e["type"], e["name"]) for e in events] == [("MODIFIED", "r1"), ("MODIFIED", "r2")]
    row = events[0]["html"]
    assert row.startswith('<tr data-run="r1" data-phase="Running">')
    assert re.search(r"<td>2</td><td>1</td><td>0</td><td>0</td></tr>$", row)  # steps, done
    one = events_of(stream_events(plane, f"kinds=PipelineRun&name=r2&resourceVersion={start}"))
    assert [e["name"] for e in one] == ["r2"]
    assert 'data-step="second" data-state="Running"' in one[0]["html"]
    assert "<html" not in one[0]["html"]  # the run page's <main>, not a whole page


def test_the_stream_needs_a_signed_in_token(plane: ControlPlane) -> None:
    assert stream_events(plane, "kinds=Service", token=None).status_code == 401
    assert stream_events(plane, "kinds=PipelineRun", token="nope").status_code == 401


def test_live_pages_carry_the_revision_their_stream_starts_from(plane: ControlPlane) -> None:
    plane.apply([service("svc")])
    plane.store.apply([run_object("r1", "Succeeded")], [], 1.0)
    app = create_app(plane, TOKEN)
    revision = plane.queries.revision()

    async def main() -> None:
        transport = httpx.ASGITransport(app=app)
        cookies = {"phalanx_token": TOKEN}
        async with httpx.AsyncClient(transport=transport, base_url=BASE, cookies=cookies) as c:
            for path, kind in (
                ("/ui/services", "Service"),
                ("/ui/pipelineruns", "PipelineRun"),
                ("/ui/pipelineruns/r1", "PipelineRun"),
            ):
                page = (await c.get(path)).text
                assert f'data-watch="{kind}"' in page, path
                assert f'data-rv="{revision}"' in page, path
            assert 'data-run="r1"' in (await c.get("/ui/pipelineruns/r1")).text

    asyncio.run(main())
