"""The FastAPI application: REST under ``/api/v1``, OpenAPI at ``/docs``, ``/healthz``.

Routes are thin: writes call one ControlPlane method, reads one method of its read side
(``plane.queries``), and ``conversion`` turns the view into the JSON of ``schemas`` (the
TypedDicts the client shares). The control plane is blocking (database, backend), so routes
are plain ``def`` functions that FastAPI runs in its thread pool; the watch stream is async
and reads the store in worker threads (``watch``).

Lists stay JSON arrays; ``GET /jobs`` is paginated (``limit``, ``continue``) and every list
says in headers where the next page starts (``X-Continue``, absent on the last page) and at
which store revision it was read (``X-Resource-Version``, where a watch should start). Must
not import client or cli.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Annotated, cast

import yaml
from fastapi import APIRouter, Depends, FastAPI, Header, Query, Request, Response
from fastapi.security import HTTPBearer
from pydantic import TypeAdapter
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from phalanx import API_VERSION, __version__, kinds
from phalanx.api.authz import (
    Authorization,
    audit_objects,
    principal_of,
    redact_job,
)
from phalanx.api.conversion import (
    flavor_out,
    job_out,
    kind_out,
    node_out,
    queue_out,
)
from phalanx.api.errors import (
    BAD_REQUEST,
    ApiRequestError,
    install_error_handlers,
    plain,
)
from phalanx.api.fast_routes import (
    DEFAULT_PAGE_LIMIT,
    MAX_PAGE_LIMIT,
    FastRoutes,
    JobRoutes,
    label_selector,
    objects_of,
)
from phalanx.api.identity import identity_router
from phalanx.api.limits import DEFAULT_LIMITS as DEFAULT_API_LIMITS
from phalanx.api.limits import (
    BodySizeLimit,
    LimitExceededError,
    check_document,
    check_json_depth,
    truncate_text,
)
from phalanx.api.pipelines import pipelines_router
from phalanx.api.rendering import JsonBytes, json_bytes
from phalanx.api.schemas import (
    CONTINUE_HEADER,
    RESOURCE_VERSION_HEADER,
    ApplyOutcome,
    ApplyRequest,
    DoctorReport,
    ErrorInfo,
    EstimateInfo,
    FlavorInfo,
    JobInfo,
    KindInfo,
    LogChunk,
    NodeInfo,
    QueueInfo,
    VersionInfo,
    WatchEvent,
)
from phalanx.api.secrets import add_secret_routes
from phalanx.api.services import services_router
from phalanx.api.submissions import ApplyBatcher
from phalanx.api.ui import start_warm_up, ui_router
from phalanx.api.watch import WATCHED_KINDS, OpenWatches, Watch, WatchSettings
from phalanx.auth import AuditLog, Identity, kind_name, rule_for
from phalanx.controllers.plane import ControlPlane
from phalanx.model.specs import FieldError, SpecError
from phalanx.ops.metrics import PROMETHEUS_CONTENT_TYPE, registry_for
from phalanx.ops.metrics import render as render_metrics
from phalanx.ops.reports import doctor_report, estimates_report, parse_what_if
from phalanx.store import IdentityStore

API_PREFIX = "/api/v1"
YAML_MEDIA_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})

_ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorInfo, "description": description}
    for status, description in (
        (400, "Invalid request or manifest (codes BadRequest, SpecInvalid)"),
        (401, "Missing or wrong bearer token (code Unauthorized)"),
        (404, "No such object or kind (code NotFound)"),
        (409, "The request contradicts the object's state (code Conflict)"),
    )
}
_APPLY_REQUEST: TypeAdapter[ApplyRequest] = TypeAdapter(ApplyRequest)
_RESOURCE_VERSION_DOC = {
    "description": "The store's revision when the list was read: watch from it to miss nothing",
    "schema": {"type": "integer"},
}
_LIST_HEADERS: dict[int | str, dict[str, object]] = {
    200: {"headers": {RESOURCE_VERSION_HEADER: _RESOURCE_VERSION_DOC}}
}
_PAGE_HEADERS: dict[int | str, dict[str, object]] = {
    200: {
        "headers": {
            CONTINUE_HEADER: {
                "description": "Pass as `continue` to get the next page; absent on the last",
                "schema": {"type": "string"},
            },
            RESOURCE_VERSION_HEADER: _RESOURCE_VERSION_DOC,
        }
    }
}
# The types a watch event refers to are components already (response models of the lists).
_WATCH_EVENT_SCHEMA = {
    key: value
    for key, value in TypeAdapter(WatchEvent)
    .json_schema(ref_template="#/components/schemas/{model}")
    .items()
    if key != "$defs"
}
_SELECTOR_DOC = (
    "Only objects whose labels match: key=value, key!=value, key or !key, comma-separated "
    "(all must hold), e.g. team=a,tier!=batch"
)


class _TokenCheck(HTTPBearer):
    """The HTTPBearer security scheme, declared so that /docs and the OpenAPI document offer
    the token. It checks nothing itself: ``phalanx.api.authz.Authorization`` authenticates
    and authorizes every request, before any route (or dependency) runs."""

    def __init__(self, token: str | None) -> None:
        super().__init__(
            scheme_name="HTTPBearer",
            auto_error=False,
            description="A token from `phalanx token create`, or the admin token in "
            "<data_dir>/token",
        )

    async def __call__(self, request: Request) -> None:  # type: ignore[override]
        return None


def load_yaml_manifests(text: bytes, source: str) -> list[Mapping[str, object]]:
    """Return the mappings in a multi-document YAML text, skipping empty documents.

    Raises ApiRequestError (400) with the parser's line and column, or SpecError for a document
    that is not a mapping.
    """
    where = source or "<request>"
    try:
        documents = list(yaml.load_all(text, Loader=yaml.SafeLoader))
        check_document(documents, DEFAULT_API_LIMITS, where)
    except (LimitExceededError, RecursionError) as exc:
        raise _over_limit(exc, where) from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        position = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = exc.problem or exc.context or "invalid YAML"
        raise ApiRequestError(
            400, BAD_REQUEST, f"{where}{position}: invalid YAML: {problem}"
        ) from exc
    except yaml.YAMLError as exc:
        raise ApiRequestError(400, BAD_REQUEST, f"{where}: invalid YAML: {exc}") from exc
    manifests: list[Mapping[str, object]] = []
    errors: list[FieldError] = []
    # Indexes count non-empty documents, as the control plane's "documents[i]" paths do.
    for index, document in enumerate(d for d in documents if d is not None):
        if not isinstance(document, Mapping):
            errors.append(
                FieldError(
                    f"documents[{index}]",
                    document,
                    "must be a mapping with apiVersion, kind, metadata and spec",
                )
            )
            continue
        manifests.append({str(k): v for k, v in document.items()})
    if errors:
        raise SpecError(errors, source)
    return manifests


def _over_limit(exc: Exception, where: str) -> ApiRequestError:
    """A limit of phalanx.api.limits passed (or a document so deep that the parser itself
    gave up) as the 400 (413 for the body size) that answers it."""
    if isinstance(exc, LimitExceededError):
        code = "PayloadTooLarge" if exc.status == 413 else BAD_REQUEST
        return ApiRequestError(exc.status, code, str(exc))
    return ApiRequestError(
        400,
        BAD_REQUEST,
        f"{where}: the document nests too deeply to read; a manifest needs far fewer "
        f"than {DEFAULT_API_LIMITS.max_depth} levels",
    )


async def _apply_body(request: Request) -> tuple[list[Mapping[str, object]], str]:
    try:
        body = await request.body()
    except LimitExceededError as exc:
        raise _over_limit(exc, "the request body") from exc
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type in YAML_MEDIA_TYPES:
        source = request.query_params.get("source", "")
        return load_yaml_manifests(body, source), source
    if media_type not in ("", "application/json"):
        raise ApiRequestError(
            415,
            "UnsupportedMediaType",
            f"cannot apply a body of type {media_type!r}; send application/json "
            '({"manifests": [...]}) or application/yaml',
        )
    try:
        check_json_depth(body, DEFAULT_API_LIMITS, "the request body")
        data = json.loads(body or b"null")
    except (LimitExceededError, RecursionError) as exc:
        raise _over_limit(exc, "the request body") from exc
    except ValueError as exc:
        raise ApiRequestError(
            400, BAD_REQUEST, truncate_text(f"the request body is not JSON: {exc}", 1000)
        ) from exc
    parsed = _APPLY_REQUEST.validate_python(data)
    if not parsed["manifests"]:
        raise ApiRequestError(
            400,
            BAD_REQUEST,
            "invalid apply request: manifests: must hold at least one manifest",
        )
    return list(parsed["manifests"]), parsed.get("source", "")


def watched_kinds(text: str | None) -> list[str]:
    """Return the kind names a ``kinds`` parameter names (any name of a kind, comma-separated;
    all stored kinds when not given). Raises ApiRequestError (400) for an unknown kind (the
    message lists the known ones) or one that is not stored."""
    if not text:
        return list(WATCHED_KINDS)
    out: list[str] = []
    for part in (p for p in text.split(",") if p.strip()):
        try:
            kind = kinds.lookup(part)
        except kinds.UnknownKindError as exc:
            raise ApiRequestError(400, BAD_REQUEST, f"kinds: {exc}") from exc
        if kind.name not in WATCHED_KINDS:
            raise ApiRequestError(
                400,
                BAD_REQUEST,
                f"kinds: {kind.plural} are observed from the backend, not stored, so they have "
                f"no revisions to watch; watch {','.join(WATCHED_KINDS)} and poll "
                f"{API_PREFIX}/{kind.plural}",
            )
        out.append(kind.name)
    return out


def _api_router(
    plane: ControlPlane,
    token: str | None,
    is_stopping: Callable[[], bool],
    watch_settings: WatchSettings,
    open_watches: OpenWatches,
    job_routes: JobRoutes,
) -> APIRouter:
    router = APIRouter(
        prefix=API_PREFIX,
        dependencies=[Depends(_TokenCheck(token))],
        responses=_ERROR_RESPONSES,
    )
    queries = plane.queries
    apply_body_schema = {
        "required": True,
        "content": {
            "application/json": {"schema": _APPLY_REQUEST.json_schema()},
            "application/yaml": {
                "schema": {"type": "string", "description": "Multi-document YAML"}
            },
        },
    }

    @router.post(
        "/apply",
        summary="Create or update jobs, queues and flavors (all or nothing)",
        openapi_extra={
            "requestBody": apply_body_schema,
            "parameters": [
                {
                    "name": "source",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "string"},
                    "description": "Where a YAML body came from (a file name), for messages",
                }
            ],
        },
        response_model=list[ApplyOutcome],
    )
    async def apply(request: Request) -> Response:
        try:
            manifests, source = await _apply_body(request)
        except ValueError as exc:
            if isinstance(exc, SpecError):
                raise
            # pydantic's ValidationError of the JSON body
            raise ApiRequestError(400, BAD_REQUEST, f"invalid apply request: {exc}") from exc
        if not manifests:
            raise ApiRequestError(
                400, BAD_REQUEST, f"no manifests found in {source or 'the request body'}"
            )
        # Requests with a JSON body are answered by fast_routes.FastRoutes, through the same
        # JobRoutes.apply, unless their body is not a well-formed apply request.
        audit_objects(request, objects_of(manifests))
        principal = principal_of(request)
        return JsonBytes(await run_in_threadpool(job_routes.apply, principal, manifests, source))

    @router.get("/kinds", summary="The kinds of object, with every name each answers to")
    def list_kinds() -> list[KindInfo]:
        return [kind_out(k) for k in kinds.kinds()]

    @router.get(
        "/jobs",
        summary="One page of jobs, oldest first; of one queue, matching a label selector",
        responses=_PAGE_HEADERS,
        response_model=list[JobInfo],
    )
    def list_jobs(
        request: Request,
        queue: str | None = None,
        selector: Annotated[
            str | None, Query(alias="labelSelector", description=_SELECTOR_DOC)
        ] = None,
        limit: Annotated[
            int, Query(ge=1, le=MAX_PAGE_LIMIT, description="Jobs per page")
        ] = DEFAULT_PAGE_LIMIT,
        continue_token: Annotated[
            str,
            Query(
                alias="continue",
                description=f"The previous page's {CONTINUE_HEADER} header: the next page",
            ),
        ] = "",
    ) -> Response:
        # Usually answered by fast_routes.FastRoutes, through the same JobRoutes.page.
        body, headers = job_routes.page(
            principal_of(request), queue, selector, limit, continue_token
        )
        return JsonBytes(body, headers=headers)

    @router.get(
        "/jobs/{name}",
        summary="One job with its pods of every attempt and its events",
        response_model=JobInfo,
    )
    def get_job(name: str, request: Request) -> Response:
        job = redact_job(principal_of(request), job_out(queries.get_job(name)))
        return JsonBytes(json_bytes(job))

    @router.post("/jobs/{name}/cancel", summary="Stop a job's pods; the job stays, Cancelled")
    def cancel_job(name: str) -> JobInfo:
        return job_out(plane.cancel_job(name))

    @router.delete("/jobs/{name}", status_code=204, summary="Cancel and forget a job")
    def delete_job(name: str) -> None:
        plane.delete_job(name)

    @router.get("/jobs/{name}/logs", summary="Output of one pod, from a byte offset")
    def read_logs(
        name: str,
        pod: Annotated[str | None, Query(description="<podset>-<index>, e.g. worker-1")] = None,
        attempt: Annotated[int | None, Query(ge=0, description="Default: the latest")] = None,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> LogChunk:
        data, next_offset, finished = queries.read_logs(name, pod, attempt, offset)
        keep = complete_utf8_prefix(data)
        if len(data) > keep and (keep > 0 or not finished):
            # Hold back a character cut in half by the chunk boundary; the next read has it.
            next_offset -= len(data) - keep
            data, finished = data[:keep], False
        return {
            "data": data.decode("utf-8", errors="replace"),
            "next_offset": next_offset,
            "finished": finished,
        }

    @router.get(
        "/queues",
        summary="List queues with their quota use, matching a label selector",
        responses=_LIST_HEADERS,
    )
    def list_queues(
        response: Response,
        selector: Annotated[
            str | None, Query(alias="labelSelector", description=_SELECTOR_DOC)
        ] = None,
    ) -> list[QueueInfo]:
        wanted = label_selector(selector)
        response.headers[RESOURCE_VERSION_HEADER] = str(queries.revision())
        return [queue_out(q) for q in queries.list_queues(wanted)]

    @router.get("/queues/{name}", summary="One queue with its quota use")
    def get_queue(name: str) -> QueueInfo:
        return queue_out(queries.get_queue(name))

    @router.delete("/queues/{name}", status_code=204, summary="Delete a queue no job uses")
    def delete_queue(name: str) -> None:
        plane.delete_queue(name)

    @router.get(
        "/flavors",
        summary="List resource flavors, matching a label selector",
        responses=_LIST_HEADERS,
    )
    def list_flavors(
        response: Response,
        selector: Annotated[
            str | None, Query(alias="labelSelector", description=_SELECTOR_DOC)
        ] = None,
    ) -> list[FlavorInfo]:
        wanted = label_selector(selector)
        response.headers[RESOURCE_VERSION_HEADER] = str(queries.revision())
        return [flavor_out(f) for f in queries.flavors(wanted)]

    @router.get("/flavors/{name}", summary="One resource flavor")
    def get_flavor(name: str) -> FlavorInfo:
        return flavor_out(queries.get_flavor(name))

    @router.delete("/flavors/{name}", status_code=204, summary="Delete a resource flavor")
    def delete_flavor(name: str) -> None:
        plane.delete_flavor(name)

    @router.get("/nodes", summary="List nodes with what is in use on them")
    def list_nodes() -> list[NodeInfo]:
        return [node_out(n) for n in queries.list_nodes()]

    @router.get("/nodes/{name}", summary="One node with its devices and pods")
    def get_node(name: str) -> NodeInfo:
        return node_out(queries.get_node(name))

    @router.post("/nodes/{name}/release", summary="Release a node from quarantine")
    def release_node(name: str) -> NodeInfo:
        return node_out(plane.release_node(name))

    @router.get("/doctor", summary="Root causes across layers, for everything")
    def doctor_all() -> DoctorReport:
        return cast("DoctorReport", doctor_report(plane))

    @router.get(
        "/doctor/{kind}/{name}",
        summary="Root causes for one job, node or queue (kind: job|node|queue)",
    )
    def doctor_one(kind: str, name: str) -> DoctorReport:
        return cast("DoctorReport", doctor_report(plane, kind, name))

    @router.get("/estimates", summary="When each pending job should start, and what it waits on")
    def estimates(
        queue_gpus: Annotated[
            list[str] | None,
            Query(description="What if: QUEUE=GPUS sets a queue's nominal GPUs (repeatable)"),
        ] = None,
        drain: Annotated[
            list[str] | None, Query(description="What if: this node took no new pods (repeatable)")
        ] = None,
    ) -> list[EstimateInfo]:
        what_if = parse_what_if(queue_gpus or (), drain or ())
        return cast("list[EstimateInfo]", estimates_report(plane, what_if))

    @router.get("/version", summary="Server version and accepted manifest apiVersion")
    def version() -> VersionInfo:
        return {"version": __version__, "api_version": API_VERSION}

    @router.get(
        "/watch",
        summary="Changes to jobs, queues and flavors after a revision, as server-sent events",
        description=(
            "Each write after `resourceVersion` is one event whose `data` is a WatchEvent "
            "(`id` is its revision): ADDED, MODIFIED (with the object as lists show it) or "
            "DELETED. Start from the `X-Resource-Version` header of a list to miss nothing; "
            "without `resourceVersion` (or `Last-Event-ID`) the watch starts now. Comment "
            "lines are heartbeats. The stream ends after `timeoutSeconds` (resume from the "
            "last revision seen), on server shutdown, or with one ERROR event (code Expired) "
            "when the revision is no longer in the log: list again."
        ),
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "text/event-stream of WatchEvent",
                "content": {
                    "text/event-stream": {
                        "schema": {"type": "string"},
                        "itemSchema": _WATCH_EVENT_SCHEMA,
                    }
                },
            }
        },
    )
    async def watch(
        request: Request,
        resource_version: Annotated[
            int | None,
            Query(alias="resourceVersion", ge=0, description="Report writes after this one"),
        ] = None,
        kinds_text: Annotated[
            str | None,
            Query(
                alias="kinds",
                description="Comma-separated kinds (any of their names), default "
                + ",".join(WATCHED_KINDS),
            ),
        ] = None,
        timeout_seconds: Annotated[
            float | None,
            Query(alias="timeoutSeconds", gt=0, description="End the stream after this long"),
        ] = None,
        last_event_id: Annotated[
            str | None,
            Header(alias="Last-Event-ID", description="What a reconnecting EventSource sends"),
        ] = None,
    ) -> StreamingResponse:
        watched = watched_kinds(kinds_text)
        after = resource_version
        if after is None and last_event_id and last_event_id.strip().isdigit():
            after = int(last_event_id)
        if after is None:
            after = await run_in_threadpool(queries.revision)
        settings = watch_settings
        if timeout_seconds is not None:
            settings = WatchSettings(
                settings.poll_s,
                settings.heartbeat_s,
                min(timeout_seconds, settings.timeout_s),
                settings.batch,
            )
        principal = principal_of(request)
        stream = Watch(
            queries,
            watched,
            after,
            settings,
            is_stopping,
            open_watches,
            redact=lambda job: redact_job(principal, job),
        ).stream()
        return StreamingResponse(
            stream,
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @router.delete(
        "/{kind}/{name}",
        status_code=204,
        summary="Delete an object of any applied kind (what it owns goes after it)",
        description="`kind` is any name of a kind (see /kinds): jobs, queue, rf, …",
    )
    def delete_object(kind: str, name: str) -> None:
        plane.delete(kind, name)

    add_secret_routes(router, plane)
    return router


def _document_refusals(app: FastAPI) -> None:
    """Say in the OpenAPI document what the middleware and the shared error handlers may
    answer on any route: 401 (no valid token) and 403 (the role or owner does not allow it)
    where a token is needed, 404 where the path names an object, 400 for invalid input
    (never FastAPI's 422), and 413 where a body is read; routes added later are covered, as
    the middleware covers them."""
    build = app.openapi

    def openapi() -> dict[str, object]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorInfo"}}}
        refusals = {
            "401": "Missing, unknown, expired or revoked bearer token (code Unauthorized)",
            "403": "The caller's role, or the object's owner, does not allow it (code Forbidden)",
        }
        paths = document.get("paths", {})
        assert isinstance(paths, dict)
        for path, operations in paths.items():
            for method, operation in operations.items():
                if not isinstance(operation, dict):
                    continue
                responses = operation.setdefault("responses", {})
                if "422" in responses:  # validation errors answer 400 here (errors.py)
                    del responses["422"]
                    responses.setdefault(
                        "400",
                        {"description": "Invalid request (code BadRequest)", "content": error},
                    )
                if rule_for(method, path, kind_name).is_open:
                    continue
                for status, description in refusals.items():
                    responses.setdefault(status, {"description": description, "content": error})
                if "{" in path:  # an object named in the path may not exist (errors.py)
                    responses.setdefault(
                        "404", {"description": "No such object (code NotFound)", "content": error}
                    )
                if "requestBody" in operation:
                    responses.setdefault(
                        "413",
                        {"description": "Body too large (code PayloadTooLarge)", "content": error},
                    )
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def complete_utf8_prefix(data: bytes) -> int:
    """Return the length of ``data`` without a trailing, incomplete UTF-8 sequence."""
    for back in range(1, min(4, len(data)) + 1):
        byte = data[-back]
        if byte & 0xC0 == 0x80:  # continuation byte: look further back for the lead byte
            continue
        if byte < 0x80:
            return len(data)
        needed = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
        return len(data) - back if back < needed else len(data)
    return len(data)


def create_app(
    plane: ControlPlane,
    token: str | None,
    *,
    is_stopping: Callable[[], bool] = lambda: False,
    watch: WatchSettings | None = None,
    identity: Identity | None = None,
    audit: AuditLog | None = None,
) -> FastAPI:
    """Return the API application serving ``plane``.

    When ``token`` is set every route but ``/healthz``, ``/docs`` and ``/openapi.json`` needs
    ``Authorization: Bearer <token>``: the admin token ``token``, or a user's token from the
    store (``identity``, by default the users in ``plane.store``); what each role may do is
    ``phalanx.auth.policy``'s table, applied by ``phalanx.api.authz`` to every route,
    including routes added later. Mutating calls are recorded in ``audit`` (by default a log
    in ``plane.store``; ``app.state.audit``, which the caller closes). ``is_stopping`` tells
    open watch streams that the server is shutting down (they end within one poll);
    ``watch`` tunes them.
    """
    app = FastAPI(
        title="phalanx",
        version=__version__,
        summary="Queue, gang-schedule and place AI workloads on GPUs.",
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    install_error_handlers(app)
    job_routes = JobRoutes(plane)
    # Innermost of the middleware: the busiest requests, answered after authorization and
    # the body limit like any route (fast_routes).
    # Concurrent JSON applies are written together (api/submissions.py).
    app.state.submissions = ApplyBatcher(job_routes)
    app.add_middleware(
        FastRoutes,
        routes=job_routes,
        handlers=lambda: app.exception_handlers,
        submissions=app.state.submissions,
    )
    app.add_middleware(BodySizeLimit, limits=DEFAULT_API_LIMITS)
    rows = IdentityStore(plane.store)
    identity = identity or Identity(rows, token)
    audit = audit or AuditLog(rows)
    app.state.identity, app.state.audit = identity, audit
    # Added last, so it runs first: nothing is read or routed for a caller it refuses.
    app.add_middleware(
        Authorization,
        identity=identity,
        store=plane.store,
        audit=audit,
        routes=lambda: app.router.routes,
    )
    open_watches = OpenWatches()
    # Before the API router: its DELETE /{kind}/{name} would take /users/{name}.
    app.include_router(identity_router(identity, audit, _TokenCheck(token)))
    app.include_router(
        _api_router(plane, token, is_stopping, watch or WatchSettings(), open_watches, job_routes)
    )
    app.include_router(pipelines_router(plane), dependencies=[Depends(_TokenCheck(token))])
    app.include_router(services_router(plane), dependencies=[Depends(_TokenCheck(token))])
    # The web dashboard at / (pages under /ui): reads through the routes above.
    app.include_router(ui_router(plane.queries.data_dir / "reports", plane.queries, is_stopping))

    _document_refusals(app)
    metrics_registry = registry_for(plane)

    @app.get(
        "/metrics",
        summary="Prometheus metrics (text format); the API token when one is set",
        dependencies=[Depends(_TokenCheck(token))],
        response_class=Response,
        responses={200: {"content": {PROMETHEUS_CONTENT_TYPE: {}}}},
    )
    def metrics() -> Response:
        return Response(render_metrics(metrics_registry), media_type=PROMETHEUS_CONTENT_TYPE)

    @app.get(
        "/healthz",
        summary="Liveness; no token needed. Without a valid token only the status is shown",
    )
    def healthz(request: Request) -> dict[str, object]:
        reported = plain(plane.health())
        status = reported.get("status", "ok") if isinstance(reported, dict) else "ok"
        if identity.is_enabled and principal_of(request) is None:
            return {"status": status}
        health: dict[str, object] = {"status": "ok", "version": __version__, "pid": os.getpid()}
        if isinstance(reported, dict):
            health.update(reported)
        health["watches"] = open_watches.count
        return health

    # A fresh server's first request would build every route's models (api.ui.warm_up).
    start_warm_up(app, plane.queries)
    return app
