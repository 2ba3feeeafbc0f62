"""The registry of kinds: what ``apply``, ``get``, ``describe``, ``delete`` and the API
dispatch through. Each kind's module builds one ``Kind`` and registers it, so a new kind
touches nothing else. Imports only phalanx.model.

Kinds that ask for it (``Kind.template_cache``) keep what ``parse`` made of recent manifests
by their content without ``metadata.name`` (``_Templates``): many jobs are one manifest under
many names (arrays, retries, the same job for each of many inputs), and validating a job's
manifest costs more than storing it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import marshal
import re
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from phalanx.model.specs import API_VERSION, FieldError, SpecError, metadata_manifest


@dataclass(frozen=True, slots=True)
class Kind:
    """One kind of object.

    ``parse`` validates a manifest whole and fills defaults (raising SpecError with every
    problem); ``spec_manifest`` turns the parsed object back into the normalised ``spec``
    that is stored and shown, so what is accepted round-trips. ``is_job`` kinds are stored
    as jobs (with a lifecycle), the others as plain objects; kinds that are not
    ``is_applied`` are observed (nodes) and only read.
    """

    name: str
    plural: str
    short_names: tuple[str, ...]
    description: str
    is_applied: bool = True
    is_job: bool = False
    parse: Callable[[Mapping[str, object], str], Any] | None = None
    spec_manifest: Callable[[Any], Mapping[str, object]] | None = None
    #: Parsed manifests remembered by their content without ``metadata.name``, at most this
    #: many (0: none). Only for kinds whose ``parse`` returns a dataclass with a ``name``
    #: field, puts ``metadata.name`` nowhere else and checks it as a DNS-1123 label.
    template_cache: int = 0

    @property
    def names(self) -> frozenset[str]:
        """Every name the CLI and API accept for this kind, lower case."""
        return frozenset({self.name.lower(), self.plural, *self.short_names})


@dataclass(frozen=True, slots=True)
class Parsed:
    """A valid manifest: its kind, the parsed object, and the normalised manifest to store."""

    kind: Kind
    name: str
    obj: Any
    manifest: dict[str, object]


class UnknownKindError(LookupError):
    """A kind name that no registered kind answers to; the message lists the known ones."""

    def __init__(self, text: str) -> None:
        self.text = text
        super().__init__(
            f"unknown kind {text!r}; known kinds: "
            + ", ".join(f"{k.name} ({', '.join(sorted(k.names))})" for k in kinds())
        )


_KINDS: dict[str, Kind] = {}
#: Every name of every kind (lower case) → the kind.
_BY_NAME: dict[str, Kind] = {}

#: A DNS-1123 label, as ``phalanx.model.specs`` checks ``metadata.name`` (a test keeps the
#: two in step): a template is reused only for a name that passes, any other is parsed whole
#: (and refused with the parser's own message).
_NAME = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_MAX_NAME = 63


class _Templates:
    """What ``parse`` and ``spec_manifest`` made of recent valid manifests, by the manifest
    without ``metadata.name``; least recently used out first. The key is ``marshal``'s
    encoding, which is exact about types (1, 1.0, True and "1" differ; so do lists and
    tuples) and refuses anything but plain built-in values: a manifest holding another type
    is parsed whole. Only successes are kept; errors are found again, with their paths.

    An entry keeps the parsed object, and the spec manifest and the normalised metadata
    without its name as one ``marshal`` encoding (checked to be plain JSON when kept):
    loading it gives each job fresh dicts and lists several times faster than parsing JSON
    or normalising the metadata again.

    Thread-safe without a lock (this package takes none): each step on the entries is one
    call of the C OrderedDict, and one that finds an entry gone meanwhile lets it be."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[bytes, tuple[Any, bytes]] = OrderedDict()

    @staticmethod
    def key(manifest: Mapping[str, object]) -> tuple[str, bytes] | None:
        """(name, key) of ``manifest``; None when it cannot be reused (no valid name, values
        marshal refuses)."""
        metadata = manifest.get("metadata")
        if type(metadata) is not dict and not isinstance(metadata, Mapping):  # dict: quicker
            return None
        name = metadata.get("name")
        if not isinstance(name, str) or len(name) > _MAX_NAME or not _NAME.fullmatch(name):
            return None
        rest = {k: v for k, v in metadata.items() if k != "name"}
        try:
            return name, marshal.dumps({**manifest, "metadata": rest}, 2)
        except ValueError:  # a value of another type than marshal's plain ones
            return None

    def get(self, key: bytes) -> tuple[Any, dict[str, object], dict[str, object]] | None:
        """(parsed object, a fresh copy of its spec manifest, a fresh copy of its normalised
        metadata without ``name``) for ``key``, or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        with contextlib.suppress(KeyError):  # evicted meanwhile by another thread
            self._entries.move_to_end(key)
        obj, copies = entry
        spec, metadata = marshal.loads(copies)
        return obj, spec, metadata

    def put(
        self, key: bytes, obj: Any, spec: Mapping[str, object], metadata: Mapping[str, object]
    ) -> None:
        """Keep ``obj`` with copies of ``spec`` and ``metadata`` (the normalised metadata
        without ``name``), unless they are not plain JSON."""
        rest = {k: v for k, v in metadata.items() if k != "name"}
        try:  # through JSON: the copies hold JSON's types (lists, not tuples), as stored
            copies = marshal.dumps(json.loads(json.dumps([spec, rest], allow_nan=False)), 2)
        except (TypeError, ValueError):  # not plain JSON: not kept
            return
        self._entries[key] = (obj, copies)
        while len(self._entries) > self.size:
            try:
                self._entries.popitem(last=False)
            except KeyError:  # emptied meanwhile by another thread
                break


def _renamed(template: Any, name: str) -> Any:
    """``dataclasses.replace(template, name=name)``; for a frozen dataclass with slots and no
    ``__post_init__``, a copy of its slots (several times faster: no ``__init__``)."""
    cls = type(template)
    slots = _SLOTS.get(cls)
    if slots is None:
        is_plain = (
            dataclasses.is_dataclass(cls)
            and "__slots__" in cls.__dict__
            and not hasattr(cls, "__post_init__")
            and all(f.init for f in dataclasses.fields(cls))
        )
        slots = _SLOTS[cls] = (
            tuple(f.name for f in dataclasses.fields(cls) if f.name != "name") if is_plain else ()
        )
    if not slots:
        return dataclasses.replace(template, name=name)
    new = object.__new__(cls)
    setter = object.__setattr__
    setter(new, "name", name)
    for slot in slots:
        setter(new, slot, getattr(template, slot))
    return new


#: Field names (other than ``name``) that ``_renamed`` copies, by class; () for a class it
#: hands to ``dataclasses.replace``.
_SLOTS: dict[type, tuple[str, ...]] = {}


_TEMPLATES: dict[str, _Templates] = {}


def register(kind: Kind) -> Kind:
    """Add ``kind`` to the registry (its names must be new); return it."""
    taken = {n for k in _KINDS.values() for n in k.names} & kind.names
    if taken or kind.name in _KINDS:
        raise ValueError(f"kind {kind.name}: names already registered: {sorted(taken)}")
    _KINDS[kind.name] = kind
    _BY_NAME.update(dict.fromkeys(kind.names, kind))
    if kind.template_cache > 0:
        _TEMPLATES[kind.name] = _Templates(kind.template_cache)
    return kind


def kinds() -> list[Kind]:
    """Every registered kind, in registration order."""
    return list(_KINDS.values())


def lookup(text: str) -> Kind:
    """The kind named ``text`` (its name, plural or a short name, any case). Raises
    UnknownKindError listing the known kinds."""
    kind = _BY_NAME.get(text.strip().lower())
    if kind is None:
        raise UnknownKindError(text)
    return kind


def parse(manifest: object, source: str = "") -> Parsed:
    """Validate one manifest of any applied kind. Raises SpecError listing every problem
    (an unknown ``kind`` names the kinds that can be applied)."""
    if type(manifest) is not dict and not isinstance(manifest, Mapping):  # dict: quicker
        raise SpecError(
            [
                FieldError(
                    "",
                    manifest,
                    "a manifest must be a mapping with apiVersion, kind, metadata, spec",
                )
            ],
            source,
        )
    given = manifest.get("kind")
    kind = _KINDS.get(given) if isinstance(given, str) else None
    if kind is None or not kind.is_applied or kind.parse is None or kind.spec_manifest is None:
        applied = [k for k in _KINDS.values() if k.is_applied]
        raise SpecError(
            [
                FieldError(
                    "kind",
                    manifest.get("kind"),
                    f"must be one of {', '.join(k.name for k in applied)}",
                )
            ],
            source,
        )
    templates = _TEMPLATES.get(kind.name)
    named = templates.key(manifest) if templates is not None else None
    found = templates.get(named[1]) if templates is not None and named is not None else None
    if found is not None and named is not None:
        template, spec, metadata = found
        obj = _renamed(template, named[0])
        metadata = {"name": named[0], **metadata}
    else:
        obj = kind.parse(manifest, source)
        spec = dict(kind.spec_manifest(obj))
        metadata = metadata_manifest(manifest)
        if templates is not None and named is not None:
            templates.put(named[1], obj, spec, metadata)  # keeps copies of spec and metadata
    normalised: dict[str, object] = {
        "apiVersion": API_VERSION,
        "kind": kind.name,
        "metadata": metadata,
        "spec": spec,
    }
    return Parsed(kind, str(obj.name), obj, normalised)
