"""The HTTP edge: FastAPI app (REST under /api/v1, OpenAPI at /docs) and the server process.

Pydantic schemas live only here. Layering: api may import controllers, backends, store and
model; it must not import client or cli.
"""

from phalanx.api.app import create_app

__all__ = ["create_app"]
