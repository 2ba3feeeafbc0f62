"""Gang placement on the scratch cluster: every pod of a gang gets a node and concrete GPU
devices, or none does (the trial is rolled back whole).

Candidates come from the flavor index (tightest GPU fit first), are filtered by the filter
plugins, and at most ``max_candidates`` feasible ones are scored by the policy's score plugins.
When a pod cannot be placed, ``explain`` states why with the numbers. Pure.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

from phalanx.model.objects import (
    NODE_TOPOLOGY,
    DeviceShare,
    JobSpec,
    PodPlacement,
    TopologyConstraint,
    TopologyMode,
)
from phalanx.model.reasons import Fact, Reason, ReasonCode, request_facts
from phalanx.model.resources import Resources
from phalanx.scheduling.cluster import FULL, ClusterState, FlavorIndex, NodeState
from phalanx.scheduling.plugins import (
    GPU_MODEL_LABEL,
    PodRequest,
    Score,
    Shape,
    choose_devices,
    reads_node_identity,
    run_filters,
)

#: Below this many nodes in a flavor, a failure reason counts every node's rejection reason.
_FULL_EXPLAIN_MAX_NODES = 256
#: Bound on remembered evaluations (a long session sees many node states).
_MAX_EVALUATIONS = 1 << 20
#: Bound on the (typical shapes, pod shape) pairs whose evaluations and rankings of nodes
#: are kept (see ``_Ranking``).
_MAX_KEPT = 256

#: A kept ranking catches up with at most this many changes per node of its flavor; past
#: that it is rebuilt (see ``Placer._ranked_best``).
_CATCH_UP_PER_NODE = 8

#: One entry of a ranking: (minus the score, node order, tie-break, the node's state when
#: scored, the node, the devices it would give).
_Entry = tuple[float, int, int, object, NodeState, tuple[DeviceShare, ...]]


@dataclass(slots=True)
class _Ranking:
    """The feasible nodes of one flavor for one pod shape, best first (a heap on minus the
    score, then node order), as of change ``synced`` of the cluster's change log. Entries of
    nodes that changed since they were scored are stale: they are dropped when they reach the
    top, and the node's current evaluation is pushed when the ranking catches up."""

    synced: int
    heap: list[_Entry] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class GangResult:
    """Placements for a gang, or the reason it does not fit (``placements`` empty; an
    ``Unschedulable`` reason)."""

    placements: tuple[PodPlacement, ...]
    reason: Reason | None = None


def expand_pods(job: JobSpec) -> list[PodRequest]:
    """Return the job's pods, largest GPU request first (they are the hardest to fit)."""
    pods = [
        PodRequest(ps.name, i, ps.resources, ps.tolerations, job.name)
        for ps in job.pod_sets
        for i in range(ps.replicas)
    ]
    pods.sort(key=lambda p: (-p.resources.gpu_milli, -p.resources.cpu_milli))
    return pods


