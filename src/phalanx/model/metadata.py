"""Object metadata shared by every kind: labels, annotations, owner references, and label
selectors (``get -l team=a,tier!=batch``).

Pure: no I/O. Validation of metadata in manifests lives with the other field checks in
``phalanx.model.specs``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

#: A label key: an optional DNS-subdomain prefix and ``/``, then a name of at most 63
#: characters (alphanumerics, ``-``, ``_``, ``.``; alphanumeric at both ends).
LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
LABEL_PREFIX = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
#: A label value: empty, or like a name.
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
#: All annotations of one object together, in bytes of UTF-8 (as Kubernetes allows).
MAX_ANNOTATIONS_BYTES = 256 * 1024


def is_label_key(key: str) -> bool:
    """Whether ``key`` is a valid label key (``[prefix/]name``)."""
    prefix, _, name = key.rpartition("/")
    return bool(LABEL_NAME.match(name)) and (not prefix or bool(LABEL_PREFIX.match(prefix)))


@dataclass(frozen=True, slots=True)
class OwnerReference:
    """The object that owns this one: deleting the owner deletes what it owns."""

    kind: str
    name: str
    uid: str = ""

    def to_dict(self) -> dict[str, str]:
        out = {"kind": self.kind, "name": self.name}
        if self.uid:
            out["uid"] = self.uid
        return out


@dataclass(frozen=True, slots=True)
class Requirement:
    """One term of a label selector: ``key=value``, ``key!=value``, ``key`` or ``!key``."""

    key: str
    operator: str  # "=", "!=", "exists", "!exists"
    value: str = ""

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "exists":
            return self.key in labels
        if self.operator == "!exists":
            return self.key not in labels
        if self.operator == "=":
            return labels.get(self.key) == self.value
        return labels.get(self.key) != self.value


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """Terms that must all hold (``a=1,b!=2,c,!d``); the empty selector matches everything."""

    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def __str__(self) -> str:
        parts = []
        for r in self.requirements:
            if r.operator == "exists":
                parts.append(r.key)
            elif r.operator == "!exists":
                parts.append(f"!{r.key}")
            else:
                parts.append(f"{r.key}{r.operator}{r.value}")
        return ",".join(parts)


def parse_selector(text: str) -> LabelSelector:
    """Parse ``key=value,key!=value,key,!key`` (``==`` means ``=``); raise ValueError naming
    the bad term and the syntax."""
    requirements: list[Requirement] = []
    for raw in text.split(","):
        term = raw.strip()
        if not term:
            continue
        if "!=" in term:
            key, _, value = term.partition("!=")
            requirement = Requirement(key.strip(), "!=", value.strip())
        elif "=" in term:
            key, _, value = term.replace("==", "=", 1).partition("=")
            requirement = Requirement(key.strip(), "=", value.strip())
        elif term.startswith("!"):
            requirement = Requirement(term[1:].strip(), "!exists")
        else:
            requirement = Requirement(term, "exists")
        if not is_label_key(requirement.key) or not LABEL_VALUE.match(requirement.value):
            raise ValueError(
                f"label selector term {term!r} is not valid; use key=value, key!=value, key "
                "or !key, separated by commas (e.g. team=a,tier!=batch)"
            )
        requirements.append(requirement)
    return LabelSelector(tuple(requirements))
