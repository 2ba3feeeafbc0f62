"""A change to try on a snapshot before estimating (``phalanx ... --what-if``): queues' GPU
quotas set, nodes drained. Pure."""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field, replace

from phalanx.model.resources import GPU, GPU_MILLI_PER_DEVICE
from phalanx.scheduling import Snapshot


@dataclass(frozen=True, slots=True)
class WhatIf:
    """A change to try on the snapshot before estimating: ``queue_gpus`` sets queues' nominal
    GPU quota (whole GPUs, on every flavor they list); ``drained`` nodes take no new pods
    (what runs on them runs on to its end)."""

    queue_gpus: Mapping[str, float] = field(default_factory=dict)
    drained: frozenset[str] = frozenset()

    def key(self) -> Hashable:
        """What the change is, as a value that can key a cache."""
        return (tuple(sorted(self.queue_gpus.items())), self.drained)

    def apply(self, snapshot: Snapshot) -> Snapshot:
        """``snapshot`` with the change made. Raises ValueError naming an unknown queue or
        node."""
        known_queues = {q.name for q in snapshot.queues}
        known_nodes = {n.name for n in snapshot.nodes}
        for name in self.queue_gpus:
            if name not in known_queues:
                raise ValueError(
                    f"what-if: no queue {name!r}; queues: {', '.join(sorted(known_queues))}"
                )
        for name in self.drained:
            if name not in known_nodes:
                raise ValueError(
                    f"what-if: no node {name!r}; nodes: {', '.join(sorted(known_nodes))}"
                )
        queues = tuple(
            q
            if q.name not in self.queue_gpus
            else replace(
                q,
                flavors=tuple(
                    replace(
                        fq,
                        resources={
                            **fq.resources,
                            GPU: replace(
                                fq.quota(GPU),
                                nominal=round(self.queue_gpus[q.name] * GPU_MILLI_PER_DEVICE),
                            ),
                        },
                    )
                    for fq in q.flavors
                ),
            )
            for q in snapshot.queues
        )
        nodes = tuple(
            replace(n, is_quarantined=True) if n.name in self.drained else n for n in snapshot.nodes
        )
        return replace(snapshot, queues=queues, nodes=nodes)
