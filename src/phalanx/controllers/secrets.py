"""Secrets at rest and at launch: encrypted before they are stored, masked whenever they are
read, resolved into a pod's environment only when it launches.

Encryption: Fernet (AES-128-CBC with HMAC-SHA256, from the ``cryptography`` package) under a
key in ``<data_dir>/secrets.key`` (mode 0600, created on first use). The key file may hold
several keys, one per line: the first encrypts, every one decrypts (``MultiFernet``), so a
key is rotated by putting a new one first, restarting, running ``rotate`` (re-applying the
secrets does the same) and then removing the old line. A Secret is stored as

    spec: {type: Opaque, keys: {password: 7}, encrypted: <Fernet token of the data>}

so the stored manifest holds no value; ``keys`` (each key's size in bytes) is what describe
and the API show. With PostgreSQL shared by several control planes every one of them needs
the same key file.

Imports phalanx.model, phalanx.kinds and phalanx.store (and ``cryptography``, only where a
Secret is sealed, opened or its key file read: the server loads this module at start, and
``cryptography`` is some 7 MiB of its memory that a plane without Secrets never uses).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from phalanx.model.objects import PodSet, SecretKeyRef
from phalanx.model.secrets import SecretSpec, parse_secret, secret_to_manifest
from phalanx.model.specs import API_VERSION, SpecError
from phalanx.store import ObjectRecord, Store

if TYPE_CHECKING:
    from cryptography.fernet import MultiFernet

KIND = "Secret"
KEY_FILE = "secrets.key"
#: What a masked value reads as.
HIDDEN = "<hidden>"


class SecretRefError(Exception):
    """A pod's ``secretKeyRef`` cannot be resolved: its Secret or key is missing, or the
    value cannot be put in an environment. ``reason`` is the pod reason (SecretNotFound,
    SecretKeyNotFound, SecretValueInvalid); the message names the variable, Secret and key."""

    def __init__(self, reason: str, variable: str, secret: str, key: str, problem: str) -> None:
        self.reason = reason
        self.variable, self.secret, self.key = variable, secret, key
        super().__init__(f"env {variable}: {problem}")

    def facts(self) -> dict[str, str]:
        """The facts that name what is missing, for the pod's failure reason."""
        return {"secret": self.secret, "key": self.key, "variable": self.variable}


@dataclass(frozen=True, slots=True)
class ResolvedSecrets:
    """What a pod needs from Secrets: the data of each Secret it refers to and which
    variable takes which key (optional references that resolved to nothing left out)."""

    data: Mapping[str, Mapping[str, bytes]] = field(default_factory=dict)
    env: Mapping[str, SecretKeyRef] = field(default_factory=dict)

    def values(self) -> dict[str, str]:
        """Variable → value (text: resolve checked that every value decodes)."""
        return {k: self.data[r.secret][r.key].decode() for k, r in self.env.items()}


