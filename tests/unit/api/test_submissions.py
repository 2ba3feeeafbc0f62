"""Group commit of concurrent applies (api/submissions.py, ControlPlane.apply_many,
Store.apply_many): requests that wait together are written in one transaction, each is
answered only once its transaction has committed, and each keeps its own outcome."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from conftest import TOKEN
from phalanx.api.submissions import ApplyBatcher
from phalanx.auth import Principal
from phalanx.controllers.errors import ConflictError
from phalanx.controllers.plane import ControlPlane
from phalanx.model.specs import SpecError
from phalanx.testing import job_manifest, queue_manifests

QUEUE = queue_manifests(gpu=4, cpu=8, memory="8Gi")


class SlowFirstWrite:
    """Wraps ``store.apply_many``: the first call (``started`` once it runs) waits until
    ``queued`` requests wait for the writer behind it (at most 10 s), so that they are
    written together next; records each call's job names, and the names committed so far
    (added once a call has returned, i.e. after its commit)."""

    def __init__(self, plane: ControlPlane, app: FastAPI, queued: int) -> None:
        self.real = plane.store.apply_many
        self.batcher: ApplyBatcher = app.state.submissions
        self.queued = queued
        self.started = threading.Event()
        self.calls: list[list[str]] = []
        self.committed: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, requests: Sequence[Any]) -> list[list[str] | Exception]:
        names = [job[0] for _, jobs, _ in requests for job in jobs]
        with self._lock:
            is_first = not self.calls
            self.calls.append(names)
        if is_first:
            self.started.set()
            deadline = time.monotonic() + 10
            while self.batcher.waiting < self.queued and time.monotonic() < deadline:
                time.sleep(0.01)
        out = self.real(requests)
        with self._lock:
            self.committed.update(
                n
                for (_, jobs, _), o in zip(requests, out, strict=True)
                if not isinstance(o, Exception)
                for n in (j[0] for j in jobs)
            )
        return out


async def post_all(
    app: FastAPI, bodies: Sequence[Mapping[str, object]], write: SlowFirstWrite, check: Any
) -> list[Any]:
    """POST the first body to /api/v1/apply, then, once its write has started, the others at
    once, on one event loop; ``check(body, response)`` runs as each answer arrives. Returns
    the responses in order."""
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://phalanx.test",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as http:

        async def one(i: int, body: Mapping[str, object]) -> httpx.Response:
            while i > 0 and not write.started.is_set():  # the first is written alone
                await asyncio.sleep(0.005)
            response = await http.post("/api/v1/apply", content=json.dumps(body))
            check(body, response)
            return response

        return list(await asyncio.gather(*(one(i, b) for i, b in enumerate(bodies))))


def test_concurrent_applies_share_a_transaction_and_are_answered_after_its_commit(
    plane: ControlPlane, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    plane.apply(QUEUE)
    names = [f"g-{i}" for i in range(8)]
    write = SlowFirstWrite(plane, app, queued=7)
    monkeypatch.setattr(plane.store, "apply_many", write)
    seen_stored: dict[str, bool] = {}

    def check(body: Mapping[str, Any], response: httpx.Response) -> None:
        name = body["manifests"][0]["metadata"]["name"]
        # At the moment the answer arrives, its write must be committed and readable.
        seen_stored[name] = name in write.committed and plane.store.get_job(name) is not None

    bodies = [{"manifests": [job_manifest(n)]} for n in names]
    responses = asyncio.run(post_all(app, bodies, write, check))
    assert [r.status_code for r in responses] == [200] * 8
    assert [r.json()[0]["action"] for r in responses] == ["created"] * 8
    assert seen_stored == dict.fromkeys(names, True)
    # The first went alone; the seven that came while it was written went together.
    assert [sorted(c) for c in write.calls] == [["g-0"], names[1:]]
    assert app.state.submissions.batches == 2
    assert sorted(j.name for j in plane.store.list_jobs()) == sorted(names)


def test_each_request_of_a_batch_keeps_its_own_outcome(
    plane: ControlPlane, app: FastAPI, monkeypatch: pytest.MonkeyPatch
) -> None:
    plane.apply([*QUEUE, job_manifest("taken")])
    write = SlowFirstWrite(plane, app, queued=4)
    monkeypatch.setattr(plane.store, "apply_many", write)
    bad = job_manifest("bad")
    bad["spec"] = {**bad["spec"], "priority": "high"}  # type: ignore[dict-item]
    changed = job_manifest("taken", labels={"other": "labels"})
    bodies = [
        {"manifests": [job_manifest("first")]},
        {"manifests": [job_manifest("ok-1")]},
        {"manifests": [bad]},
        {"manifests": [job_manifest("ok-2"), changed]},  # refused whole: nothing of it
        {"manifests": [job_manifest("ok-3")]},
    ]
    responses = asyncio.run(post_all(app, bodies, write, lambda *_: None))
    codes = [
        (r.status_code, r.json()[0]["action"] if r.status_code == 200 else "") for r in responses
    ]
    assert codes == [(200, "created"), (200, "created"), (400, ""), (409, ""), (200, "created")]
    assert responses[2].json()["error"]["code"] == "SpecInvalid"
    assert "spec.priority" in responses[2].text
    assert responses[3].json()["error"]["code"] == "Conflict"
    assert 'job "taken" already exists' in responses[3].json()["error"]["message"]
    # The valid ones and the conflicting one were written in one call, the invalid one
    # never reached the store.
    assert write.calls == [["first"], ["ok-1", "ok-2", "taken", "ok-3"]]
    stored = {j.name for j in plane.store.list_jobs()}
    assert stored == {"taken", "first", "ok-1", "ok-3"}


def test_apply_many_answers_each_request_in_order(plane: ControlPlane) -> None:
    plane.apply(QUEUE)
    never_fits = job_manifest(
        "huge", resources={"cpu": "100m", "memory": "64Mi", "nvidia.com/gpu": 3}
    )
    outcomes = plane.apply_many(
        [
            ([job_manifest("a"), never_fits], "one.yaml"),
            ([{"kind": "Nope"}], "two.yaml"),
            ([job_manifest("a")], ""),  # the same job again: unchanged
            ([job_manifest("b"), job_manifest("a", labels={"x": "y"})], ""),
        ]
    )
    first, second, third, fourth = outcomes
    assert not isinstance(first, Exception)
    assert [(r.name, r.action) for r in first] == [("a", "created"), ("huge", "created")]
    # Warnings are found per job: the 1-GPU job fits a 2-GPU node, the 3-GPU one never does.
    assert first[0].warnings == ()
    assert [w.code.value for w in first[1].warnings] == ["NeverFits"]
    assert isinstance(second, SpecError) and second.source == "two.yaml"
    assert not isinstance(third, Exception) and [r.action for r in third] == ["unchanged"]
    assert isinstance(fourth, ConflictError)
    assert plane.store.get_job("b") is None  # its request was refused whole


class FakeRoutes:
    """``JobRoutes.apply_many`` stand-in: answers each request with its source, or fails
    the whole batch while ``fail`` is set."""

    def __init__(self) -> None:
        self.fail: Exception | None = None
        self.batches: list[list[str]] = []

    def apply_many(
        self, requests: Sequence[tuple[Principal | None, list[Mapping[str, object]], str]]
    ) -> list[bytes | Exception]:
        self.batches.append([source for _, _, source in requests])
        if self.fail is not None:
            raise self.fail
        return [
            ValueError(source) if source.startswith("bad") else source.encode()
            for _, _, source in requests
        ]


def test_a_failed_batch_fails_its_requests_and_the_writer_goes_on_then_ends_when_idle() -> None:
    routes = FakeRoutes()
    batcher = ApplyBatcher(routes, idle_s=0.05)  # type: ignore[arg-type]

    async def run(sources: list[str]) -> list[bytes | BaseException]:
        return list(
            await asyncio.gather(
                *(batcher.apply(None, [{}], s) for s in sources), return_exceptions=True
            )
        )

    out = asyncio.run(run(["a", "bad-b", "c"]))
    assert out[0] == b"a" and out[2] == b"c"
    assert isinstance(out[1], ValueError) and str(out[1]) == "bad-b"
    routes.fail = RuntimeError("disk full")
    failed = asyncio.run(run(["x", "y"]))
    assert [type(e).__name__ for e in failed] == ["RuntimeError", "RuntimeError"]
    routes.fail = None
    assert asyncio.run(run(["z"])) == [b"z"]
    deadline = time.monotonic() + 5
    while batcher._thread is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert batcher._thread is None  # no thread left behind by an idle application
    assert batcher.requests == 6


def test_a_batch_holds_at_most_max_manifests_unless_one_request_is_larger() -> None:
    routes = FakeRoutes()
    batcher = ApplyBatcher(routes, max_manifests=3, idle_s=0.05)  # type: ignore[arg-type]
    gate = threading.Event()
    real = routes.apply_many

    def slow(requests: Any) -> list[bytes | Exception]:
        gate.wait(5)
        return real(requests)

    routes.apply_many = slow  # type: ignore[method-assign]

    async def run() -> list[bytes]:
        sizes = {"big": 5, "a": 1, "b": 2, "c": 1, "d": 1}
        tasks = []
        for source, size in sizes.items():
            tasks.append(asyncio.ensure_future(batcher.apply(None, [{}] * size, source)))
            await asyncio.sleep(0.01)
        gate.set()
        return list(await asyncio.gather(*tasks))

    assert asyncio.run(run()) == [b"big", b"a", b"b", b"c", b"d"]
    assert routes.batches == [["big"], ["a", "b"], ["c", "d"]]
