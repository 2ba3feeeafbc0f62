"""Canonical JSON and content hashes of bytes: pure functions, no I/O.

Apart from keys.py (which re-exports them) because a step's process needs these and not
the cache key's record type. SHA-256 comes from the interpreter's own module when it has
one: ``hashlib`` loads OpenSSL at import, which costs a step's process more than its task.
The digests are the same either way (a test compares them).
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from typing import Any


def _sha256_constructor() -> Callable[..., Any]:
    """The interpreter's own SHA-256 (3.11: _sha256; 3.12+: _sha2), else hashlib's."""
    for module in ("_sha256", "_sha2"):
        try:
            constructor: Callable[..., Any] = importlib.import_module(module).sha256
            return constructor
        except (ImportError, AttributeError):
            continue
    from hashlib import sha256

    return sha256


sha256 = _sha256_constructor()


def canonical_json(value: object) -> bytes:
    """The one JSON encoding of a plain value: sorted keys, no spaces, UTF-8.

    Raises TypeError for a value JSON cannot hold (the caller picks another encoding)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True
    ).encode()


def content_hash(data: bytes, kind: str = "") -> str:
    """``sha256:<hex>`` of ``data``, prefixed by the encoding ``kind`` (so equal bytes of two
    encodings, say a JSON string and a file with the same bytes, hash apart)."""
    digest = sha256()
    digest.update(kind.encode() + b"\0")
    digest.update(data)
    return "sha256:" + str(digest.hexdigest())
