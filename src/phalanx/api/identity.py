"""Routes of users, tokens and the audit log (``/api/v1/users``, ``/tokens``, ``/audit``,
``/whoami``). Who may call them is ``phalanx.auth.policy``'s table (admins; the audit log
operators too), applied by the middleware before these run. Must not import client or cli.
"""

from __future__ import annotations

import math
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.security import HTTPBearer
from starlette.concurrency import run_in_threadpool

from phalanx.api.authz import audit_objects, principal_of
from phalanx.api.errors import NOT_FOUND, ApiRequestError
from phalanx.api.schemas import (
    AuditInfo,
    ErrorInfo,
    TokenCreate,
    TokenCreated,
    TokenInfo,
    UserCreate,
    UserInfo,
    WhoAmIInfo,
)
from phalanx.auth import AuditLog, Identity
from phalanx.store import AuditRecord, TokenRecord, UserRecord

API_PREFIX = "/api/v1"
#: The longest a token may live (ten years); longer asks for a token that never expires.
MAX_TOKEN_LIFETIME_S = 10 * 365 * 86400.0


def user_out(user: UserRecord) -> UserInfo:
    return {
        "name": user.name,
        "role": user.role,
        "groups": list(user.groups),
        "created_at": user.created_at,
    }


def token_out(token: TokenRecord, now: float) -> TokenInfo:
    is_active = token.revoked_at is None and (token.expires_at is None or now < token.expires_at)
    return {
        "id": token.id,
        "user": token.user,
        "name": token.name,
        "created_at": token.created_at,
        "expires_at": token.expires_at,
        "revoked_at": token.revoked_at,
        "is_active": is_active,
    }


def audit_out(record: AuditRecord) -> AuditInfo:
    return {
        "id": record.id,
        "at": record.at,
        "at_iso": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.at)),
        "user": record.user,
        "action": record.action,
        "kind": record.kind,
        "name": record.name,
        "status": record.status,
    }


def identity_router(identity: Identity, audit: AuditLog, scheme: HTTPBearer) -> APIRouter:
    """The routes of users, tokens and the audit log over ``identity`` and ``audit``."""
    error = {"model": ErrorInfo}
    router = APIRouter(
        prefix=API_PREFIX,
        dependencies=[Depends(scheme)],
        tags=["identity"],
        responses={
            400: {**error, "description": "Invalid request (code BadRequest)"},
            404: {**error, "description": "No such user or token (code NotFound)"},
            409: {**error, "description": "The user exists (code Conflict)"},
        },
    )

    def rows() -> object:
        if identity.store is None:
            raise ApiRequestError(404, NOT_FOUND, "this server keeps no users")
        return identity.store

    @router.get("/whoami", summary="The caller: user, role, groups and token id")
    def whoami(request: Request) -> WhoAmIInfo:
        principal = principal_of(request) or identity.anonymous()
        return {
            "name": principal.name,
            "role": principal.role.label,
            "groups": sorted(principal.groups),
            "token_id": principal.token_id,
        }

    @router.get("/users", summary="Every user with role and groups (admin)")
    def list_users() -> list[UserInfo]:
        rows()
        assert identity.store is not None
        return [user_out(u) for u in identity.store.list_users()]

    @router.post("/users", status_code=201, summary="Create a user (admin)")
    def create_user(body: UserCreate, request: Request) -> UserInfo:
        rows()
        audit_objects(request, [("User", str(body["name"]))])
        try:
            user = identity.create_user(body["name"], body["role"], tuple(body.get("groups", ())))
        except ValueError as exc:
            status = 409 if "exists" in str(exc) else 400
            code = "Conflict" if status == 409 else "BadRequest"
            raise ApiRequestError(status, code, str(exc)) from exc
        return user_out(user)

    @router.delete("/users/{name}", status_code=204, summary="Delete a user and their tokens")
    def delete_user(name: str, request: Request) -> None:
        rows()
        audit_objects(request, [("User", name)])
        if not identity.delete_user(name):
            raise ApiRequestError(404, NOT_FOUND, f"no user {name!r}; see `phalanx user list`")

    @router.get("/tokens", summary="Tokens (never their secrets), of one user or all (admin)")
    def list_tokens(user: str | None = None) -> list[TokenInfo]:
        rows()
        assert identity.store is not None
        now = time.time()
        return [token_out(t, now) for t in identity.store.list_tokens(user)]

    @router.post(
        "/tokens",
        status_code=201,
        summary="Create a token of a user; the token is in this answer only (admin)",
    )
    def create_token(body: TokenCreate, request: Request) -> TokenCreated:
        rows()
        audit_objects(request, [("User", str(body["user"]))])
        expires = body.get("expires_in_s")
        if expires is not None and not (0 < expires <= MAX_TOKEN_LIFETIME_S):
            raise ApiRequestError(
                400,
                "BadRequest",
                f"expires_in_s: {expires if math.isfinite(expires) else str(expires)} must be "
                f"more than 0 and at most {MAX_TOKEN_LIFETIME_S:.0f} (ten years); leave it out "
                "for a token that lasts until revoked",
            )
        try:
            record, token = identity.create_token(body["user"], body["name"], expires)
        except ValueError as exc:
            status = 404 if "does not exist" in str(exc) else 400
            raise ApiRequestError(
                status, NOT_FOUND if status == 404 else "BadRequest", str(exc)
            ) from exc
        return {"info": token_out(record, time.time()), "token": token}

    @router.post("/tokens/{token_id}/revoke", summary="Revoke a token at once (admin)")
    def revoke_token(token_id: str, request: Request) -> TokenInfo:
        rows()
        audit_objects(request, [("Token", token_id)])
        record = identity.revoke_token(token_id)
        if record is None:
            raise ApiRequestError(
                404, NOT_FOUND, f"no token {token_id!r}; see `phalanx token list`"
            )
        return token_out(record, time.time())

    @router.get("/audit", summary="Mutating calls, oldest first (operators and admins)")
    async def list_audit(
        user: str | None = None,
        kind: str | None = None,
        name: str | None = None,
        since: Annotated[
            float | None, Query(ge=0, le=1e11, description="Unix time: from then on")
        ] = None,
        until: Annotated[
            float | None, Query(ge=0, le=1e11, description="Unix time: up to then")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=10000, description="The newest this many")] = 1000,
    ) -> list[AuditInfo]:
        records = await run_in_threadpool(
            audit.query,
            user=user,
            kind=kind,
            name=name,
            since=since,
            until=until,
            limit=limit,
        )
        return [audit_out(r) for r in records]

    return router
