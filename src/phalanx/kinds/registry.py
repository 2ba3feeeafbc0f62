"""The registry of kinds: what ``apply``, ``get``, ``describe``, ``delete`` and the API
dispatch through. Each kind's module builds one ``Kind`` and registers it, so a new kind
touches nothing else. Imports only phalanx.model.
"""

from __future__ import annotations

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


def register(kind: Kind) -> Kind:
    """Add ``kind`` to the registry (its names must be new); return it."""
    taken = {n for k in _KINDS.values() for n in k.names} & kind.names
    if taken or kind.name in _KINDS:
        raise ValueError(f"kind {kind.name}: names already registered: {sorted(taken)}")
    _KINDS[kind.name] = kind
    return kind


def kinds() -> list[Kind]:
    """Every registered kind, in registration order."""
    return list(_KINDS.values())


def lookup(text: str) -> Kind:
    """The kind named ``text`` (its name, plural or a short name, any case). Raises
    UnknownKindError listing the known kinds."""
    wanted = text.strip().lower()
    for kind in _KINDS.values():
        if wanted in kind.names:
            return kind
    raise UnknownKindError(text)


def parse(manifest: object, source: str = "") -> Parsed:
    """Validate one manifest of any applied kind. Raises SpecError listing every problem
    (an unknown ``kind`` names the kinds that can be applied)."""
    if not isinstance(manifest, Mapping):
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
    applied = [k for k in _KINDS.values() if k.is_applied]
    kind = next((k for k in applied if k.name == manifest.get("kind")), None)
    if kind is None or kind.parse is None or kind.spec_manifest is None:
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
    obj = kind.parse(manifest, source)
    normalised: dict[str, object] = {
        "apiVersion": API_VERSION,
        "kind": kind.name,
        "metadata": metadata_manifest(manifest),
        "spec": dict(kind.spec_manifest(obj)),
    }
    return Parsed(kind, str(obj.name), obj, normalised)
