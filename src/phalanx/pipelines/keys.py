"""Cache keys and canonical hashing of plain values: pure functions, no I/O.

A step's cache key is a hash of everything that decides its output and nothing else: the
hash of its code (its source and the project-local code it calls), its resolved inputs (the
content hash of each, whether a literal or an upstream artifact), its optional
``cache_version`` and the image it runs in. The same step gives the same key in-process and
on a server because both call ``cache_key`` with the same ``KeyInputs``.

Imports only the standard library's hashing and JSON (through hashing.py, where
``canonical_json`` and ``content_hash`` live); no clock, no I/O (an import-linter contract
keeps it so).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from phalanx.pipelines.hashing import canonical_json, content_hash

__all__ = ["KEY_SCHEMA", "KeyInputs", "cache_key", "canonical_json", "content_hash"]

#: Version of the key's layout: bump it when what goes into a key changes.
KEY_SCHEMA = 1


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
