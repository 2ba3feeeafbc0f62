"""JSON the routes send as bytes, skipping FastAPI's response validation and serialisation.

Routes declare their response model (so ``/openapi.json`` and the client's types say what
they send) but return ``JsonBytes`` built here from ``conversion``'s TypedDicts: validating
``list[JobInfo]`` of a 100-job page cost more than reading it. A unit test validates what
``conversion`` builds against the schemas and compares it with these bytes, so the two cannot
drift apart silently.

``JobJson`` keeps each job's list-item JSON (``schemas.job_item``: without the fields that hold
their default or repeat another: about 30 % fewer bytes for a pending job, and a client's
parsing of a page costs about in proportion) by (job id, resourceVersion): every write of a job
or its pods moves its resourceVersion on, so a cached rendering is current. Jobs holding
capacity are rendered afresh each time: their progress comes from files their pods write,
which move no version. Whole pages are kept by the store's revision, for ``cached``: a page
asked for again before any write is answered with one small read. Must not import client or cli.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Sequence
from json.encoder import encode_basestring as _string  # a str as json.dumps writes it
from typing import Any

from pydantic import TypeAdapter
from starlette.responses import Response

from phalanx.api.conversion import apply_out, job_out, reason_out
from phalanx.api.schemas import job_item
from phalanx.controllers.queries import Queries
from phalanx.controllers.state import HOLDING
from phalanx.controllers.views import ApplyResult
from phalanx.model.metadata import LabelSelector

# What pydantic writes for what the standard library's json refuses (NaN, infinity: null).
_ANY: TypeAdapter[Any] = TypeAdapter(Any)


class JsonBytes(Response):
    """A response whose body is JSON already."""

    media_type = "application/json"


def json_bytes(value: object) -> bytes:
    """Return ``value`` (plain JSON types, as ``conversion`` builds) as compact UTF-8 JSON, as
    FastAPI's own responses write it."""
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    except (TypeError, ValueError):  # NaN or infinity in free-form facts, or a stray type
        return _ANY.dump_json(value)
    return text.encode()


def apply_json(results: Sequence[ApplyResult]) -> bytes:
    """``json_bytes([apply_out(r) for r in results])``, the same bytes, with each distinct set
    of warnings encoded once: the jobs of a batch of one template share their warning (the
    same Reason objects, see ``ControlPlane._warnings``), and encoding it again for each job
    was most of the answer's cost."""
    encoded: dict[tuple[int, ...], str] = {}
    parts: list[str] = []
    try:
        for result in results:
            # By the warnings' identities: ``results`` holds them, so no id is reused meanwhile.
            key = tuple(map(id, result.warnings))
            warnings = encoded.get(key)
            if warnings is None:
                warnings = encoded[key] = _dumps([reason_out(w) for w in result.warnings])
            parts.append(
                f'{{"kind":{_string(result.kind)},"name":{_string(result.name)},'
                f'"action":{_string(result.action)},"warnings":{warnings}}}'
            )
    except (TypeError, ValueError):  # as json_bytes: what the standard library refuses
        return json_bytes([apply_out(r) for r in results])
    return f"[{','.join(parts)}]".encode()


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


class JobJson:
    """Pages of jobs as JSON arrays, from cached list items; see the module docstring.
    Thread-safe: routes run in FastAPI's thread pool."""

    #: Renderings kept, least recently used first out (about 2 KiB each): the first pages,
    #: which clients poll, and the pages a client walks through.
    CACHE_SIZE = 2048

    #: Whole pages kept by (store revision, queue, selector, limit, continue token): the pages
    #: clients poll between writes. A page with a job holding capacity is not kept.
    PAGE_CACHE_SIZE = 16

    def __init__(self, queries: Queries) -> None:
        self._queries = queries
        self._items: OrderedDict[tuple[int, int], bytes] = OrderedDict()
        self._pages: OrderedDict[
            tuple[int, str | None, LabelSelector | None, int, str], tuple[bytes, str, int]
        ] = OrderedDict()
        self._lock = threading.Lock()

    def cached(
        self,
        queue: str | None,
        selector: LabelSelector | None,
        limit: int,
        continue_token: str,
    ) -> tuple[bytes, str, int] | None:
        """What ``page`` answers, if that page was built at the store's current revision
        (read now: one small query) and kept; None otherwise. Every write moves the revision
        on, and a page is built from reads made after its revision was read, so a page kept
        under the current revision holds every write up to it."""
        memo = (self._queries.store.revision(), queue, selector, limit, continue_token)
        with self._lock:
            found = self._pages.get(memo)
            if found is not None:
                self._pages.move_to_end(memo)
            return found

    def page(
        self,
        queue: str | None,
        selector: LabelSelector | None,
        limit: int,
        continue_token: str,
    ) -> tuple[bytes, str, int]:
        """(JSON array of the page's jobs as lists show them, continue token, revision): as
        ``Queries.page_jobs``, whose ValueError for a foreign continue token it raises."""
        keys = self._queries.page_job_keys(queue, selector, limit, continue_token)
        parts: dict[int, bytes] = {}
        with self._lock:
            for key in keys.items:
                item = self._items.get(key)
                if item is not None:
                    self._items.move_to_end(key)
                    parts[key[0]] = item
        missing = [key for key in keys.items if key[0] not in parts]
        is_kept = True
        if missing:
            for job_id, view in self._queries.job_views(missing).items():
                item = json_bytes(job_item(job_out(view)))
                parts[job_id] = item
                if view.phase.value in HOLDING:
                    is_kept = False
                    continue
                with self._lock:
                    self._items[(job_id, view.metadata.resource_version)] = item
                    if len(self._items) > self.CACHE_SIZE:
                        self._items.popitem(last=False)
        # A job deleted since the page was picked is left out, as page_jobs does.
        body = b",".join(parts[job_id] for job_id, _ in keys.items if job_id in parts)
        out = (b"[" + body + b"]", keys.continue_token, keys.resource_version)
        if is_kept:
            memo = (keys.resource_version, queue, selector, limit, continue_token)
            with self._lock:
                self._pages[memo] = out
                if len(self._pages) > self.PAGE_CACHE_SIZE:
                    self._pages.popitem(last=False)
        return out
