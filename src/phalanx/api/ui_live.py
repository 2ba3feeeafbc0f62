"""The dashboard's live streams behind ``GET /ui/watch`` (server-sent events).

Two sources, one event format for the page script (``phalanx/web/static/app.js``):

- Jobs, queues and flavors: ``relay`` streams ``GET /api/v1/watch`` of the API application,
  called in-process with the browser's token; each event carries the object as the API's
  lists show it, and the jobs page patches one row from it.
- Services and pipeline runs (``LIVE_KINDS``), which the API's watch does not report: a
  ``LiveStream`` reads the store's revision log, learns which Services or runs a batch of
  writes touched, reads each of them once *through the API* with the browser's token (so
  authentication and roles decide what is sent, as for a page) and sends it drawn as the
  page draws it: ``{"type": "MODIFIED" | "DELETED", "kind", "name", "resourceVersion",
  "html"}``. A Service is touched by a write of the Service, of its ServiceEndpoints (which
  replicas are ready) or of a Job labelled as its replica; a run by a write of the run (its
  reconciler writes each step's state there). The log gives only (kind, name, revision),
  never content, so the cost is the writes since the last read plus one API read per touched
  object: O(changes), not O(objects). Which replicas are ready is the Service controller's
  memory, not a write (but with several control planes on one store), so a Service stream
  also reads the router's routes (``GET /api/v1/routes``: a cached list, a few hundred bytes
  per Service) each poll and redraws a Service whose route changed.

Must not import client or cli.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Message

from phalanx.api.watch import comment
from phalanx.controllers.queries import Queries
from phalanx.model.service import SERVICE_LABEL

SERVICE, PIPELINE_RUN = "Service", "PipelineRun"
#: The kinds only the dashboard's stream reports (the API's watch reports the others).
LIVE_KINDS = (SERVICE, PIPELINE_RUN)
#: What a write of each logged kind touches: the object of the same name, of this kind.
_TOUCHES = {SERVICE: SERVICE, "ServiceEndpoints": SERVICE, PIPELINE_RUN: PIPELINE_RUN}
#: Replica jobs whose Service is remembered per stream (a deleted job's labels are gone).
_OWNERS_KEPT = 4096

#: Draws one object for a stream: the HTML to send, None when it is gone (404), "" when the
#: API refuses it to the token (nothing is sent), or raises NotAllowedError when the token is
#: no longer accepted (401: the stream ends).
Draw = Callable[[str, str], Awaitable[str | None]]
#: What the Service controller holds in memory and writes to no log (which replicas are
#: ready, unless control planes share a store): each Service's route, as {service: text}.
Routes = Callable[[], Awaitable[Mapping[str, str]]]


class NotAllowedError(Exception):
    """The API refused the token (401: the stream ends; the page signs in again)."""


@dataclass(frozen=True, slots=True)
class LiveSettings:
    """How often a stream reads the log, when it sends a heartbeat, how long it lasts (the
    browser reconnects from the last event's id), and how many writes it reads at once."""

    poll_s: float = 0.25
    heartbeat_s: float = 5.0
    timeout_s: float = 600.0
    batch: int = 500


class LiveStream:
    """One browser's stream of ``kind`` (one of LIVE_KINDS), after revision ``after``; only
    the object named ``only`` when given. ``stream()`` is the body."""

    def __init__(
        self,
        queries: Queries,
        kind: str,
        after: int,
        draw: Draw,
        *,
        only: str = "",
        settings: LiveSettings | None = None,
        is_stopping: Callable[[], bool] = lambda: False,
        routes: Routes | None = None,
    ) -> None:
        self.queries = queries
        self.routes = routes
        self._routes_seen: dict[str, str] | None = None
        self.kind = kind
        self.after = after
        self.draw = draw
        self.only = only
        self.settings = settings or LiveSettings()
        self.is_stopping = is_stopping
        self._owners: OrderedDict[str, str] = OrderedDict()  # replica job -> its Service

    def touched(self, changes: Iterable[tuple[str, str]]) -> list[str]:
        """Return the names of ``self.kind`` that writes of (kind, name) touched, in order,
        once each (reads the labels of replica jobs not seen before)."""
        names: dict[str, None] = {}
        jobs: list[str] = []
        for kind, name in changes:
            if _TOUCHES.get(kind) == self.kind:
                names[name] = None
            elif kind == "Job" and self.kind == SERVICE:
                jobs.append(name)
        unknown = sorted({j for j in jobs if j not in self._owners})
        for i in range(0, len(unknown), 500):
            for record in self.queries.store.list_jobs(names=unknown[i : i + 500], manifests=False):
                self._owners[record.name] = record.labels.get(SERVICE_LABEL, "")
        for job in jobs:
            owner = self._owners.get(job, "")
            if owner:
                self._owners.move_to_end(job)
                names[owner] = None
        while len(self._owners) > _OWNERS_KEPT:
            self._owners.popitem(last=False)
        return [n for n in names if not self.only or n == self.only]

    def routes_changed(self, routes: Mapping[str, str]) -> list[str]:
        """Return the Services whose route differs from the last ``routes`` seen (none the
        first time: the page was drawn from the same state)."""
        before, self._routes_seen = self._routes_seen, dict(routes)
        if before is None:
            return []
        changed = sorted(n for n in before.keys() | routes.keys() if before.get(n) != routes.get(n))
        return [n for n in changed if not self.only or n == self.only]

    def _read(self) -> tuple[list[str], str]:
        """Read the next writes (in a worker thread): the names they touched, and an error
        message when the log no longer holds the revision after ``after``."""
        changes, oldest = self.queries.changes(self.after, self.settings.batch)
        if oldest and self.after + 1 < oldest:
            return [], (
                f"resourceVersion {self.after} is too old: the revision log now starts at "
                f"{oldest}; load the page again"
            )
        if changes:
            self.after = changes[-1].revision
        return self.touched((c.kind, c.name) for c in changes), ""

    async def stream(self) -> AsyncIterator[bytes]:
        """Yield one event per touched object (drawn afresh), heartbeats, and at most one
        ERROR event (the log moved past the stream: the page reloads)."""
        yield comment(f"watching {self.kind} after {self.after}")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.timeout_s
        quiet_since = loop.time()
        while not self.is_stopping() and loop.time() < deadline:
            names, expired = await run_in_threadpool(self._read)
            if expired:
                error = {"code": "Expired", "message": expired}
                yield _event({"type": "ERROR", "resourceVersion": self.after, "error": error})
                return
            if self.routes is not None:
                names += [n for n in self.routes_changed(await self.routes()) if n not in names]
            for name in names:
                try:
                    html = await self.draw(self.kind, name)
                except NotAllowedError:
                    return
                if html == "":
                    continue
                event: dict[str, object] = {
                    "type": "DELETED" if html is None else "MODIFIED",
                    "kind": self.kind,
                    "name": name,
                    "resourceVersion": self.after,
                }
                if html is not None:
                    event["html"] = html
                yield _event(event)
                quiet_since = loop.time()
            if loop.time() - quiet_since >= self.settings.heartbeat_s:
                yield comment("heartbeat")
                quiet_since = loop.time()
            await asyncio.sleep(self.settings.poll_s)


def _event(event: Mapping[str, object]) -> bytes:
    data = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
    return f"id: {event['resourceVersion']}\ndata: {data}\n\n".encode()


def streaming(body: AsyncIterator[bytes]) -> StreamingResponse:
    """Return ``body`` as an event stream that proxies do not buffer."""
    return StreamingResponse(
        body,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def unauthorized() -> Response:
    """The answer to a stream the token may not open: the page signs in again."""
    return Response(
        json.dumps({"error": {"code": "Unauthorized", "message": "sign in again"}}),
        401,
        media_type="application/json",
    )


async def relay(
    app: ASGIApp, path: str, query_string: str, token: str | None, request: Request
) -> Response:
    """Call ``path`` of ``app`` in-process as ``token`` and stream its answer back as it
    comes (httpx's ASGI transport would wait for the end of a stream that never ends)."""
    headers = [(b"host", b"phalanx.internal")]
    if token:
        headers.append((b"authorization", f"Bearer {token}".encode()))
    last_id = request.headers.get("last-event-id")
    if last_id:
        headers.append((b"last-event-id", last_id.encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query_string.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 0),
        "server": ("phalanx.internal", 80),
    }
    messages: asyncio.Queue[Message] = asyncio.Queue()
    gone = asyncio.Event()

    async def receive() -> Message:
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        await messages.put(message)

    async def call() -> None:
        await app(scope, receive, send)

    task = asyncio.create_task(call())
    first = asyncio.create_task(messages.get())
    await asyncio.wait({task, first}, return_when=asyncio.FIRST_COMPLETED)
    if not first.done():
        first.cancel()
        task.result()  # raises what the app raised
        return Response(status_code=502)
    start = first.result()
    status = int(start.get("status", 500))
    response_headers = {
        k.decode(): v.decode()
        for k, v in start.get("headers", [])
        if k.lower() not in (b"content-length", b"transfer-encoding")
    }
    if status == 401:
        gone.set()
        task.cancel()
        return unauthorized()

    async def body() -> AsyncIterator[bytes]:
        try:
            while True:
                message = await messages.get()
                if message["type"] != "http.response.body":
                    continue
                chunk = message.get("body", b"")
                if chunk:
                    yield chunk
                if not message.get("more_body", False):
                    return
        finally:
            gone.set()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(task, timeout=5)

    return StreamingResponse(body(), status_code=status, headers=response_headers)
