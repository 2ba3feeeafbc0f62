"""Authentication, authorization and audit for every HTTP request, in one ASGI middleware.

It finds the route a request will reach (its template, e.g. ``/api/v1/jobs/{name}``), takes
the rule of ``phalanx.auth.policy`` for method and template (default-deny for routes the
table does not list, including routes other modules add later and mounted apps), resolves
the caller from ``Authorization: Bearer <token>`` (or, for reads only, the ``phalanx_token``
cookie the web UI may set), and answers 401/403 before the route runs. Owner-only routes look
the object's owner up in the store. The caller is left in ``request.state.principal`` (None
on open routes called without a valid token). Every mutating call is then recorded in the
audit log with its result. Must not import client or cli.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, MutableMapping, Sequence
from typing import Any, cast

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from phalanx.api.errors import FORBIDDEN, UNAUTHORIZED, error_response
from phalanx.api.rendering import json_bytes
from phalanx.api.schemas import JobInfo
from phalanx.auth import (
    AccessDeniedError,
    AuditLog,
    Identity,
    Principal,
    Role,
    UnauthenticatedError,
    check_owner,
    kind_name,
    rule_for,
)
from phalanx.auth.policy import READ_METHODS, Rule
from phalanx.store import AuditRecord, Store

COOKIE = "phalanx_token"
_CHALLENGE = {"WWW-Authenticate": "Bearer"}
#: Routes matched per (method, path), at most this many remembered.
_MATCH_CACHE_SIZE = 4096


def principal_of(request: Request) -> Principal | None:
    """The caller the middleware resolved (None on an open route without a valid token)."""
    principal = getattr(request.state, "principal", None)
    return principal if isinstance(principal, Principal) else None


def audit_objects(request: Request, objects: list[tuple[str, str]]) -> None:
    """Name the objects a mutating call acted on, for its audit records (an apply names
    every manifest's kind and name); by default the route's kind and name parameters."""
    request.state.audit_objects = objects


def find_route(
    routes: Sequence[BaseRoute], scope: Scope, prefix: str = ""
) -> tuple[str, dict[str, Any], Match] | None:
    """(template, path parameters, match) of the route ``scope`` reaches: the first full
    match (a partial one, of another method, when there is none), None when nothing
    matches. Descends into included routers (which FastAPI may keep as routers rather than
    copying their routes) and names a mounted app's paths ``<mount>/{path}``."""
    partial: tuple[str, dict[str, Any], Match] | None = None
    for route in routes:
        inner = getattr(route, "original_router", None)
        if inner is not None:
            context = getattr(route, "include_context", None)
            include_prefix = str(getattr(context, "prefix", "") or "")
            path = str(scope["path"])
            if include_prefix and not path.startswith(include_prefix):
                continue
            child_scope = {**scope, "path": path[len(include_prefix) :]}
            found = find_route(inner.routes, child_scope, prefix + include_prefix)
        else:
            match, child = route.matches(scope)
            if match == Match.NONE:
                continue
            template = prefix + str(getattr(route, "path", ""))
            if isinstance(route, Mount):
                template = template.rstrip("/") + "/{path}"
            found = (template, dict(child.get("path_params", {})), match)
        if found is None:
            continue
        if found[2] == Match.FULL:
            return found
        partial = partial or found
    return partial


def _token(scope: Scope, is_read: bool) -> str:
    cookie: str = ""
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    for key, value in headers:
        if key == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and credentials.strip():
                return credentials.strip()
            return ""
        if key == b"cookie" and is_read:
            for part in value.decode("latin-1").split(";"):
                name, _, content = part.strip().partition("=")
                if name == COOKIE:
                    cookie = content
    return cookie


class Authorization:
    """The ASGI middleware; ``routes`` returns the application's routes (read per request,
    so routes added after the middleware was installed are matched too)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        identity: Identity,
        store: Store,
        audit: AuditLog | None,
        routes: Callable[[], list[BaseRoute]],
    ) -> None:
        self.app = app
        self.identity = identity
        self.store = store
        self.audit = audit
        self._routes = routes
        self._matches: dict[tuple[str, str], tuple[str, dict[str, Any]]] = {}

    def _match(self, scope: Scope) -> tuple[str, dict[str, Any]]:
        key = (scope["method"], scope["path"])
        hit = self._matches.get(key)
        if hit is not None:
            return hit
        found = find_route(self._routes(), scope)
        result = (found[0], found[1]) if found is not None else (str(scope["path"]), {})
        if len(self._matches) >= _MATCH_CACHE_SIZE:
            self._matches.clear()
        self._matches[key] = result
        return result

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        is_read = method in READ_METHODS
        template, params = self._match(scope)
        rule = rule_for(method, template, kind_name)
        state: MutableMapping[str, Any] = scope.setdefault("state", {})
        principal: Principal | None = None
        try:
            principal = await self._principal(scope, rule, is_read)
            state["principal"] = principal
            if principal is not None and not rule.is_open:
                await self._authorize(principal, rule, params, method)
        except UnauthenticatedError as exc:
            await error_response(401, UNAUTHORIZED, str(exc), headers=_CHALLENGE)(
                scope, receive, send
            )
            return
        except AccessDeniedError as exc:
            name = principal.name if principal is not None else ""
            await self._audit(name, method, template, params, rule, 403, scope)
            await error_response(403, FORBIDDEN, str(exc))(scope, receive, send)
            return
        if is_read or self.audit is None:
            await self.app(scope, receive, send)
            return
        status = 500

        async def capture(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, capture)
        finally:
            name = principal.name if principal is not None else ""
            await self._audit(name, method, template, params, rule, status, scope)

    async def _principal(self, scope: Scope, rule: Rule, is_read: bool) -> Principal | None:
        if not self.identity.is_enabled:
            return self.identity.anonymous()
        token = _token(scope, is_read)
        if not token:
            if rule.is_open:
                return None
            raise UnauthenticatedError(
                "missing bearer token: send 'Authorization: Bearer <token>' with a token from "
                "`phalanx token create` or the server's <data_dir>/token"
            )
        principal = self.identity.cached_principal(token)
        if principal is not None:
            return principal
        try:
            return await run_in_threadpool(self.identity.principal, token)
        except UnauthenticatedError:
            if rule.is_open:
                return None
            raise

    async def _authorize(
        self, principal: Principal, rule: Rule, params: dict[str, Any], method: str
    ) -> None:
        if not principal.is_at_least(rule.role):
            raise AccessDeniedError(
                f"{method} on this route needs the {rule.role.label} role or above; "
                f"{principal.name} is a {principal.role.label}"
            )
        if not rule.is_owned or principal.is_privileged:
            return
        kind = rule.kind or kind_name(str(params.get(rule.kind_param, ""))) or ""
        name = str(params.get(rule.name_param, ""))
        if not kind:  # an unknown kind: the route answers 404 itself
            return
        action = {"GET": "read", "HEAD": "read", "DELETE": "delete"}.get(method, "change")
        await run_in_threadpool(check_owner, self.store, principal, kind, name, action)

    async def _audit(
        self,
        user: str,
        method: str,
        template: str,
        params: dict[str, Any],
        rule: Rule,
        status: int,
        scope: Scope,
    ) -> None:
        if self.audit is None or method in READ_METHODS:
            return
        now = time.time()
        action = f"{method} {template}"
        state = scope.get("state", {})
        objects = state.get("audit_objects")
        if not objects:
            kind = rule.kind or kind_name(str(params.get(rule.kind_param or "kind", ""))) or ""
            objects = [(kind, str(params.get(rule.name_param or "name", "")))]
        who = user or "-"
        self.audit.record_many(
            [AuditRecord(now, who, action, kind, name, status) for kind, name in objects]
        )


HIDDEN = "(hidden)"


def may_see_private(principal: Principal | None, owner: str) -> bool:
    """Whether ``principal`` may see an object's logs and env: its owner, operators, admins."""
    return principal is not None and principal.is_at_least(Role.USER) and principal.owns(owner)


def _hide_env(value: object) -> object:
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, item in value.items():
            if key == "env" and isinstance(item, dict):  # the stored form: name → value
                out[key] = {k: HIDDEN if isinstance(v, str) else v for k, v in item.items()}
            elif key == "env" and isinstance(item, list):
                out[key] = [
                    {**e, "value": HIDDEN} if isinstance(e, dict) and "value" in e else e
                    for e in item
                ]
            else:
                out[key] = _hide_env(item)
        return out
    if isinstance(value, list):
        return [_hide_env(v) for v in value]
    return value


def redact_job(principal: Principal | None, job: JobInfo) -> JobInfo:
    """``job`` with its env values hidden unless ``principal`` may see them."""
    if principal is not None and principal.is_privileged:
        return job
    manifest = job.get("manifest", {})
    metadata = manifest.get("metadata")
    owner = metadata.get("owner") if isinstance(metadata, dict) else None
    if may_see_private(principal, owner if isinstance(owner, str) else ""):
        return job
    return {**job, "manifest": cast("dict[str, object]", _hide_env(manifest))}


def redact_jobs_json(principal: Principal | None, body: bytes) -> bytes:
    """A JSON array of jobs with the env values hidden that ``principal`` may not see."""
    if principal is not None and principal.is_privileged:
        return body
    jobs = json.loads(body)
    return json_bytes([redact_job(principal, j) for j in jobs])
