"""Cache keys and canonical hashing of plain values: pure functions, no I/O.

A step's cache key is a hash of everything that decides its output and nothing else: the
hash of its code (its source and the project-local code it calls), its resolved inputs (the
content hash of each, whether a literal or an upstream artifact), its optional
``cache_version`` and the image it runs in. The same step gives the same key in-process and
on a server because both call ``cache_key`` with the same ``KeyInputs``.

Imports only the standard library's hashing and JSON; no clock, no I/O (an import-linter
contract keeps it so).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field

#: Version of the key's layout: bump it when what goes into a key changes.
KEY_SCHEMA = 1


def canonical_json(value: object) -> bytes:
    """The one JSON encoding of a plain value: sorted keys, no spaces, UTF-8.

    Raises TypeError for a value JSON cannot hold (the caller picks another encoding)."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True
    ).encode()


def content_hash(data: bytes, kind: str = "") -> str:
    """``sha256:<hex>`` of ``data``, prefixed by the encoding ``kind`` (so equal bytes of two
    encodings, say a JSON string and a file with the same bytes, hash apart)."""
    digest = hashlib.sha256()
    digest.update(kind.encode() + b"\0")
    digest.update(data)
    return "sha256:" + digest.hexdigest()


@dataclass(frozen=True, slots=True)
class KeyInputs:
    """What a step's cache key is made of."""

    task: str
    code_hash: str
    input_hashes: Mapping[str, str] = field(default_factory=dict)
    cache_version: str = ""
    image: str = ""
    replicas: int = 1


def cache_key(inputs: KeyInputs) -> str:
    """Return the cache key of a step: ``sha256:<hex>`` over a canonical JSON record."""
    record = {
        "schema": KEY_SCHEMA,
        "task": inputs.task,
        "code": inputs.code_hash,
        "inputs": dict(sorted(inputs.input_hashes.items())),
        "cacheVersion": inputs.cache_version,
        "image": inputs.image,
        "replicas": inputs.replicas,
    }
    return content_hash(canonical_json(record), "cache-key")