class SecretVault:
    """Seals Secrets for the store, shows them masked and resolves references. Thread-safe."""

    def __init__(self, store: Store, key_path: Path) -> None:
        self.store = store
        self.key_path = key_path
        self._lock = threading.Lock()
        self._fernet: MultiFernet | None = None

    # ---- the key ----

    def cipher(self) -> MultiFernet:
        """The ciphers of the key file, creating the file (one key, mode 0600) if missing.
        Raises ValueError for a key file that holds no valid key."""
        from cryptography.fernet import Fernet, MultiFernet  # lazily: see the module docstring

        with self._lock:
            if self._fernet is None:
                self._fernet = MultiFernet([Fernet(k) for k in load_or_create_keys(self.key_path)])
            return self._fernet

    # ---- writes ----

    def seal(self, manifest: Mapping[str, object]) -> dict[str, object]:
        """The manifest to store for the normalised, plain ``manifest`` of a Secret: the same
        metadata, the values encrypted. A Secret stored with the same type and data keeps
        its stored form, so that applying it again reads as unchanged."""
        from cryptography.fernet import InvalidToken  # lazily: see the module docstring

        secret = parse_secret(manifest)
        previous = self.store.get_object(KIND, secret.name)
        if previous is not None and previous.manifest.get("metadata") == manifest.get("metadata"):
            with contextlib.suppress(InvalidToken, SpecError, ValueError):
                if self.open(previous.manifest) == secret:
                    return previous.manifest
        payload = json.dumps(
            {k: base64.b64encode(v).decode() for k, v in secret.data.items()}
        ).encode()
        return {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "metadata": manifest.get("metadata"),
            "spec": {
                "type": secret.type,
                "keys": {k: len(v) for k, v in secret.data.items()},
                "encrypted": self.cipher().encrypt(payload).decode(),
            },
        }

    def rotate(self) -> int:
        """Encrypt every stored Secret again under the first key of the key file; return how
        many were rewritten. Raises InvalidToken for one no key in the file opens."""
        count = 0
        for record in self.store.list_objects(KIND):
            spec = record.manifest.get("spec") or {}
            token = str(spec.get("encrypted", "")).encode()
            rotated = self.cipher().rotate(token).decode()
            manifest = {**record.manifest, "spec": {**spec, "encrypted": rotated}}
            self.store.apply([(KIND, record.name, manifest)], [], record.updated_at)
            count += 1
        return count

    # ---- reads ----

    def open(self, stored: Mapping[str, object]) -> SecretSpec:
        """The Secret in a stored (sealed) manifest. Raises InvalidToken when no key opens
        it, SpecError when what it holds is not a valid Secret."""
        spec = stored.get("spec")
        if not isinstance(spec, Mapping):
            raise SpecError([], "a stored Secret without spec")
        token = str(spec.get("encrypted", "")).encode()
        data = json.loads(self.cipher().decrypt(token))
        plain = {**stored, "spec": {"type": spec.get("type", "Opaque"), "data": data}}
        return parse_secret(plain)

    def get(self, name: str) -> SecretSpec | None:
        """The stored Secret ``name``, decrypted; None if there is none. Raises as ``open``."""
        record = self.store.get_object(KIND, name)
        return None if record is None else self.open(record.manifest)

    def resolve(self, pod_set: PodSet) -> ResolvedSecrets:
        """The Secrets ``pod_set``'s env refers to, read now. Raises SecretRefError for a
        missing Secret or key (unless the reference is optional), a Secret no key opens,
        or a value an environment cannot hold (not UTF-8, or a NUL byte)."""
        data: dict[str, Mapping[str, bytes]] = {}
        env: dict[str, SecretKeyRef] = {}
        missing: set[str] = set()
        for variable, ref in pod_set.secret_env.items():
            if ref.secret not in data and ref.secret not in missing:
                # Lazily (see the module docstring): only pods that refer to a Secret need it.
                from cryptography.fernet import InvalidToken

                try:
                    secret = self.get(ref.secret)
                except (InvalidToken, SpecError, ValueError, OSError) as exc:
                    raise SecretRefError(
                        "SecretUnreadable",
                        variable,
                        ref.secret,
                        ref.key,
                        f"secret {ref.secret} cannot be decrypted with the key in "
                        f"{self.key_path} ({exc.__class__.__name__}); restore the key file "
                        "or apply the Secret again",
                    ) from exc
                if secret is None:
                    missing.add(ref.secret)
                else:
                    data[ref.secret] = secret.data
            if ref.secret in missing:
                if ref.is_optional:
                    continue
                raise SecretRefError(
                    "SecretNotFound",
                    variable,
                    ref.secret,
                    ref.key,
                    f"secret {ref.secret} not found (wanted key {ref.key}); apply the Secret "
                    "or mark the reference optional: true",
                )
            value = data[ref.secret].get(ref.key)
            if value is None:
                if ref.is_optional:
                    continue
                keys = ", ".join(sorted(data[ref.secret])) or "none"
                raise SecretRefError(
                    "SecretKeyNotFound",
                    variable,
                    ref.secret,
                    ref.key,
                    f"secret {ref.secret} has no key {ref.key} (its keys: {keys})",
                )
            try:
                text = value.decode()
            except UnicodeDecodeError:
                text = "\0"
            if "\0" in text:
                raise SecretRefError(
                    "SecretValueInvalid",
                    variable,
                    ref.secret,
                    ref.key,
                    f"key {ref.key} of secret {ref.secret} is not UTF-8 text without NUL "
                    "bytes, which is all an environment variable can hold",
                )
            env[variable] = ref
        return ResolvedSecrets(data, env)


def masked_manifest(stored: Mapping[str, object]) -> dict[str, object]:
    """A stored Secret as it is shown: metadata, type and each key with its size, no value."""
    spec = stored.get("spec")
    spec = spec if isinstance(spec, Mapping) else {}
    keys = spec.get("keys")
    sizes = keys if isinstance(keys, Mapping) else {}
    return {
        "apiVersion": stored.get("apiVersion", API_VERSION),
        "kind": KIND,
        "metadata": stored.get("metadata", {}),
        "spec": {
            "type": spec.get("type", "Opaque"),
            "data": {str(k): f"{HIDDEN} ({n} bytes)" for k, n in sorted(sizes.items())},
        },
    }


def masked_view(record: ObjectRecord) -> dict[str, object]:
    """What the API answers for a stored Secret: the masked manifest, name and metadata."""
    manifest = masked_manifest(record.manifest)
    metadata = dict(manifest.get("metadata") or {})  # type: ignore[call-overload]
    metadata.update(
        uid=record.uid,
        resourceVersion=str(record.resource_version),
        generation=record.generation,
        creationTimestamp=record.created_at,
    )
    return {**manifest, "metadata": metadata, "name": record.name}


def load_or_create_keys(path: Path) -> list[bytes]:
    """The Fernet keys in ``path`` (one per line, the first encrypts), creating the file
    with one new key, mode 0600, if it does not exist. Raises ValueError for a file that
    holds no valid key (the message names the file and the fix)."""
    from cryptography.fernet import Fernet  # lazily: see the module docstring

    with contextlib.suppress(FileExistsError):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(Fernet.generate_key() + b"\n")
            out.flush()
            os.fsync(out.fileno())
    keys = [line.strip() for line in path.read_bytes().splitlines() if line.strip()]
    for key in keys:
        try:
            Fernet(key)
        except ValueError as exc:
            raise ValueError(
                f"{path}: holds a line that is not a Fernet key (32 url-safe base64-encoded "
                "bytes); fix or remove it (a lost key makes the Secrets it encrypted unreadable)"
            ) from exc
    if not keys:
        raise ValueError(f"{path} holds no key; remove the empty file to create a new key")
    return keys


__all__ = [
    "HIDDEN",
    "KEY_FILE",
    "ResolvedSecrets",
    "SecretRefError",
    "SecretVault",
    "load_or_create_keys",
    "masked_manifest",
    "masked_view",
    "secret_to_manifest",
]
