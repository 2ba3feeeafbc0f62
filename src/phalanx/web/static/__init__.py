"""The dashboard's static assets, shipped as package data: read once, served with a content
hash in their URL so that browsers may cache them for good."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

#: Served files and their media types.
STATIC_FILES = {
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}


@dataclass(frozen=True, slots=True)
class StaticFile:
    """A static asset: its bytes, media type and a short content hash (its URL's query)."""

    body: bytes
    media_type: str
    digest: str


@cache
def static_file(name: str) -> StaticFile:
    """Return the asset ``name`` (one of STATIC_FILES). Raises KeyError for any other name."""
    media_type = STATIC_FILES[name]
    body = resources.files(__name__).joinpath(name).read_bytes()
    return StaticFile(body, media_type, hashlib.sha256(body).hexdigest()[:12])


def static_url(name: str) -> str:
    """Return the URL of the asset ``name``, with its content hash."""
    return f"/ui/static/{name}?v={static_file(name).digest}"
