"""The FastAPI application: REST under ``/api/v1``, OpenAPI at ``/docs``, ``/healthz``.

Routes are thin: they call one ControlPlane method and convert the view it returns with
``schemas``. The control plane is blocking (database, backend), so routes are plain ``def``
functions that FastAPI runs in its thread pool. Must not import client or cli.
"""

from __future__ import annotations

import hmac
import json
import os
from collections.abc import Mapping
from typing import Annotated

import yaml
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from phalanx import API_VERSION, __version__
from phalanx.api.errors import (
    BAD_REQUEST,
    UNAUTHORIZED,
    ApiRequestError,
    install_error_handlers,
    plain,
)
from phalanx.api.schemas import (
    ApplyOut,
    ApplyRequest,
    ErrorOut,
    FlavorOut,
    JobOut,
    LogsOut,
    NodeOut,
    QueueOut,
    VersionOut,
    apply_out,
    flavor_out,
    job_out,
    node_out,
    queue_out,
)
from phalanx.controllers.plane import ControlPlane
from phalanx.model.specs import FieldError, SpecError

API_PREFIX = "/api/v1"
YAML_MEDIA_TYPES = frozenset({"application/yaml", "application/x-yaml", "text/yaml", "text/x-yaml"})

_ERROR_RESPONSES: dict[int | str, dict[str, object]] = {
    status: {"model": ErrorOut, "description": description}
    for status, description in (
        (400, "Invalid request or manifest (codes BadRequest, SpecInvalid)"),
        (401, "Missing or wrong bearer token (code Unauthorized)"),
        (404, "No such object (code NotFound)"),
        (409, "The request contradicts the object's state (code Conflict)"),
    )
}


_bearer = HTTPBearer(auto_error=False, description="The token in <data_dir>/token")


class _TokenCheck:
    """A dependency that enforces ``Authorization: Bearer <token>`` when a token is set."""

    def __init__(self, token: str | None) -> None:
        self._token = token.encode() if token is not None else None

    def __call__(
        self, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
    ) -> None:
        if self._token is None:
            return
        challenge = {"WWW-Authenticate": "Bearer"}
        if credentials is None:
            raise ApiRequestError(
                401,
                UNAUTHORIZED,
                "missing bearer token: send 'Authorization: Bearer <token>' with the token "
                "from the server's data directory (<data_dir>/token)",
                challenge,
            )
        if not hmac.compare_digest(credentials.credentials.encode(), self._token):
            raise ApiRequestError(
                401,
                UNAUTHORIZED,
                "invalid bearer token: use the token from the server's data directory "
                "(<data_dir>/token)",
                challenge,
            )


def load_yaml_manifests(text: bytes, source: str) -> list[Mapping[str, object]]:
    """Return the mappings in a multi-document YAML text, skipping empty documents.

    Raises ApiRequestError (400) with the parser's line and column, or SpecError for a document
    that is not a mapping.
    """
    where = source or "<request>"
    try:
        documents = list(yaml.load_all(text, Loader=yaml.SafeLoader))
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
                    plain(document),
                    "must be a mapping with apiVersion, kind, metadata and spec",
                )
            )
            continue
        manifests.append({str(k): v for k, v in document.items()})
    if errors:
        raise SpecError(errors, source)
    return manifests


async def _apply_body(request: Request) -> tuple[list[Mapping[str, object]], str]:
    body = await request.body()
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
        data = json.loads(body or b"null")
    except ValueError as exc:
        raise ApiRequestError(400, BAD_REQUEST, f"the request body is not JSON: {exc}") from exc
    parsed = ApplyRequest.model_validate(data)
    return list(parsed.manifests), parsed.source


def _api_router(plane: ControlPlane, token: str | None) -> APIRouter:
    router = APIRouter(
        prefix=API_PREFIX,
        dependencies=[Depends(_TokenCheck(token))],
        responses=_ERROR_RESPONSES,
    )
    apply_body_schema = {
        "required": True,
        "content": {
            "application/json": {"schema": ApplyRequest.model_json_schema()},
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
    )
    async def apply(request: Request) -> list[ApplyOut]:
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
        results = await run_in_threadpool(plane.apply, manifests, source)
        return [apply_out(r) for r in results]

    @router.get("/jobs", summary="List jobs, optionally of one queue")
    def list_jobs(queue: str | None = None) -> list[JobOut]:
        return [job_out(j) for j in plane.list_jobs(queue)]

    @router.get("/jobs/{name}", summary="One job with its pods and events")
    def get_job(name: str) -> JobOut:
        return job_out(plane.get_job(name))

    @router.post("/jobs/{name}/cancel", summary="Stop a job's pods; the job stays, Cancelled")
    def cancel_job(name: str) -> JobOut:
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
    ) -> LogsOut:
        data, next_offset, finished = plane.read_logs(name, pod, attempt, offset)
        keep = complete_utf8_prefix(data)
        if len(data) > keep and (keep > 0 or not finished):
            # Hold back a character cut in half by the chunk boundary; the next read has it.
            next_offset -= len(data) - keep
            data, finished = data[:keep], False
        return LogsOut(
            data=data.decode("utf-8", errors="replace"), next_offset=next_offset, finished=finished
        )

    @router.get("/queues", summary="List queues with their quota use")
    def list_queues() -> list[QueueOut]:
        return [queue_out(q) for q in plane.list_queues()]

    @router.get("/queues/{name}", summary="One queue with its quota use")
    def get_queue(name: str) -> QueueOut:
        return queue_out(plane.get_queue(name))

    @router.delete("/queues/{name}", status_code=204, summary="Delete a queue no job uses")
    def delete_queue(name: str) -> None:
        plane.delete_queue(name)

    @router.get("/flavors", summary="List resource flavors")
    def list_flavors() -> list[FlavorOut]:
        return [flavor_out(f) for f in plane.list_flavors()]

    @router.delete("/flavors/{name}", status_code=204, summary="Delete a resource flavor")
    def delete_flavor(name: str) -> None:
        plane.delete_flavor(name)

    @router.get("/nodes", summary="List nodes with what is in use on them")
    def list_nodes() -> list[NodeOut]:
        return [node_out(n) for n in plane.list_nodes()]

    @router.get("/nodes/{name}", summary="One node with its devices and pods")
    def get_node(name: str) -> NodeOut:
        return node_out(plane.get_node(name))

    @router.post("/nodes/{name}/release", summary="Release a node from quarantine")
    def release_node(name: str) -> NodeOut:
        return node_out(plane.release_node(name))

    @router.get("/version", summary="Server version and accepted manifest apiVersion")
    def version() -> VersionOut:
        return VersionOut(version=__version__, api_version=API_VERSION)

    return router


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


def create_app(plane: ControlPlane, token: str | None) -> FastAPI:
    """Return the API application serving ``plane``.

    When ``token`` is set every ``/api/v1`` route requires ``Authorization: Bearer <token>``;
    ``/healthz``, ``/docs`` and ``/openapi.json`` stay open.
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
    app.include_router(_api_router(plane, token))

    @app.get("/healthz", summary="Liveness; no token needed")
    def healthz() -> dict[str, object]:
        health: dict[str, object] = {"status": "ok", "version": __version__, "pid": os.getpid()}
        reported = plain(plane.health())
        if isinstance(reported, dict):
            health.update(reported)
        return health

    return app
