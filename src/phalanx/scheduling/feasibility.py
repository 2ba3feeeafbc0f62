"""Whether a job could ever be admitted: the checks that no amount of waiting changes.

A job ``NeverFits`` a flavor when, with every node of that flavor empty (ready or not), one of
its pods fits no node, its gang holds more pods than the nodes could take at once, or no
topology domain could hold it; it ``ExceedsQueueLimit`` when it needs more of a resource than
its queue could use even borrowing everything its cohort lends (see ``QuotaState.limit_reason``).
Each check is a necessary condition of admission, so "never" is never said of a job that could
run. The cycle runs these first (a job that asks for 1,000 GPUs per pod on 2-GPU nodes gets
its own reason rather than a quota one), and ``apply`` warns with them at once.

Pure: imports only phalanx.model and the scheduling core.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from phalanx.model.objects import (
    NODE_TOPOLOGY,
    JobSpec,
    Node,
    Queue,
    ResourceFlavor,
    TopologyConstraint,
    TopologyMode,
)
from phalanx.model.reasons import Fact, Reason, ReasonCode, per_flavor, request_facts
from phalanx.model.resources import GPU_MILLI_PER_DEVICE, Resources
from phalanx.scheduling.cluster import Journal
from phalanx.scheduling.quota import QuotaState

_Key = tuple[str, tuple[tuple[Resources, int], ...], int, TopologyConstraint | None]


@dataclass(frozen=True, slots=True)
class _Capacity:
    """What one node of a flavor holds when empty."""

    name: str
    gpus: int
    cpu_milli: int
    memory_bytes: int

    def slots(self, r: Resources) -> int:
        """How many pods of ``r`` the node holds at once when empty (an upper bound)."""
        counts = []
        if r.gpu_milli >= GPU_MILLI_PER_DEVICE:
            counts.append(self.gpus // (r.gpu_milli // GPU_MILLI_PER_DEVICE))
        elif r.gpu_milli:
            counts.append(self.gpus * (GPU_MILLI_PER_DEVICE // r.gpu_milli))
        if r.cpu_milli:
            counts.append(self.cpu_milli // r.cpu_milli)
        if r.memory_bytes:
            counts.append(self.memory_bytes // r.memory_bytes)
        return min(counts) if counts else 1 << 30

    def holds(self, r: Resources) -> bool:
        return self.slots(r) >= 1


class Feasibility:
    """The never-fits checks over one cluster's nodes (ready or not), memoised per job
    shape: the answers change only when nodes or flavors do."""

    def __init__(self, nodes: Sequence[Node], flavors: Sequence[ResourceFlavor]) -> None:
        ordered = sorted(nodes, key=lambda n: n.name)
        self._members: dict[str, list[tuple[Node, _Capacity]]] = {
            f.name: [
                (
                    n,
                    _Capacity(
                        n.name, len(n.gpus), n.allocatable.cpu_milli, n.allocatable.memory_bytes
                    ),
                )
                for n in ordered
                if f.matches(n.labels)
            ]
            for f in flavors
        }
        # Per flavor, its nodes' distinct capacities (each with the first node by name that
        # has it) and how many nodes have each: the checks count slots per capacity.
        self._kinds: dict[str, list[tuple[_Capacity, int]]] = {}
        for flavor, members in self._members.items():
            firsts: dict[tuple[int, int, int], _Capacity] = {}
            counts: dict[tuple[int, int, int], int] = {}
            for _, c in members:
                size = (c.gpus, c.cpu_milli, c.memory_bytes)
                firsts.setdefault(size, c)
                counts[size] = counts.get(size, 0) + 1
            self._kinds[flavor] = [(c, counts[size]) for size, c in firsts.items()]
        self._memo: dict[_Key, Reason | None] = {}

    def never_fits(self, job: JobSpec, flavor: str) -> Reason | None:
        """Return the ``NeverFits`` reason of ``job`` on ``flavor``, or None if it could fit
        (or the flavor is unknown)."""
        key: _Key = (
            flavor,
            tuple((ps.resources, ps.replicas) for ps in job.pod_sets),
            job.gang_minimum,
            job.topology,
        )
        if key not in self._memo:
            self._memo[key] = self._never_fits(job, flavor)
        return self._memo[key]

    def _never_fits(self, job: JobSpec, flavor: str) -> Reason | None:
        members = self._members.get(flavor)
        if members is None:
            return None
        # Distinct capacities in the order of their first node by name: ``max`` below picks
        # the same (first) node as over every node.
        caps = [c for c, _ in self._kinds[flavor]]
        base: dict[str, Fact] = {"flavor": flavor, "nodes_total": len(members)}
        hardest = max(job.pod_sets, key=lambda ps: (ps.resources.gpu_milli, ps.resources.cpu_milli))
        # 1. No node at all.
        if not caps:
            return Reason(
                ReasonCode.NEVER_FITS,
                {
                    **base,
                    "check": "NoNodes",
                    "pod_set": hardest.name,
                    **request_facts(hardest.resources),
                },
            )
        # 2. A pod that fits no node even when it is empty.
        for ps in sorted(job.pod_sets, key=lambda ps: ps.name):
            r = ps.resources
            if not any(c.holds(r) for c in caps):
                largest = max(caps, key=lambda c: (c.gpus, c.cpu_milli, c.memory_bytes))
                return Reason(
                    ReasonCode.NEVER_FITS,
                    {
                        **base,
                        "check": "Node",
                        "pod_set": ps.name,
                        **request_facts(r),
                        "max_node_gpus": largest.gpus,
                        "max_node_cpu_milli": max(c.cpu_milli for c in caps),
                        "max_node_memory_bytes": max(c.memory_bytes for c in caps),
                        "largest_node": largest.name,
                    },
                )
        # 3. A gang larger than all the flavor's nodes together hold.
        minimum = job.gang_minimum
        shapes = {ps.resources for ps in job.pod_sets}
        sets = [(ps.name, ps.resources, ps.replicas) for ps in job.pod_sets]
        if len(shapes) == 1:
            sets = [(sets[0][0], sets[0][1], minimum)]
        elif minimum < job.pod_count:
            sets = []  # which pods make up the minimum is open: only the checks above hold
        for name, r, count in sets:
            slots = sum(c.slots(r) * n for c, n in self._kinds[flavor])
            if slots < count:
                return Reason(
                    ReasonCode.NEVER_FITS,
                    {
                        **base,
                        "check": "Gang",
                        "pod_set": name,
                        **request_facts(r),
                        "gang_minimum": count,
                        "slots": slots,
                    },
                )
        if len(sets) > 1:
            need = sum(ps.resources.gpu_milli * ps.replicas for ps in job.pod_sets)
            capacity = sum(c.gpus * n for c, n in self._kinds[flavor]) * GPU_MILLI_PER_DEVICE
            if need > capacity:
                return Reason(
                    ReasonCode.NEVER_FITS,
                    {
                        **base,
                        "check": "GangTotal",
                        "needed_gpu_milli": need,
                        "capacity_gpu_milli": capacity,
                    },
                )
        # 4. A required topology domain that no domain could ever be.
        topology = job.topology
        if topology is not None and topology.mode is TopologyMode.REQUIRED:
            return self._never_fits_topology(job, members, topology, base)
        return None

    @staticmethod
    def _never_fits_topology(
        job: JobSpec,
        members: list[tuple[Node, _Capacity]],
        topology: TopologyConstraint,
        base: dict[str, Fact],
    ) -> Reason | None:
        domains: dict[str, Resources] = {}
        for node, cap in members:
            value = node.name if topology.key == NODE_TOPOLOGY else node.labels.get(topology.key)
            if value is not None:
                domains[value] = domains.get(value, Resources()) + Resources(
                    cap.cpu_milli, cap.memory_bytes, cap.gpus * GPU_MILLI_PER_DEVICE
                )
        total = job.total_request
        if any(total.fits_in(capacity) for capacity in domains.values()):
            return None
        return Reason(
            ReasonCode.NEVER_FITS,
            {
                **base,
                "check": "Topology",
                "topology_key": topology.key,
                "domains_total": len(domains),
                **request_facts(total),
            },
        )


def admission_warning(
    job: JobSpec,
    queues: Sequence[Queue],
    flavors: Sequence[ResourceFlavor],
    nodes: Sequence[Node],
    feasibility: Feasibility | None = None,
    quota: QuotaState | None = None,
) -> Reason | None:
    """Return why ``job`` can never be admitted as things stand — every flavor of its queue
    is missing, never fits (``NeverFits``) or is beyond the queue's reach
    (``ExceedsQueueLimit``) — or None if it could be, or its queue does not exist (yet).
    ``feasibility`` and ``quota``, if given, must be built from these ``nodes``, ``flavors``
    and ``queues`` (a caller checking many jobs builds them once)."""
    queue = next((q for q in queues if q.name == job.queue), None)
    if queue is None:
        return None
    feasibility = feasibility or Feasibility(nodes, flavors)
    quota = quota or QuotaState(tuple(queues), Journal())
    known = {f.name for f in flavors}
    reasons: list[Reason] = []
    for fq in queue.flavors:
        if fq.flavor not in known:
            reason: Reason | None = Reason(
                ReasonCode.FLAVOR_NOT_FOUND, {"flavor": fq.flavor, "queue": queue.name}
            )
        else:
            reason = feasibility.never_fits(job, fq.flavor) or quota.limit_reason(
                queue.name, fq.flavor, job.total_request
            )
        if reason is None:
            return None
        reasons.append(reason)
    return per_flavor(reasons) if reasons else None
