"""Error responses: every failure is JSON ``{"error": {code, message, details}}``.

Maps the control plane's exceptions to HTTP statuses (SpecError 400 ``SpecInvalid``,
NotFoundError and UnknownKindError 404, ConflictError 409, the auth package's AccessDeniedError
403 and UnauthenticatedError 401) and FastAPI's own (validation 400
``BadRequest``, unknown route 404). Must not import client or cli.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from phalanx.api.limits import DEFAULT_LIMITS, LimitExceededError, bounded_plain, truncate_text
from phalanx.api.schemas import ErrorDetailInfo, ErrorInfo
from phalanx.auth import AccessDeniedError, UnauthenticatedError
from phalanx.controllers.errors import ConflictError, NotFoundError
from phalanx.kinds import UnknownKindError
from phalanx.model.specs import SpecError

log = logging.getLogger(__name__)

BAD_REQUEST = "BadRequest"
SPEC_INVALID = "SpecInvalid"
NOT_FOUND = "NotFound"
CONFLICT = "Conflict"
UNAUTHORIZED = "Unauthorized"
FORBIDDEN = "Forbidden"
INTERNAL = "Internal"

_CODES_BY_STATUS = {
    400: BAD_REQUEST,
    401: UNAUTHORIZED,
    403: FORBIDDEN,
    404: NOT_FOUND,
    405: "MethodNotAllowed",
    409: CONFLICT,
    413: "PayloadTooLarge",
    415: "UnsupportedMediaType",
    422: BAD_REQUEST,
}


class ApiRequestError(Exception):
    """Raised by routes for a request the API itself rejects (bad YAML, missing token)."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


def plain(value: object) -> object:
    """Return ``value`` as JSON-safe data: containers recursively, anything else as text."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Sequence | set | frozenset) and not isinstance(value, bytes):
        return [plain(v) for v in value]
    return str(value)


def error_response(
    status: int,
    code: str,
    message: str,
    details: Sequence[ErrorDetailInfo] = (),
    source: str = "",
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Return the JSON error response every failure uses, never large: the message is cut
    at ``max_message_chars`` and the details at ``max_details`` entries, each with a note
    saying what was left out (phalanx.api.limits)."""
    limits = DEFAULT_LIMITS
    kept = [
        ErrorDetailInfo(
            path=truncate_text(d["path"], limits.max_value_chars),
            value=bounded_plain(d["value"], limits),
            message=truncate_text(d["message"], limits.max_value_chars * 4),
        )
        for d in details[: limits.max_details]
    ]
    if len(details) > limits.max_details:
        left_out = len(details) - limits.max_details
        kept.append(
            ErrorDetailInfo(path="", value=None, message=f"[truncated: {left_out} more problems]")
        )
    body: ErrorInfo = {
        "error": {
            "code": code,
            "message": truncate_text(message, limits.max_message_chars),
            "details": kept,
            "source": truncate_text(source, limits.max_value_chars),
        }
    }
    return JSONResponse(body, status_code=status, headers=dict(headers or {}))


def _spec_error(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SpecError)
    details = [
        ErrorDetailInfo(path=e.path, value=bounded_plain(e.value), message=e.message)
        for e in exc.errors
    ]
    count = len(details)
    message = f"{count} problem{'s' if count != 1 else ''} in the manifests: {exc}"
    return error_response(400, SPEC_INVALID, message, details, exc.source)


def _not_found(_: Request, exc: Exception) -> JSONResponse:
    return error_response(404, NOT_FOUND, str(exc))


def _conflict(_: Request, exc: Exception) -> JSONResponse:
    return error_response(409, CONFLICT, str(exc))


def _bad_value(_: Request, exc: Exception) -> JSONResponse:
    return error_response(400, BAD_REQUEST, str(exc))


def _over_limit(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, LimitExceededError)
    code = "PayloadTooLarge" if exc.status == 413 else BAD_REQUEST
    return error_response(exc.status, code, str(exc))


def _denied(_: Request, exc: Exception) -> JSONResponse:
    return error_response(403, FORBIDDEN, str(exc))


def _unauthenticated(_: Request, exc: Exception) -> JSONResponse:
    return error_response(401, UNAUTHORIZED, str(exc), headers={"WWW-Authenticate": "Bearer"})


def _problem(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiRequestError)
    return error_response(exc.status, exc.code, exc.message, headers=exc.headers)


def _validation(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    details = [
        ErrorDetailInfo(
            path=".".join(str(part) for part in err.get("loc", ())),
            value=bounded_plain(err.get("input")),
            message=str(err.get("msg", "")),
        )
        for err in exc.errors()
    ]
    summary = "; ".join(f"{d['path']}: {d['message']}" for d in details)
    return error_response(400, BAD_REQUEST, f"invalid request: {summary}", details)


def _http(_: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = _CODES_BY_STATUS.get(exc.status_code, BAD_REQUEST if exc.status_code < 500 else INTERNAL)
    return error_response(exc.status_code, code, str(exc.detail), headers=exc.headers)


def _internal(request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled error serving %s %s", request.method, request.url.path)
    return error_response(
        500, INTERNAL, f"internal error: {type(exc).__name__}: {exc}; see the server log"
    )


def install_error_handlers(app: FastAPI) -> None:
    """Register the handlers that turn exceptions into ``{"error": ...}`` responses."""
    app.add_exception_handler(SpecError, _spec_error)
    app.add_exception_handler(NotFoundError, _not_found)
    app.add_exception_handler(UnknownKindError, _not_found)
    app.add_exception_handler(ConflictError, _conflict)
    # Other ValueErrors from the control plane reject the caller's input (e.g. a pod name
    # that is not <podset>-<index>); they are not server faults.
    app.add_exception_handler(ValueError, _bad_value)
    app.add_exception_handler(AccessDeniedError, _denied)
    app.add_exception_handler(UnauthenticatedError, _unauthenticated)
    app.add_exception_handler(LimitExceededError, _over_limit)
    app.add_exception_handler(ApiRequestError, _problem)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(StarletteHTTPException, _http)
    app.add_exception_handler(Exception, _internal)
