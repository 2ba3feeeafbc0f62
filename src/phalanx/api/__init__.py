"""The HTTP edge: FastAPI app (REST under /api/v1, watch, OpenAPI at /docs) and the server
process.

``phalanx.api.schemas`` is the JSON the API speaks, as TypedDicts that need only the standard
library: the client imports it too, so this package imports nothing heavy until
``create_app`` is asked for. Pydantic and FastAPI stay in the other modules. Layering: api may
import controllers, backends, store, kinds and model; it must not import client or cli.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from phalanx.api.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> object:
    # Imported on first use, so that `import phalanx.api.schemas` (the client does) loads
    # neither FastAPI nor the control plane.
    if name == "create_app":
        from phalanx.api.app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
