"""Artifacts: values encoded deterministically and stored by content hash.

Encodings, chosen by the value's type so that equal values give equal bytes:

- ``json``: None, bool, int, float, str and lists/tuples/dicts (string keys) of them, as
  canonical JSON (sorted keys, no spaces). Tuples come back as tuples when the consuming
  task's annotation asks for one.
- ``npy``: numpy arrays (numpy's ``.npy`` format, ``allow_pickle=False``; object arrays fall
  through to pickle).
- ``parquet``: pandas DataFrames when pyarrow is installed (else pickle).
- ``file`` / ``dir``: ``File(path)`` and ``Directory(path)``: the bytes of the file; a
  directory is a manifest of relative paths to file hashes, each file stored once.
- ``pickle``: anything else. Pickle is the last resort: the bytes of equal objects may differ
  (dict order of nested objects, memo layout), so such outputs may miss the cache for their
  dependents; return plain values, arrays, frames or files to stay deterministic.

Small values (``json`` under ``INLINE_LIMIT_BYTES``) are kept inline in the step's result
record and the cache index: a trivial step writes one record and reads none.

The store is a local directory (the default, ``~/.cache/phalanx/artifacts`` or
``PHALANX_ARTIFACTS``) or any fsspec URL (``s3://bucket/prefix``, ``memory://``…), laid out as
``objects/<hash>`` (blobs), ``cache/<key>.json`` (the cache index: key → output and the run
and step that made it) and ``results/<run>/<step>.json`` (what a step's job reports).
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Protocol

from phalanx.pipelines.hashing import canonical_json, content_hash
from phalanx.pipelines.record import Record

if TYPE_CHECKING:
    from pathlib import Path

# io, pathlib, pickle and tempfile are imported where they are used: a step's process imports
# this module to run one trivial task, and its start-up is most of that step's cost (pathlib
# alone, with the urllib.parse and ipaddress it imports, was a quarter of this package's).
# For the same reason the value types below are Records, not dataclasses (see record.py).

INLINE_LIMIT_BYTES = 16 * 1024
ENV_ARTIFACTS = "PHALANX_ARTIFACTS"


class File(Record):
    """A file produced or consumed by a task: stored by the hash of its bytes."""

    __slots__ = ("path",)
    path: str

    def __init__(self, path: str) -> None:
        self._set(path=path)

    def read_bytes(self) -> bytes:
        with open(self.path, "rb") as f:
            return f.read()


class Directory(Record):
    """A directory tree: stored as a manifest of relative paths to file hashes."""

    __slots__ = ("path",)
    path: str

    def __init__(self, path: str) -> None:
        self._set(path=path)


class ArtifactRef(Record):
    """Where a value is: its content ``hash``, ``format`` and size, and for small JSON values
    the JSON text itself (``inline``), so that reading it costs no round trip."""

    __slots__ = ("hash", "format", "size", "type", "inline")  # noqa: RUF023 - in __init__'s order (Record)
    hash: str
    format: str
    size: int
    type: str
    inline: str | None

    def __init__(
        self, hash: str, format: str, size: int, type: str = "", inline: str | None = None
    ) -> None:
        self._set(hash=hash, format=format, size=size, type=type, inline=inline)

    def to_json(self) -> dict[str, object]:
        out: dict[str, object] = {
            "hash": self.hash,
            "format": self.format,
            "size": self.size,
            "type": self.type,
        }
        if self.inline is not None:
            out["inline"] = self.inline
        return out

    @staticmethod
    def from_json(data: Mapping[str, Any]) -> ArtifactRef:
        inline = data.get("inline")
        return ArtifactRef(
            hash=str(data["hash"]),
            format=str(data["format"]),
            size=int(data.get("size", 0)),
            type=str(data.get("type", "")),
            inline=None if inline is None else str(inline),
        )


class Encoded(Record):
    """A value as bytes, its format, and for directories the blobs of its files."""

    __slots__ = ("format", "data", "type", "parts")  # noqa: RUF023 - in __init__'s order (Record)
    format: str
    data: bytes
    type: str
    parts: dict[str, bytes]

    def __init__(
        self, format: str, data: bytes, type: str, parts: dict[str, bytes] | None = None
    ) -> None:
        self._set(format=format, data=data, type=type, parts={} if parts is None else parts)

    @property
    def hash(self) -> str:
        return content_hash(self.data, self.format)


def _is_json(value: object, depth: int = 0) -> bool:
    if depth > 100:
        return False
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list | tuple):
        return all(_is_json(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v, depth + 1) for k, v in value.items())
    return False


def encode(value: object) -> Encoded:
    """Encode ``value`` in the first format that fits (see the module docstring)."""
    type_name = type(value).__qualname__
    if _is_json(value):
        return Encoded("json", canonical_json(value), type_name)
    if isinstance(value, File):
        return Encoded("file", value.read_bytes(), type_name)
    if isinstance(value, Directory):
        from pathlib import Path

        root = Path(value.path)
        parts: dict[str, bytes] = {}
        manifest: dict[str, str] = {}
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            data = path.read_bytes()
            digest = content_hash(data, "file")
            parts[digest] = data
            manifest[path.relative_to(root).as_posix()] = digest
        return Encoded("dir", canonical_json(manifest), type_name, parts)
    import io

    module = type(value).__module__
    if module == "numpy" and type_name == "ndarray":
        import numpy as np

        if value.dtype != object:  # type: ignore[attr-defined]
            buffer = io.BytesIO()
            np.save(buffer, value, allow_pickle=False)  # type: ignore[arg-type]
            return Encoded("npy", buffer.getvalue(), type_name)
    if module.startswith("pandas") and type_name == "DataFrame":
        try:
            buffer = io.BytesIO()
            value.to_parquet(buffer)  # type: ignore[attr-defined]
            return Encoded("parquet", buffer.getvalue(), type_name)
        except ImportError:
            pass
    import pickle

    return Encoded("pickle", pickle.dumps(value, protocol=5), type_name)


class _Files(Protocol):
    def read(self, path: str) -> bytes | None: ...
    def write(self, path: str, data: bytes) -> None: ...
    def exists(self, path: str) -> bool: ...


class _LocalFiles:
    """The files of a local store, through os.path (no pathlib: see the imports)."""

    def __init__(self, root: str) -> None:
        self.root = root

    def read(self, path: str) -> bytes | None:
        try:
            with open(os.path.join(self.root, path), "rb") as f:
                return f.read()
        except FileNotFoundError:
            return None

    def write(self, path: str, data: bytes) -> None:
        target = os.path.join(self.root, path)
        parent = os.path.dirname(target)
        os.makedirs(parent, exist_ok=True)
        tmp = os.path.join(parent, f".tmp-{os.getpid()}-{os.urandom(6).hex()}")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, target)  # readers never see half a file

    def exists(self, path: str) -> bool:
        return os.path.exists(os.path.join(self.root, path))


class _FsspecFiles:
    def __init__(self, url: str, options: Mapping[str, Any]) -> None:
        try:
            import fsspec  # type: ignore[import-untyped]
        except ImportError as exc:
            raise ValueError(
                f"artifact store {url!r} needs fsspec (and its driver, e.g. s3fs for s3://): "
                "pip install 'phalanx[pipelines]'"
            ) from exc
        self.fs, self.root = fsspec.core.url_to_fs(url, **options)
        self.root = self.root.rstrip("/")

    def read(self, path: str) -> bytes | None:
        try:
            data: bytes = self.fs.cat_file(f"{self.root}/{path}")
            return data
        except FileNotFoundError:
            return None

    def write(self, path: str, data: bytes) -> None:
        self.fs.pipe_file(f"{self.root}/{path}", data)

    def exists(self, path: str) -> bool:
        return bool(self.fs.exists(f"{self.root}/{path}"))


def default_url() -> str:
    """The artifact store used when none is named: ``PHALANX_ARTIFACTS``, else a directory
    under the user's cache directory."""
    if os.environ.get(ENV_ARTIFACTS):
        return os.environ[ENV_ARTIFACTS]
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return os.path.join(cache, "phalanx", "artifacts")


