"""Lineage: which run and step produced an artifact from which inputs, and what was made
from it, read from PipelineRuns' statuses. Pure: statuses in, a walk out; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Production:
    """Step ``step`` of run ``run`` made ``output`` from ``inputs`` (name → hash)."""

    run: str
    step: str
    output: str
    inputs: Mapping[str, str]
    is_cached: bool = False


@dataclass(slots=True)
class LineageNode:
    """One artifact in a walk: who made it, and the next artifacts along the walk."""

    artifact: str
    made_by: list[Production] = field(default_factory=list)
    via: str = ""  # the input name (upstream walk) or consuming step (downstream walk)
    next: list[LineageNode] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "artifact": self.artifact,
            "via": self.via,
            "madeBy": [{"run": p.run, "step": p.step, "cached": p.is_cached} for p in self.made_by],
            "next": [n.to_json() for n in self.next],
        }


def productions(runs: Iterable[tuple[str, Mapping[str, Any]]]) -> list[Production]:
    """Every step output recorded in ``runs`` ((name, status) pairs)."""
    out: list[Production] = []
    for run, status in runs:
        for step, s in (status.get("steps") or {}).items():
            output = (s.get("output") or {}).get("hash")
            if output:
                out.append(
                    Production(
                        run,
                        step,
                        str(output),
                        dict(s.get("inputs") or {}),
                        s.get("state") == "Cached",
                    )
                )
    return out


def resolve(prefix: str, found: Iterable[Production]) -> list[str]:
    """The artifact hashes that start with ``prefix`` (``sha256:`` optional)."""
    wanted = prefix if prefix.startswith("sha256:") else "sha256:" + prefix
    hashes = {p.output for p in found} | {h for p in found for h in p.inputs.values()}
    return sorted(h for h in hashes if h.startswith(wanted))


def upstream(artifact: str, found: list[Production], depth: int = 50) -> LineageNode:
    """``artifact``, who made it, and recursively the inputs it was made from."""
    node = LineageNode(artifact, [p for p in found if p.output == artifact])
    if depth > 0:
        makers = [p for p in node.made_by if not p.is_cached] or node.made_by
        if makers:
            for name, digest in sorted(makers[0].inputs.items()):
                child = upstream(digest, found, depth - 1)
                child.via = name
                node.next.append(child)
    return node


def downstream(artifact: str, found: list[Production], depth: int = 50) -> LineageNode:
    """``artifact`` and recursively what was made from it (the consuming step in ``via``)."""
    node = LineageNode(artifact, [p for p in found if p.output == artifact])
    if depth > 0:
        seen: set[str] = set()
        for p in found:
            if artifact in p.inputs.values() and p.output not in seen:
                seen.add(p.output)
                child = downstream(p.output, found, depth - 1)
                child.via = f"{p.run}/{p.step}"
                node.next.append(child)
    return node
