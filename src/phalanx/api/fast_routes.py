"""The two busiest requests, answered without FastAPI's routing, parameter solving and
response building: ``POST /api/v1/apply`` with a JSON body and ``GET /api/v1/jobs`` (a page).

``FastRoutes`` is an ASGI middleware installed innermost of the application's own: the
``Authorization`` middleware has already authenticated, authorized and (for apply) wrapped
the call for the audit log, and ``BodySizeLimit`` bounds the body, exactly as for any route.
It answers only requests it recognises in full (a JSON body of ``{"manifests": [...],
"source": "..."}``; the list's known parameters, each at most once, with a plain ``limit`` in
range); anything else, YAML bodies and invalid input included, goes on to the FastAPI routes,
which answer as before (a body already read is handed on). Both ways run the same code,
``JobRoutes``: a page in one worker thread per request, an apply here through the writer
thread of ``api/submissions.py``, which writes concurrent applies in one transaction (the
FastAPI route in a worker thread); errors become the application's own error responses
through its exception handlers. The routes stay declared in FastAPI, so
``/openapi.json`` and ``/docs`` describe them.

Measured on the API benchmark (bench/api_bench.py), the FastAPI way cost several hundred
microseconds of CPU more per request than the work itself. Must not import client or cli.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from phalanx.api.authz import redact_jobs_json
from phalanx.api.errors import BAD_REQUEST, ApiRequestError
from phalanx.api.limits import DEFAULT_LIMITS, LimitExceededError, check_json_depth
from phalanx.api.rendering import JobJson, apply_json
from phalanx.api.schemas import CONTINUE_HEADER, RESOURCE_VERSION_HEADER
from phalanx.auth import Principal, admit_apply, stored_jobs
from phalanx.controllers.plane import ControlPlane
from phalanx.model.metadata import LabelSelector, parse_selector

if TYPE_CHECKING:
    from phalanx.api.submissions import ApplyBatcher

__all__ = ["APPLY_PATH", "JOBS_PATH", "FastRoutes", "JobRoutes", "label_selector"]

APPLY_PATH = "/api/v1/apply"
JOBS_PATH = "/api/v1/jobs"
#: Page size of GET /jobs when the request gives none, and the largest it accepts.
DEFAULT_PAGE_LIMIT = 500
MAX_PAGE_LIMIT = 5000
_PAGE_PARAMETERS = frozenset({"queue", "labelSelector", "limit", "continue"})
_APPLY_FIELDS = frozenset({"manifests", "source"})
_JSON = (b"content-type", b"application/json")


def label_selector(text: str | None) -> LabelSelector | None:
    """Return the selector of a ``labelSelector`` parameter (None when not given). Raises
    ApiRequestError (400) naming the bad term and the syntax."""
    if not text:
        return None
    try:
        return parse_selector(text)
    except ValueError as exc:
        raise ApiRequestError(400, BAD_REQUEST, f"labelSelector: {exc}") from exc


def objects_of(manifests: list[Mapping[str, object]]) -> list[tuple[str, str]]:
    """(kind, name) of each manifest, for the audit log ("" where a manifest lacks one)."""
    out: list[tuple[str, str]] = []
    for manifest in manifests:
        metadata = manifest.get("metadata")
        name = metadata.get("name") if isinstance(metadata, Mapping) else ""
        out.append((str(manifest.get("kind") or ""), str(name or "")))
    return out


class JobRoutes:
    """What apply and the jobs list do, blocking (the store, the control plane): called in a
    worker thread by both ways in. Thread-safe."""

    def __init__(self, plane: ControlPlane) -> None:
        self.plane = plane
        self.job_json = JobJson(plane.queries)
        self.has_quick_reads = plane.store.has_quick_reads

    def apply(
        self, principal: Principal | None, manifests: list[Mapping[str, object]], source: str
    ) -> bytes:
        """The JSON list of apply outcomes, after the caller's rights are checked and the
        manifests stamped with their owners (phalanx.auth.admit_apply). Raises what
        ``ControlPlane.apply`` and ``admit_apply`` raise."""
        (outcome,) = self.apply_many([(principal, manifests, source)])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def apply_many(
        self, requests: Sequence[tuple[Principal | None, list[Mapping[str, object]], str]]
    ) -> list[bytes | Exception]:
        """``apply`` for several requests (principal, manifests, source) at once, written in
        one store transaction (``ControlPlane.apply_many``): for each, its JSON, or the
        error ``apply`` would raise for it. Returns once every written request is
        committed."""
        admitted: list[tuple[list[Mapping[str, object]], str] | Exception] = []
        # One read of the stored jobs that any request names, not one per request.
        checked = [m for principal, given, _ in requests if principal is not None for m in given]
        stored = stored_jobs(self.plane.store, checked) if checked else {}
        for principal, given, source in requests:
            try:
                manifests = given
                if principal is not None:
                    manifests = admit_apply(self.plane.store, principal, given, stored)
                admitted.append((manifests, source))
            except Exception as exc:  # this request's refusal; the others go on
                admitted.append(exc)
        applied = iter(self.plane.apply_many([a for a in admitted if isinstance(a, tuple)]))
        out: list[bytes | Exception] = []
        for item in admitted:
            outcome = item if isinstance(item, Exception) else next(applied)
            out.append(outcome if isinstance(outcome, Exception) else apply_json(outcome))
        return out

    def page(
        self,
        principal: Principal | None,
        queue: str | None,
        selector: str | None,
        limit: int,
        continue_token: str,
    ) -> tuple[bytes, dict[str, str]]:
        """(JSON array of one page of jobs, response headers): env values hidden that the
        caller may not see; ``X-Resource-Version``, and ``X-Continue`` unless it is the last
        page. Raises ApiRequestError for a bad selector, ValueError for a foreign token."""
        body, next_token, revision = self.job_json.page(
            queue, label_selector(selector), limit, continue_token
        )
        return redact_jobs_json(principal, body), _page_headers(next_token, revision)

    def cached_page(
        self,
        principal: Principal | None,
        queue: str | None,
        selector: str | None,
        limit: int,
        continue_token: str,
    ) -> tuple[bytes, dict[str, str]] | None:
        """As ``page``, when the store reads quickly (``Store.has_quick_reads``), the caller
        sees every env value (nothing to hide) and the page is kept at the store's current
        revision (``JobJson.cached``); None otherwise. Quick enough for the event loop's
        thread: one small read, no rendering. Raises as ``page``."""
        if not self.has_quick_reads or principal is None or not principal.is_privileged:
            return None
        found = self.job_json.cached(queue, label_selector(selector), limit, continue_token)
        if found is None:
            return None
        body, next_token, revision = found
        return body, _page_headers(next_token, revision)


Handler = Callable[[Request, Exception], Any]


class FastRoutes:
    """The ASGI middleware; see the module docstring. ``handlers`` returns the application's
    exception handlers (read per error, so handlers added later count)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: JobRoutes,
        handlers: Callable[[], Mapping[Any, Handler]],
        submissions: ApplyBatcher | None = None,
    ) -> None:
        self.app = app
        self.routes = routes
        self._handlers = handlers
        #: Writes applies together with concurrent ones (api/submissions.py); None: each in
        #: a worker thread of its own.
        self.submissions = submissions

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            method, path = scope["method"], scope["path"]
            if method == "POST" and path == APPLY_PATH:
                await self._apply(scope, receive, send)
                return
            if method == "GET" and path == JOBS_PATH:
                await self._page(scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _apply(self, scope: Scope, receive: Receive, send: Send) -> None:
        media_type = ""
        for key, value in scope["headers"]:
            if key == b"content-type":
                media_type = value.decode("latin-1").split(";")[0].strip().lower()
        if scope.get("query_string") or media_type not in ("", "application/json"):
            await self.app(scope, receive, send)
            return
        try:
            body = await _read_body(receive)
        except LimitExceededError as exc:
            await self._error(exc, scope, receive, send)
            return
        request = _apply_request(body)
        if request is None:  # FastAPI's route answers it, with its own messages
            await self.app(scope, _replay(body, receive), send)
            return
        manifests, source = request
        state: MutableMapping[str, Any] = scope.setdefault("state", {})
        state["audit_objects"] = objects_of(manifests)
        principal = state.get("principal")
        caller = principal if isinstance(principal, Principal) else None
        try:
            if self.submissions is not None:
                out = await self.submissions.apply(caller, manifests, source)
            else:
                out = await run_in_threadpool(self.routes.apply, caller, manifests, source)
        except Exception as exc:
            await self._error(exc, scope, receive, send)
            return
        await _send_json(send, out, {})

    async def _page(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = _page_query(scope.get("query_string", b""))
        if query is None:
            await self.app(scope, receive, send)
            return
        principal = scope.get("state", {}).get("principal")
        args = (
            principal if isinstance(principal, Principal) else None,
            query.get("queue"),
            query.get("labelSelector"),
            int(query.get("limit", DEFAULT_PAGE_LIMIT)),
            query.get("continue", ""),
        )
        try:
            # A page kept at the current revision is answered here, without the hop to a
            # worker thread (whose hand-offs of the interpreter cost more than the answer).
            found = self.routes.cached_page(*args)
            if found is None:
                found = await run_in_threadpool(self.routes.page, *args)
            body, headers = found
        except Exception as exc:
            await self._error(exc, scope, receive, send)
            return
        await _send_json(send, body, headers)

    async def _error(self, exc: Exception, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer ``exc`` as the application's handler for its class does; an exception no
        handler but the catch-all takes is raised, for ServerErrorMiddleware (500)."""
        handlers = self._handlers()
        handler = next(
            (handlers[c] for c in type(exc).__mro__ if c is not Exception and c in handlers),
            None,
        )
        if handler is None:
            raise exc
        response = handler(Request(scope, receive), exc)
        if inspect.isawaitable(response):
            response = await response
        await response(scope, receive, send)


async def _read_body(receive: Receive) -> bytes:
    parts: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":  # the client went away
            break
        parts.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(parts)


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that gives ``body`` first (already read), then whatever comes next."""
    is_given = False

    async def replay() -> Message:
        nonlocal is_given
        if is_given:
            return await receive()
        is_given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def _apply_request(body: bytes) -> tuple[list[Mapping[str, object]], str] | None:
    """(manifests, source) of a well-formed JSON apply request: an object of ``manifests``
    (at least one, each an object) and optionally ``source`` (a string); None for anything
    else."""
    try:
        check_json_depth(body, DEFAULT_LIMITS, "the request body")
        data = json.loads(body)
    except (LimitExceededError, RecursionError, ValueError):
        return None
    if not isinstance(data, dict) or not data.keys() <= _APPLY_FIELDS:
        return None
    manifests, source = data.get("manifests"), data.get("source", "")
    if not isinstance(manifests, list) or not manifests or not isinstance(source, str):
        return None
    if not all(isinstance(m, dict) for m in manifests):
        return None
    return manifests, source


def _page_query(query_string: bytes) -> dict[str, str] | None:
    """The parameters of a plain jobs list query, each known and given at most once, with
    ``limit`` digits in range; None for anything else."""
    pairs = parse_qsl(query_string.decode("latin-1"), keep_blank_values=True)
    query = dict(pairs)
    if len(query) != len(pairs) or not query.keys() <= _PAGE_PARAMETERS:
        return None
    limit = query.get("limit")
    if limit is not None and not (
        limit.isascii() and limit.isdigit() and 1 <= int(limit) <= MAX_PAGE_LIMIT
    ):
        return None
    return query


def _page_headers(next_token: str, revision: int) -> dict[str, str]:
    """``X-Resource-Version``, and ``X-Continue`` unless it is the last page."""
    headers = {RESOURCE_VERSION_HEADER: str(revision)}
    if next_token:
        headers[CONTINUE_HEADER] = next_token
    return headers


async def _send_json(send: Send, body: bytes, headers: Mapping[str, str]) -> None:
    raw = [_JSON, (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": 200, "headers": raw})
    await send({"type": "http.response.body", "body": body})