class ArtifactStore:
    """Blobs by content hash, the cache index and step results, under one root URL.

    ``url``: a local path (or ``file://``), or any fsspec URL; ``options`` go to fsspec (for
    S3: ``endpoint_url``, ``key``, ``secret``; or the usual AWS_* environment)."""

    def __init__(self, url: str | None = None, **options: Any) -> None:
        self.url = url or default_url()
        local = self.url.removeprefix("file://")
        self.is_local = "://" not in local
        #: The store's directory when it is local (absolute, links resolved), else None.
        self.local_root = os.path.realpath(os.path.expanduser(local)) if self.is_local else None
        self._files: _Files = (
            _LocalFiles(self.local_root)
            if self.local_root is not None
            else _FsspecFiles(self.url, options)
        )
        if self.local_root is not None:
            self.url = str(self.local_root)

    # ---- values ----

    def put(self, value: object) -> ArtifactRef:
        """Store ``value`` (blobs only when not inline; each blob once) and return its ref."""
        encoded = encode(value)
        return self.put_encoded(encoded)

    def put_encoded(self, encoded: Encoded) -> ArtifactRef:
        digest = encoded.hash
        if encoded.format == "json" and len(encoded.data) <= INLINE_LIMIT_BYTES:
            return ArtifactRef(
                digest, "json", len(encoded.data), encoded.type, encoded.data.decode()
            )
        for part_hash, part in encoded.parts.items():
            self._put_blob(part_hash, part)
        self._put_blob(digest, encoded.data)
        return ArtifactRef(digest, encoded.format, len(encoded.data), encoded.type)

    def _blob_path(self, digest: str) -> str:
        hexdigest = digest.split(":", 1)[1]
        return f"objects/{hexdigest[:2]}/{hexdigest}"

    def _put_blob(self, digest: str, data: bytes) -> None:
        path = self._blob_path(digest)
        if not self._files.exists(path):
            self._files.write(path, data)

    def _blob(self, digest: str) -> bytes:
        data = self._files.read(self._blob_path(digest))
        if data is None:
            raise LookupError(f"artifact {digest} is not in the artifact store {self.url}")
        return data

    def get(self, ref: ArtifactRef) -> object:
        """The value ``ref`` points to. Raises LookupError when its blob is missing."""
        if ref.inline is not None:
            return json.loads(ref.inline)
        data = self._blob(ref.hash)
        if ref.format == "json":
            return json.loads(data)
        import io
        import pickle

        if ref.format == "npy":
            import numpy as np

            return np.load(io.BytesIO(data), allow_pickle=False)
        if ref.format == "parquet":
            import pandas as pd  # type: ignore[import-untyped,unused-ignore]

            return pd.read_parquet(io.BytesIO(data))
        if ref.format == "file":
            return File(str(self._materialise(ref.hash, {"data": ref.hash}) / "data"))
        if ref.format == "dir":
            manifest = json.loads(data)
            return Directory(str(self._materialise(ref.hash, manifest)))
        if ref.format == "pickle":
            return pickle.loads(data)
        raise LookupError(f"artifact {ref.hash} has an unknown format {ref.format!r}")

    def _materialise(self, digest: str, manifest: Mapping[str, str]) -> Path:
        """A local directory holding the files of ``manifest`` (relative path → hash)."""
        import tempfile
        from pathlib import Path

        base = Path(self.local_root or Path(tempfile.gettempdir()) / "phalanx-artifacts")
        target = base / "files" / digest.split(":", 1)[1]
        if not target.exists():
            base.mkdir(parents=True, exist_ok=True)
            staging = Path(tempfile.mkdtemp(dir=base, prefix=".tmp-files-"))
            for rel, part in manifest.items():
                out = staging / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_bytes(self._blob(part))
            target.parent.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(OSError):  # another reader made it first
                staging.replace(target)
        return target

    # ---- records: the cache index and step results ----

    def read_record(self, path: str) -> dict[str, Any] | None:
        data = self._files.read(path)
        return None if data is None else dict(json.loads(data))

    def write_record(self, path: str, record: Mapping[str, object]) -> None:
        self._files.write(path, canonical_json(dict(record)))

    def cache_entry(self, key: str) -> dict[str, Any] | None:
        """The cache index's entry for ``key``: output ref, run, step; None on a miss."""
        return self.read_record(f"cache/{key.split(':', 1)[1]}.json")

    def record_cache(self, key: str, output: ArtifactRef, run: str, step: str) -> None:
        self.write_record(
            f"cache/{key.split(':', 1)[1]}.json",
            {"output": output.to_json(), "run": run, "step": step},
        )

    def result_path(self, run: str, step: str) -> str:
        return f"results/{run}/{step}.json"
