"""The real API app served in-process to a plain ``httpx.Client``: no socket, no server thread;
each request runs through the ASGI app to its end before the client sees the answer.

starlette's TestClient is deprecated with httpx, and warnings are errors here, hence the
transport of our own. ``tests/`` is on ``sys.path`` (the root ``conftest.py`` puts it there), so
a test imports this with ``from asgi_client import app_client``.
"""

from __future__ import annotations

import asyncio

import httpx
from fastapi import FastAPI

#: The base URL of an in-process app (never resolved: the transport answers every request).
BASE_URL = "http://phalanx.test"


class AppTransport(httpx.BaseTransport):
    """Each request through the ASGI app in-process, its whole body read."""

    def __init__(self, app: FastAPI) -> None:
        self._asgi = httpx.ASGITransport(app=app)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def send() -> httpx.Response:
            response = await self._asgi.handle_async_request(request)
            body = await response.aread()
            return httpx.Response(response.status_code, headers=response.headers, content=body)

        return asyncio.run(send())


def app_client(app: FastAPI, token: str | None) -> httpx.Client:
    """A client of ``app`` in-process that sends ``token`` as its bearer token (none where
    ``token`` is None or empty)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(transport=AppTransport(app), base_url=BASE_URL, headers=headers)
