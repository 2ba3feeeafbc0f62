"""The Secret kind's manifest: ``spec.data`` (base64, as Kubernetes) and ``spec.stringData``
(plain text, folded into ``data``; it wins over the same key in ``data``), and ``spec.type``.

This module only validates and normalises. Secrets are encrypted before they are stored
(controllers/secrets.py): the normalised manifest made here is never written as it is.

Pure: no I/O. Imports only phalanx.model.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass, field

from phalanx.model.specs import (
    API_VERSION,
    SECRET_KEY,
    SpecError,
    _Collector,
    _header,
    _labels,
)

#: The most bytes a Secret's values may hold together (as Kubernetes: 1 MiB).
MAX_SECRET_BYTES = 1024 * 1024
DEFAULT_SECRET_TYPE = "Opaque"
_SPEC_FIELDS = ("type", "data", "stringData")
_HEADER_FIELDS = ("apiVersion", "kind", "metadata", "spec", "status")
#: What an error shows instead of anything that may hold a secret value.
HIDDEN = "<hidden>"


@dataclass(frozen=True, slots=True)
class SecretSpec:
    """A named set of secret values (bytes), by key."""

    name: str
    data: Mapping[str, bytes] = field(default_factory=dict)
    type: str = DEFAULT_SECRET_TYPE
    labels: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # never the values: reprs end up in logs
        return f"SecretSpec(name={self.name!r}, keys={sorted(self.data)!r}, type={self.type!r})"


def parse_secret(manifest: Mapping[str, object], source: str = "") -> SecretSpec:
    """Return the SecretSpec in ``manifest``; raise SpecError listing every problem. Error
    messages never repeat a value (only its key and what is wrong with it)."""
    c = _Collector()
    # Whatever may hold a value is reported as <hidden>: errors reach logs and responses.
    header = {k: v if k in _HEADER_FIELDS else HIDDEN for k, v in manifest.items()}
    for key in ("data", "stringData", "type"):
        if key in manifest:
            c.add(key, HIDDEN, f"goes under spec: spec.{key}")
            del header[key]
    name, metadata = _header(c, header, "Secret")
    labels = _labels(c, "metadata.labels", metadata.get("labels"))
    raw_spec = manifest.get("spec")
    if raw_spec is not None and not isinstance(raw_spec, Mapping):
        c.add("spec", HIDDEN, "must be a mapping with data and/or stringData")
    spec = raw_spec if isinstance(raw_spec, Mapping) else {}
    if raw_spec is None:
        c.add("spec", None, "is required and must be a mapping with data and/or stringData")
    for key in spec:
        if key not in _SPEC_FIELDS:
            c.add(
                f"spec.{key}",
                HIDDEN,
                f"is not a known field; valid fields: {', '.join(_SPEC_FIELDS)}",
            )
    kind = spec.get("type", DEFAULT_SECRET_TYPE)
    if not isinstance(kind, str) or not kind or len(kind) > 253:
        c.add("spec.type", kind, "must be a non-empty string such as Opaque")
        kind = DEFAULT_SECRET_TYPE
    data: dict[str, bytes] = {}
    for key, value in _values(c, "spec.data", spec.get("data")).items():
        if _key(c, f"spec.data.{key}", key) is None:
            continue
        if not isinstance(value, str):
            c.add(f"spec.data.{key}", HIDDEN, "must be base64 text; or use stringData")
            continue
        try:
            data[key] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            c.add(
                f"spec.data.{key}",
                HIDDEN,
                "is not valid base64; encode it (base64 -w0) or put plain text in stringData",
            )
    for key, value in _values(c, "spec.stringData", spec.get("stringData")).items():
        if _key(c, f"spec.stringData.{key}", key) is None:
            continue
        if not isinstance(value, str):
            c.add(f"spec.stringData.{key}", HIDDEN, "must be a string (quote it)")
            continue
        data[key] = value.encode()
    size = sum(len(v) for v in data.values())
    if size > MAX_SECRET_BYTES:
        c.add("spec.data", f"{size} bytes", f"must hold at most {MAX_SECRET_BYTES} bytes")
    if c.errors:
        raise SpecError(c.errors, source)
    return SecretSpec(name, dict(sorted(data.items())), kind, labels)


def _values(c: _Collector, path: str, value: object) -> Mapping[str, object]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        c.add(path, HIDDEN, "must be a mapping of key: value")
        return {}
    return value


def _key(c: _Collector, path: str, key: object) -> str | None:
    if not isinstance(key, str) or not SECRET_KEY.match(key):
        c.add(path, key, "is not a valid key: letters, digits, '-', '_' or '.', at most 253")
        return None
    return key


def secret_spec_manifest(secret: SecretSpec) -> dict[str, object]:
    """The normalised ``spec`` of ``secret``: its type and every value in ``data`` (base64)."""
    return {
        "type": secret.type,
        "data": {k: base64.b64encode(v).decode() for k, v in sorted(secret.data.items())},
    }


def secret_to_manifest(secret: SecretSpec) -> dict[str, object]:
    """The whole manifest of ``secret`` (plain: for the encrypting store and tests only)."""
    metadata: dict[str, object] = {"name": secret.name}
    if secret.labels:
        metadata["labels"] = dict(secret.labels)
    return {
        "apiVersion": API_VERSION,
        "kind": "Secret",
        "metadata": metadata,
        "spec": secret_spec_manifest(secret),
    }