class Placer:
    """Places pods and gangs on a ClusterState with one policy's score plugins."""

    def __init__(
        self,
        cluster: ClusterState,
        scores: tuple[tuple[Score, float], ...],
        shapes: Sequence[Shape],
        max_candidates: int,
        *,
        searches_devices: bool | None = None,
        ranked: bool = True,
    ) -> None:
        """``ranked``: whether ``place_pod`` may use the kept rankings (``_ranked_best``) where
        they give the scan's answer; False always scans (tests compare the two)."""
        self.cluster = cluster
        self.scores = scores
        self.shapes = shapes
        self.max_candidates = max(1, max_candidates)
        # (flavor, resources, tolerations) that found no node at a cluster version.
        self._infeasible: dict[tuple[str, Resources, tuple[object, ...]], int] = {}
        self._domains: dict[tuple[str, str], dict[str, list[NodeState]]] = {}
        self._explained: dict[tuple[str, Resources, tuple[object, ...]], tuple[int, Reason]] = {}
        # Scores that read the node's identity (``random``) are added per node; the others see
        # only the node's state, so their sum is memoised per (pod resources, tolerations) by
        # node state id, or None when infeasible: on a large cluster most candidates then cost
        # a lookup (kept until the shapes change).
        self._identity_scores = tuple((fn, w) for fn, w in scores if reads_node_identity(fn))
        self._state_scores = tuple((fn, w) for fn, w in scores if not reads_node_identity(fn))
        # Keyed by the typical shapes too (scores read them): when the shapes change and
        # change back, as they do from one cycle to the next, the evaluations still hold.
        self._shapes_key: tuple[Shape, ...] = tuple(shapes)
        self._evaluations: dict[
            tuple[tuple[Shape, ...], Resources, tuple[object, ...]],
            dict[object, tuple[float, tuple[DeviceShare, ...]] | None],
        ] = {}
        #: Whether a fraction's device is chosen by score rather than tightest fit: by default
        #: when a score judges devices (fragmentation does; best-fit sees only node totals).
        self.searches_devices = (
            any(getattr(fn, "judges_devices", False) for fn, _ in scores)
            if searches_devices is None
            else searches_devices
        )
        #: Whether equal scores go to the first node (by name) and the lowest device index, as
        #: in the published FGD simulator, rather than to the first candidate found.
        self.ties_by_order = any(getattr(fn, "ties_by_order", False) for fn, _ in scores)
        self._by_model = False
        #: Kept rankings by (shapes, flavor, resources, tolerations); see ``_ranked_best``.
        self._rankings: dict[
            tuple[tuple[Shape, ...], str, Resources, tuple[object, ...]], _Ranking
        ] = {}
        self._tie = itertools.count()
        self.ranked = ranked

    def set_shapes(self, shapes: Sequence[Shape]) -> None:
        """Replace the typical pod shapes (fragmentation): clears the score memos nodes hold;
        evaluations and rankings are kept by shapes, for when these shapes come back."""
        self.shapes = shapes
        self._shapes_key = tuple(shapes)
        # Shapes restricted to GPU models make node-state scores depend on the node's model.
        self._by_model = any(shape.models for shape in shapes)
        memoed = self.cluster.memoed
        for node in memoed:
            node.frag_memo = node.strand_memo = None
        memoed.clear()

    # ---- one pod ----

    def _index_candidates(self, pod: PodRequest, index: FlavorIndex) -> Iterator[NodeState]:
        milli = pod.resources.gpu_milli
        buckets = index.by_whole
        if 0 < milli < FULL:
            seen: set[str] = set()
            for node, _dev, _free in index.partial_devices_from(milli):
                if node.name not in seen:
                    seen.add(node.name)
                    yield node
            for count in range(1, len(buckets)):
                yield from list(buckets[count].values())
            return
        for count in range(milli // FULL, len(buckets)):
            yield from list(buckets[count].values())

    def place_pod(
        self, pod: PodRequest, flavor: str, domain: Sequence[NodeState] | None = None
    ) -> tuple[NodeState, tuple[DeviceShare, ...]] | None:
        """Return the best node and devices for ``pod`` (restricted to ``domain`` if given), or
        None if no node fits. Does not change the cluster."""
        cluster = self.cluster
        key = (flavor, pod.resources, pod.tolerations)
        if domain is None and self._infeasible.get(key) == cluster.version:
            return None
        index = cluster.flavors[flavor]
        evaluations = self._evaluations_for(pod)
        if (
            domain is None
            and self.ranked
            and self.ties_by_order
            and not self._identity_scores
            and self.max_candidates >= len(index.nodes)
        ):
            choice = self._ranked_best(pod, (self._shapes_key, *key), index, evaluations)
            if choice is None:
                self._infeasible[key] = cluster.version
            return choice
        source = domain if domain is not None else self._index_candidates(pod, index)
        best: NodeState | None = None
        best_devices: tuple[DeviceShare, ...] = ()
        best_score = 0.0
        found = 0
        identity = self._identity_scores
        by_order = self.ties_by_order
        by_model = self._by_model
        for node in source:
            state: object = node.state_id()
            if by_model:
                state = (state, node.labels.get(GPU_MODEL_LABEL, ""))
            if state in evaluations:
                result = evaluations[state]
            else:
                result = evaluations[state] = self._evaluate(pod, node)
            if result is not None and identity:
                extra = 0.0
                for fn, weight in identity:
                    extra += weight * fn(pod, node, result[1], self.shapes)
                result = (result[0] + extra, result[1])
            if result is None:
                continue
            score, devices = result
            if (
                best is None
                or score > best_score
                or (by_order and score == best_score and node.order < best.order)
            ):
                best, best_devices, best_score = node, devices, score
            found += 1
            if found >= self.max_candidates:
                break
        if best is None:
            if domain is None:
                self._infeasible[key] = cluster.version
            return None
        return best, best_devices

    def _evaluations_for(
        self, pod: PodRequest
    ) -> dict[object, tuple[float, tuple[DeviceShare, ...]] | None]:
        """The evaluations of ``pod``'s shape under the current typical shapes, by node state
        (kept for the last ``_MAX_KEPT`` pairs)."""
        key = (self._shapes_key, pod.resources, pod.tolerations)
        kept = self._evaluations
        evaluations = kept.pop(key, None)  # put back last: the oldest unused go first
        if evaluations is None or len(evaluations) > _MAX_EVALUATIONS:
            if len(kept) >= _MAX_KEPT:
                del kept[next(iter(kept))]
            evaluations = {}
        kept[key] = evaluations
        return evaluations

    def _ranked_best(
        self,
        pod: PodRequest,
        key: tuple[tuple[Shape, ...], str, Resources, tuple[object, ...]],
        index: FlavorIndex,
        evaluations: dict[object, tuple[float, tuple[DeviceShare, ...]] | None],
    ) -> tuple[NodeState, tuple[DeviceShare, ...]] | None:
        """``place_pod`` without a domain when the policy breaks ties by node order, no score
        reads the node's identity and every candidate may be scored: the same answer as the
        scan over the candidates (the highest score, then the first node by order; a node's
        evaluation is a function of its state), from a ranking kept per pod shape that catches
        up with the nodes changed since it was last read rather than scoring every node.
        Feasible nodes are a subset of the index's candidates, so ranking the candidates and
        then every changed node that has an evaluation ranks the same nodes."""
        cluster = self.cluster
        changed, base = cluster.changed, cluster.changed_base
        ranking = self._rankings.pop(key, None)  # put back last, as evaluations are
        # Catching up costs a look at each change and an entry per distinct node changed;
        # a rebuild, an entry per candidate. Placement packs, so changes mostly repeat the
        # same few nodes: a ranking is rebuilt only when the changes to read outnumber the
        # nodes several times over (or they are no longer logged, or stale entries pile up).
        if ranking is not None and (
            ranking.synced < base
            or base + len(changed) - ranking.synced > _CATCH_UP_PER_NODE * len(index.nodes)
            or len(ranking.heap) > 4 * len(index.nodes) + 64
        ):
            ranking = None
        if ranking is None:
            ranking = _Ranking(base + len(changed))
            ranking.heap = self._entries(pod, index, evaluations)
            heapq.heapify(ranking.heap)
            if len(self._rankings) >= _MAX_KEPT:
                del self._rankings[next(iter(self._rankings))]
        else:
            # Each node changed since, once, in the order of its first change.
            for node in dict.fromkeys(changed[ranking.synced - base :]):
                if index not in node.flavor_indexes:
                    continue
                entry = self._entry(pod, node, evaluations)
                if entry is not None:
                    heapq.heappush(ranking.heap, entry)
            ranking.synced = base + len(changed)
        self._rankings[key] = ranking
        heap = ranking.heap
        by_model = self._by_model
        while heap:
            _, _, _, state, node, devices = heap[0]
            now: object = node.state_id()
            if by_model:
                now = (now, node.labels.get(GPU_MODEL_LABEL, ""))
            if now == state:
                return node, devices
            heapq.heappop(heap)
        return None

    def _entries(
        self,
        pod: PodRequest,
        index: FlavorIndex,
        evaluations: dict[object, tuple[float, tuple[DeviceShare, ...]] | None],
    ) -> list[_Entry]:
        """The ranking entries of every candidate of ``index`` that ``pod`` fits, as ``_entry``
        gives them one by one: a rebuild ranks every node of the flavor (a new pod shape does
        so on a thousand nodes), so the per-node steps are inlined here."""
        by_model = self._by_model
        tie = self._tie
        out: list[_Entry] = []
        for node in self._index_candidates(pod, index):
            state: object = node.state_id()
            if by_model:
                state = (state, node.labels.get(GPU_MODEL_LABEL, ""))
            if state in evaluations:
                result = evaluations[state]
            else:
                result = evaluations[state] = self._evaluate(pod, node)
            if result is not None:
                out.append((-result[0], node.order, next(tie), state, node, result[1]))
        return out

    def _entry(
        self,
        pod: PodRequest,
        node: NodeState,
        evaluations: dict[object, tuple[float, tuple[DeviceShare, ...]] | None],
    ) -> _Entry | None:
        """The ranking entry of ``node`` in its current state, or None if ``pod`` does not
        fit it."""
        state: object = node.state_id()
        if self._by_model:
            state = (state, node.labels.get(GPU_MODEL_LABEL, ""))
        if state in evaluations:
            result = evaluations[state]
        else:
            result = evaluations[state] = self._evaluate(pod, node)
        if result is None:
            return None
        return (-result[0], node.order, next(self._tie), state, node, result[1])

    def _evaluate(
        self, pod: PodRequest, node: NodeState
    ) -> tuple[float, tuple[DeviceShare, ...]] | None:
        """Return the policy's score for ``pod`` on ``node`` and the devices it would get, or
        None if it does not fit. A fraction of a GPU tries one device per distinct free amount
        when the policy searches devices (the tightest wins ties), else the tightest."""
        if run_filters(pod, node) is not None:
            return None
        milli = pod.resources.gpu_milli
        if self.searches_devices and 0 < milli < FULL:
            best: tuple[float, tuple[DeviceShare, ...]] | None = None
            tried: set[int] = set()
            by_index = self.ties_by_order
            for free in sorted(node.gpu_free):
                if free < milli or free in tried:
                    continue
                tried.add(free)
                one = (DeviceShare(node.gpu_free.index(free), milli),)
                score = self._score(pod, node, one)
                if (
                    best is None
                    or score > best[0]
                    or (by_index and score == best[0] and one[0].index < best[1][0].index)
                ):
                    best = (score, one)
            return best
        devices = choose_devices(pod, node)
        if milli and not devices:
            return None
        return self._score(pod, node, devices), devices

    def _score(self, pod: PodRequest, node: NodeState, devices: tuple[DeviceShare, ...]) -> float:
        self.cluster.memoed.add(node)  # the scores may memoise on it (see set_shapes)
        score = 0.0
        for fn, weight in self._state_scores:
            score += weight * fn(pod, node, devices, self.shapes)
        return score

    # ---- a gang ----

    def place_gang(self, job: JobSpec, flavor: str) -> GangResult:
        """Place every pod of ``job`` on ``flavor`` and keep the assignments on the scratch
        cluster; on failure roll everything back and return the reason."""
        pods = expand_pods(job)
        topology = job.topology
        if topology is None:
            return self._place_in(job, pods, flavor, None)
        domains = self._candidate_domains(flavor, topology.key, pods)
        last: tuple[str, Reason | None] = ("", None)
        for name, nodes in domains:
            result = self._place_in(job, pods, flavor, nodes)
            if result.placements:
                return result
            last = (name, result.reason)
        if topology.mode is TopologyMode.PREFERRED:
            return self._place_in(job, pods, flavor, None)
        return GangResult((), self._explain_topology(flavor, topology, pods, len(domains), *last))

    def _place_in(
        self, job: JobSpec, pods: list[PodRequest], flavor: str, domain: Sequence[NodeState] | None
    ) -> GangResult:
        cluster = self.cluster
        mark = cluster.journal.mark()
        placed: list[PodPlacement] = []
        failed: list[PodRequest] = []
        minimum = job.gang_minimum
        for pod in pods:
            choice = self.place_pod(pod, flavor, domain)
            if choice is None:
                failed.append(pod)
                if len(pods) - len(failed) < minimum:
                    break
                continue
            node, devices = choice
            cluster.assign(node, pod.resources, devices)
            placed.append(PodPlacement(pod.pod_set, pod.index, node.name, devices))
        if len(placed) >= minimum:
            placed.sort(key=lambda p: p.pod_key)
            return GangResult(tuple(placed))
        pod = failed[0]
        reason = self.explain(pod, flavor, domain)  # before rollback: the state it failed in
        cluster.journal.rollback(mark)
        if len(pods) > 1:
            reason = Reason(
                reason.code,
                {
                    **reason.facts,
                    "gang_pods": len(pods),
                    "gang_minimum": minimum,
                    "pods_placed": len(placed),
                    "pod": f"{pod.pod_set}-{pod.index}",
                },
            )
        return GangResult((), reason)

    def _candidate_domains(
        self, flavor: str, key: str, pods: list[PodRequest]
    ) -> list[tuple[str, list[NodeState]]]:
        """Domains (nodes sharing a label value) that could hold the whole gang, tightest
        first."""
        cached = self._domains.get((flavor, key))
        if cached is None:
            cached = {}
            for node in self.cluster.flavors[flavor].nodes:
                value = node.name if key == NODE_TOPOLOGY else node.labels.get(key)
                if value is not None:
                    cached.setdefault(value, []).append(node)
            self._domains[(flavor, key)] = cached
        need = Resources()
        for pod in pods:
            need = need + pod.resources
        fitting: list[tuple[int, str, list[NodeState]]] = []
        for value, nodes in cached.items():
            free_gpu = sum(n.free_gpu_milli for n in nodes)
            if (
                free_gpu >= need.gpu_milli
                and sum(n.free_cpu for n in nodes) >= need.cpu_milli
                and sum(n.free_mem for n in nodes) >= need.memory_bytes
            ):
                fitting.append((free_gpu, value, nodes))
        fitting.sort(key=lambda item: (item[0], item[1]))
        return [(value, nodes) for _, value, nodes in fitting]

    # ---- reasons ----

    def explain(
        self, pod: PodRequest, flavor: str, domain: Sequence[NodeState] | None = None
    ) -> Reason:
        """Return why ``pod`` fits no node of ``flavor`` (or of ``domain``): an
        ``Unschedulable`` reason with the numbers.

        Memoised per cluster version: when a full cluster turns away many jobs of the same
        shape, the reason is worked out once.
        """
        if domain is not None:
            return self._explain(pod, flavor, list(domain))
        key = (flavor, pod.resources, pod.tolerations)
        cached = self._explained.get(key)
        if cached is None or cached[0] != self.cluster.version:
            cached = self._explained[key] = (self.cluster.version, self._explain(pod, flavor, None))
        return cached[1]

    def _explain(self, pod: PodRequest, flavor: str, domain: list[NodeState] | None) -> Reason:
        index = self.cluster.flavors[flavor]
        nodes = domain if domain is not None else index.nodes
        r = pod.resources
        facts: dict[str, Fact] = {"flavor": flavor, **request_facts(r), "nodes_total": len(nodes)}
        if not nodes:
            facts["not_ready_nodes"] = len(self.cluster.unschedulable)
            return Reason(ReasonCode.UNSCHEDULABLE, facts)
        biggest = max(nodes, key=_capacity) if domain is not None else index.biggest
        assert biggest is not None  # a flavor with nodes has a biggest one
        # Checked before placement against every node of the flavor (feasibility.py), a pod
        # too large for all of them NeverFits; here a larger node is not ready or is outside
        # the domain, so this is only why it does not fit now.
        if r.gpu_milli >= FULL and biggest.gpu_count * FULL < r.gpu_milli:
            facts.update(largest_node=biggest.name, largest_node_gpus=biggest.gpu_count)
            return Reason(ReasonCode.UNSCHEDULABLE, facts)
        max_cpu = max(n.cap_cpu for n in nodes) if domain is not None else index.max_cpu
        max_mem = max(n.cap_mem for n in nodes) if domain is not None else index.max_mem
        if max_cpu < r.cpu_milli or max_mem < r.memory_bytes:
            facts.update(
                largest_node=biggest.name,
                largest_node_cpu_milli=max_cpu,
                largest_node_memory_bytes=max_mem,
            )
            return Reason(ReasonCode.UNSCHEDULABLE, facts)
        facts.update(self._largest_free(r, index, nodes, use_index=domain is None))
        if len(nodes) <= _FULL_EXPLAIN_MAX_NODES:
            counts: dict[str, int] = {}
            for node in nodes:
                why = self._why_not(pod, node)
                counts[why] = counts.get(why, 0) + 1
            facts.update(nodes_fit=0, rejections=dict(sorted(counts.items())))
        return Reason(ReasonCode.UNSCHEDULABLE, facts)

    def _why_not(self, pod: PodRequest, node: NodeState) -> str:
        reason = run_filters(pod, node)
        if reason is None and pod.resources.gpu_milli and not choose_devices(pod, node):
            reason = "insufficient nvidia.com/gpu"
        return reason or "fits alone but not with the rest of the gang"

    @staticmethod
    def _largest_free(
        r: Resources, index: FlavorIndex, nodes: Sequence[NodeState], *, use_index: bool
    ) -> dict[str, Fact]:
        """The closest thing to a fit, for the reason: the largest free GPU block, the most free
        share of one GPU, or the most free CPU. From the flavor index when it covers ``nodes``."""
        if r.gpu_milli >= FULL:
            if use_index:
                count = index.max_whole_free()
                node = next(iter(index.by_whole[count].values()))
            else:
                node = max(nodes, key=lambda n: (n.free_whole, -n.order))
                count = node.free_whole
            return {"largest_free_gpus": count, "largest_free_node": node.name}
        if r.gpu_milli:
            whole = index.max_whole_free() if use_index else 0
            if whole:
                # A whole free GPU is the most one device can offer: the first node (by name)
                # with one, without asking every node (a full cluster explains many failures).
                node = min(
                    (n for count in range(1, whole + 1) for n in index.by_whole[count].values()),
                    key=lambda n: n.order,
                )
                return {"most_free_gpu_milli": FULL, "most_free_gpu_node": node.name}
            if use_index and index.partial_keys:
                free = index.partial_keys[-1]
                node = next(iter(index.partial[free].values()))
            else:
                node = max(nodes, key=lambda n: (n.largest_free_device(), -n.order))
                free = node.largest_free_device()
            return {"most_free_gpu_milli": free, "most_free_gpu_node": node.name}
        node = max(nodes, key=lambda n: (n.free_cpu, -n.order))
        return {"most_free_cpu_milli": max(node.free_cpu, 0), "most_free_cpu_node": node.name}

    def _explain_topology(
        self,
        flavor: str,
        topology: TopologyConstraint,
        pods: list[PodRequest],
        tried: int,
        last_domain: str,
        last: Reason | None,
    ) -> Reason:
        topo: dict[str, Fact] = {
            "topology_key": topology.key,
            "domains_tried": tried,
            "gang_pods": len(pods),
        }
        if not tried or last is None:
            total = Resources()
            for pod in pods:
                total = total + pod.resources
            return Reason(
                ReasonCode.UNSCHEDULABLE,
                {"flavor": flavor, **request_facts(total), **topo, "domains_tried": 0},
            )
        return Reason(last.code, {**last.facts, **topo, "topology_domain": last_domain})


def _capacity(node: NodeState) -> tuple[int, int, int, int]:
    return (node.gpu_count, node.cap_cpu, node.cap_mem, -node.order)
