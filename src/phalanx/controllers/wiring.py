"""Environment wiring for pods (ARCHITECTURE.md §8): who they are, where the gang meets.

Pure function of the job, its placements and the rendezvous address; no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from phalanx.backends.base import RendezvousInfo
from phalanx.model.objects import JobSpec, PodPlacement


def rank_order(job: JobSpec, placements: Sequence[PodPlacement]) -> list[PodPlacement]:
    """Return placements in rank order: pod sets in spec order, then by index."""
    position = {ps.name: i for i, ps in enumerate(job.pod_sets)}
    return sorted(placements, key=lambda p: (position[p.pod_set], p.index))


def pod_env(
    job: JobSpec,
    placements: Sequence[PodPlacement],
    rendezvous: RendezvousInfo,
    attempt: int,
    checkpoint_dir: str,
) -> dict[tuple[str, int], dict[str, str]]:
    """Return the environment of every pod, keyed by (pod set, index).

    The pod set's own ``env`` comes first; the wiring (PHALANX_*, and torchrun's WORLD_SIZE,
    RANK, LOCAL_RANK, MASTER_ADDR, MASTER_PORT) overrides it, because a wrong rank would
    silently break the gang.
    """
    ordered = rank_order(job, placements)
    env_of_set: Mapping[str, Mapping[str, str]] = {ps.name: ps.env for ps in job.pod_sets}
    per_node: dict[str, int] = {}
    out: dict[tuple[str, int], dict[str, str]] = {}
    for rank, p in enumerate(ordered):
        local_rank = per_node.get(p.node, 0)
        per_node[p.node] = local_rank + 1
        env = dict(env_of_set[p.pod_set])
        env.update(
            {
                "PHALANX_JOB": job.name,
                "PHALANX_NAMESPACE": job.namespace,
                "PHALANX_POD_SET": p.pod_set,
                "PHALANX_INDEX": str(p.index),
                "PHALANX_ATTEMPT": str(attempt),
                "PHALANX_NODE": p.node,
                "PHALANX_CHECKPOINT_DIR": checkpoint_dir,
                "WORLD_SIZE": str(len(ordered)),
                "RANK": str(rank),
                "LOCAL_RANK": str(local_rank),
                "MASTER_ADDR": rendezvous.master_addr,
                "MASTER_PORT": str(rendezvous.master_port),
            }
        )
        out[(p.pod_set, p.index)] = env
    return out
