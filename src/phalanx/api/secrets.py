"""The Secret routes: list and read Secrets, masked (each key with its size, no value).

Added to the ``/api/v1`` router by ``add_secret_routes`` so that they share its
authentication. Secrets are written by ``POST /apply`` (encrypted before they are stored)
and deleted by ``DELETE /secrets/{name}`` (the generic delete route).
"""

from __future__ import annotations

from fastapi import APIRouter

from phalanx.api.schemas import SecretInfo
from phalanx.controllers.errors import NotFoundError
from phalanx.controllers.plane import ControlPlane
from phalanx.controllers.secrets import KIND, masked_view


def add_secret_routes(router: APIRouter, plane: ControlPlane) -> None:
    """Add ``GET /secrets`` and ``GET /secrets/{name}`` to ``router``."""

    @router.get("/secrets", summary="List Secrets: their keys and sizes, never their values")
    def list_secrets() -> list[SecretInfo]:
        return [_info(masked_view(r)) for r in plane.store.list_objects(KIND)]

    @router.get("/secrets/{name}", summary="One Secret: its keys and sizes, never its values")
    def get_secret(name: str) -> SecretInfo:
        record = plane.store.get_object(KIND, name)
        if record is None:
            raise NotFoundError("secret", name)
        return _info(masked_view(record))


def _info(view: dict[str, object]) -> SecretInfo:
    return SecretInfo(
        name=str(view["name"]),
        apiVersion=str(view["apiVersion"]),
        kind=str(view["kind"]),
        metadata=dict(view["metadata"]),  # type: ignore[call-overload]
        spec=dict(view["spec"]),  # type: ignore[call-overload]
    )
