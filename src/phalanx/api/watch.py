"""``GET /api/v1/watch``: the store's revision log as server-sent events.

Each write after the revision asked for becomes one event, in revision order::

    id: 42
    data: {"type": "MODIFIED", "kind": "Job", "name": "train", "resourceVersion": 42,
           "object": {...the job with every field: as GET /jobs lists it, with what list
                      items leave out put back (schemas.full_job_item)...}}

The stream polls the log (``Queries.changes``) every ``poll_s`` in a worker thread, so the
event loop never waits on the database, and sends a comment line (``: heartbeat``) when it
has been quiet for ``heartbeat_s`` so that proxies keep the connection. It ends when the
client goes away (starlette cancels it), when the server shuts down (``is_stopping``), after
``timeout_s`` (the client resumes from the last ``resourceVersion`` it saw), or with one
``ERROR`` event when the revision asked for is no longer in the log (compacted: Kubernetes'
"resourceVersion too old", 410) or is newer than the store's: the client lists again.

An ADDED or MODIFIED change whose object is gone by the time it is read is skipped: the
DELETED event that follows says so. Must not import client or cli.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Collection
from dataclasses import dataclass
from typing import cast

from starlette.concurrency import run_in_threadpool

from phalanx.api.conversion import flavor_out, job_out, queue_out
from phalanx.api.schemas import DELETED, ERROR, FlavorInfo, JobInfo, QueueInfo, WatchEvent
from phalanx.controllers.errors import NotFoundError
from phalanx.controllers.queries import Queries
from phalanx.kinds import FLAVOR, JOB, QUEUE

#: The kinds a watch reports, by default all of them (nodes are observed, not stored).
WATCHED_KINDS = (JOB.name, QUEUE.name, FLAVOR.name)
EXPIRED = "Expired"


@dataclass(frozen=True, slots=True)
class WatchSettings:
    """How often a watch reads the log, how long it may be quiet before a heartbeat, how
    long one stream lasts at most, and how many changes it reads at once."""

    poll_s: float = 0.15
    heartbeat_s: float = 5.0
    timeout_s: float = 1800.0
    batch: int = 500


@dataclass(slots=True)
class OpenWatches:
    """How many watch streams are open (``/healthz`` reports it). Changed only on the
    event loop's thread."""

    count: int = 0


def encode_event(event: WatchEvent) -> bytes:
    """Return one server-sent event: ``id`` (the revision) and the event as JSON ``data``."""
    data = json.dumps(event, separators=(",", ":"), ensure_ascii=False, default=str)
    return f"id: {event['resourceVersion']}\ndata: {data}\n\n".encode()


def comment(text: str) -> bytes:
    """Return an SSE comment line (clients ignore it; proxies see traffic)."""
    return f": {text}\n\n".encode()


def expired_event(revision: int, message: str) -> WatchEvent:
    """Return the ERROR event that ends a watch the log can no longer serve."""
    return {
        "type": ERROR,
        "kind": "",
        "name": "",
        "resourceVersion": revision,
        "error": {"code": EXPIRED, "message": message, "details": [], "source": ""},
    }


def object_view(queries: Queries, kind: str, name: str) -> JobInfo | QueueInfo | FlavorInfo | None:
    """Return the object ``kind``/``name`` as lists show it (a job with every field, none
    left out as list items leave them: the dashboard's script reads ``reason.message``), or
    None if it is gone."""
    try:
        if kind == JOB.name:
            return job_out(queries.get_job(name, with_events=False))
        if kind == QUEUE.name:
            return queue_out(queries.get_queue(name))
        if kind == FLAVOR.name:
            return flavor_out(queries.get_flavor(name))
    except NotFoundError:
        return None
    return None


class Watch:
    """One client's watch of ``kinds`` from revision ``after``; ``stream()`` is the body."""

    def __init__(
        self,
        queries: Queries,
        kinds: Collection[str],
        after: int,
        settings: WatchSettings,
        is_stopping: Callable[[], bool],
        open_watches: OpenWatches,
        redact: Callable[[JobInfo], JobInfo] | None = None,
    ) -> None:
        #: Hides what the watcher may not see of a job (others' env: phalanx.api.authz).
        self.redact = redact
        self.queries = queries
        self.kinds = frozenset(kinds)
        self.after = after
        self.settings = settings
        self.is_stopping = is_stopping
        self.open_watches = open_watches

    def _read(self) -> tuple[list[bytes], bool, bool]:
        """Read the next changes (in a worker thread): their encoded events, whether the log
        has moved past ``after`` (then the one event is the ERROR), and whether there may be
        more to read at once (the batch was full)."""
        changes, oldest = self.queries.changes(self.after, self.settings.batch)
        if oldest and self.after + 1 < oldest:
            message = (
                f"resourceVersion {self.after} is too old: the revision log now starts at "
                f"{oldest}; list again and watch from the list's resourceVersion (the "
                "X-Resource-Version header of GET /api/v1/jobs, /queues or /flavors)"
            )
            return [encode_event(expired_event(oldest, message))], True, False
        out: list[bytes] = []
        views: dict[tuple[str, str], JobInfo | QueueInfo | FlavorInfo | None] = {}
        for change in changes:
            self.after = change.revision
            if change.kind not in self.kinds:
                continue
            event: WatchEvent = {
                "type": change.type,
                "kind": change.kind,
                "name": change.name,
                "resourceVersion": change.revision,
            }
            if change.type != DELETED:
                key = (change.kind, change.name)
                if key not in views:
                    views[key] = object_view(self.queries, change.kind, change.name)
                view = views[key]
                if view is None:
                    continue  # deleted since; its DELETED event follows
                if self.redact is not None and change.kind == JOB.name:
                    view = self.redact(cast("JobInfo", view))
                event["object"] = view
            out.append(encode_event(event))
        return out, False, len(changes) == self.settings.batch

    async def stream(self) -> AsyncIterator[bytes]:
        """Yield the events, heartbeats and at most one ERROR; see the module docstring."""
        self.open_watches.count += 1
        try:
            async for chunk in self._stream():
                yield chunk
        finally:
            self.open_watches.count -= 1

    async def _stream(self) -> AsyncIterator[bytes]:
        settings = self.settings
        yield comment(f"watching {','.join(sorted(self.kinds))} after {self.after}")
        newest = await run_in_threadpool(self.queries.revision)
        if self.after > newest:
            message = (
                f"resourceVersion {self.after} is newer than the server's newest revision "
                f"({newest}): it comes from another store; list again and watch from the "
                "list's resourceVersion"
            )
            yield encode_event(expired_event(newest, message))
            return
        deadline = time.monotonic() + settings.timeout_s
        quiet_since = time.monotonic()
        while not self.is_stopping() and time.monotonic() < deadline:
            chunks, expired, is_full = await run_in_threadpool(self._read)
            for chunk in chunks:
                yield chunk
                quiet_since = time.monotonic()
            if expired:
                return
            if is_full:
                continue
            if time.monotonic() - quiet_since >= settings.heartbeat_s:
                yield comment("heartbeat")
                quiet_since = time.monotonic()
            await asyncio.sleep(settings.poll_s)
