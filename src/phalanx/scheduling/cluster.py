"""Mutable scratch state of one scheduling cycle: free capacity per node and device, indexed
for fast candidate lookup, with an undo journal so trial placements commit or revert whole.

The scratch is built from an immutable Snapshot and never outlives one ``schedule()`` call, so
the core stays pure. Must not import anything outside phalanx.model and the standard library.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterator, Mapping

from phalanx.model.objects import DeviceShare, Node, ResourceFlavor, Taint
from phalanx.model.resources import GPU_MILLI_PER_DEVICE, Resources

FULL = GPU_MILLI_PER_DEVICE
#: Bound on the change log (``ClusterState.changed``) before it is cleared.
_MAX_CHANGE_LOG = 1 << 16


class Journal:
    """Undo log. ``mark()`` returns a position; ``rollback(mark)`` undoes everything after it."""

    __slots__ = ("_undo",)

    def __init__(self) -> None:
        self._undo: list[Callable[[], None]] = []

    def mark(self) -> int:
        return len(self._undo)

    def record(self, undo: Callable[[], None]) -> None:
        self._undo.append(undo)

    def rollback(self, mark: int) -> None:
        undo = self._undo
        while len(undo) > mark:
            undo.pop()()

    def commit(self) -> None:
        """Forget everything recorded so far: it can no longer be undone (a session keeps its
        scratch across cycles and commits what each cycle decided)."""
        self._undo.clear()


class ClusterScale:
    """The largest node capacities of a cluster, for scores that compare absolute amounts."""

    __slots__ = ("max_cpu", "max_gpu_milli")

    def __init__(self, max_cpu: int = 0, max_gpu_milli: int = 0) -> None:
        self.max_cpu = max_cpu
        self.max_gpu_milli = max_gpu_milli


class NodeState:
    """Free capacity of one node during a cycle."""

    __slots__ = (
        "cap_cpu",
        "cap_mem",
        "flavor_indexes",
        "frag_memo",
        "free_cpu",
        "free_mem",
        "free_whole",
        "gpu_free",
        "labels",
        "n_gpus",
        "name",
        "order",
        "scale",
        "state_ids",
        "state_memo",
        "strand_memo",
        "taints",
    )

    def __init__(
        self,
        node: Node,
        order: int,
        state_ids: dict[tuple[object, ...], int],
        scale: ClusterScale,
    ) -> None:
        self.name = node.name
        self.scale = scale
        # Shared by all nodes of one ClusterState: state key -> id (see ``state_id``).
        self.state_ids = state_ids
        self.order = order
        self.labels: Mapping[str, str] = node.labels
        self.taints: tuple[Taint, ...] = tuple(
            t for t in node.taints if t.effect in ("NoSchedule", "NoExecute")
        )
        self.cap_cpu = node.allocatable.cpu_milli
        self.cap_mem = node.allocatable.memory_bytes
        self.free_cpu = self.cap_cpu
        self.free_mem = self.cap_mem
        self.gpu_free: list[int] = [FULL] * len(node.gpus)
        self.n_gpus = len(node.gpus)
        # Score plugins may memoise a value of the node's current state here; any change clears it.
        self.frag_memo: float | None = None
        self.strand_memo: float | None = None
        self.state_memo: int | None = None
        self.free_whole = len(node.gpus)
        self.flavor_indexes: list[FlavorIndex] = []

    def state_key(self) -> tuple[object, ...]:
        """What filters and node-state scores can see of this node: capacities, free amounts
        per resource and device, and taints. Two nodes with equal keys score equally for every
        plugin that does not read the node's identity, so one evaluation serves both."""
        return (
            tuple(self.gpu_free),
            self.free_cpu,
            self.free_mem,
            self.cap_cpu,
            self.cap_mem,
            self.taints,
        )

    def state_id(self) -> int:
        """A small integer naming ``state_key()`` (equal keys, equal ids; memoised until the
        node changes), so lookups by state hash an int rather than a tuple."""
        state = self.state_memo
        if state is None:
            key = self.state_key()
            ids = self.state_ids
            state = ids.get(key)
            if state is None:
                state = ids[key] = len(ids)
            self.state_memo = state
        return state

    @property
    def gpu_count(self) -> int:
        return self.n_gpus

    @property
    def free_gpu_milli(self) -> int:
        return sum(self.gpu_free)

    def largest_free_device(self) -> int:
        return max(self.gpu_free, default=0)


class FlavorIndex:
    """Nodes of one flavor, bucketed by how many whole GPUs they have free, plus partially
    used devices keyed by their free thousandths (kept sorted for best-fit lookups)."""

    __slots__ = (
        "biggest",
        "by_whole",
        "flavor",
        "max_cpu",
        "max_mem",
        "nodes",
        "partial",
        "partial_keys",
    )

    def __init__(self, flavor: ResourceFlavor, max_gpus: int) -> None:
        self.flavor = flavor
        self.nodes: list[NodeState] = []
        # The largest node and capacities (for "can never fit" reasons), set by seal().
        self.biggest: NodeState | None = None
        self.max_cpu = self.max_mem = 0
        self.by_whole: list[dict[str, NodeState]] = [{} for _ in range(max_gpus + 1)]
        self.partial: dict[int, dict[tuple[str, int], NodeState]] = {}
        self.partial_keys: list[int] = []

    def seal(self) -> None:
        """Record the largest capacities once all nodes are in."""
        if self.nodes:
            self.biggest = max(
                self.nodes, key=lambda n: (n.gpu_count, n.cap_cpu, n.cap_mem, -n.order)
            )
            self.max_cpu = max(n.cap_cpu for n in self.nodes)
            self.max_mem = max(n.cap_mem for n in self.nodes)

    def add(self, node: NodeState) -> None:
        self.by_whole[node.free_whole][node.name] = node
        for dev, free in enumerate(node.gpu_free):
            if 0 < free < FULL:
                self._add_partial(free, node, dev)

    def remove(self, node: NodeState) -> None:
        del self.by_whole[node.free_whole][node.name]
        for dev, free in enumerate(node.gpu_free):
            if 0 < free < FULL:
                bucket = self.partial[free]
                del bucket[(node.name, dev)]
                if not bucket:
                    del self.partial[free]
                    self.partial_keys.pop(bisect.bisect_left(self.partial_keys, free))

    def _add_partial(self, free: int, node: NodeState, dev: int) -> None:
        bucket = self.partial.get(free)
        if bucket is None:
            bucket = self.partial[free] = {}
            bisect.insort(self.partial_keys, free)
        bucket[(node.name, dev)] = node

    def partial_devices_from(self, milli: int) -> Iterator[tuple[NodeState, int, int]]:
        """Yield (node, device, free milli) for partially used devices with at least ``milli``
        free, tightest first."""
        keys = self.partial_keys
        for i in range(bisect.bisect_left(keys, milli), len(keys)):
            free = keys[i]
            bucket = self.partial.get(free)
            if bucket:
                for (_, dev), node in list(bucket.items()):
                    yield node, dev, free

    def max_whole_free(self) -> int:
        for count in range(len(self.by_whole) - 1, -1, -1):
            if self.by_whole[count]:
                return count
        return 0


class ClusterState:
    """Scratch copy of the cluster for one cycle. Every change goes through ``assign`` or
    ``release`` and is journalled; ``version`` changes with every state change and returns to
    its old value on rollback, so caches keyed by it stay exact."""

    def __init__(self, nodes: tuple[Node, ...], flavors: tuple[ResourceFlavor, ...]) -> None:
        self.journal = Journal()
        self.version = 0
        self._next_version = 1
        #: Nodes whose free capacity changed, in order (rollbacks included), so that a reader
        #: can catch up on what changed since it last looked: ``changed[i]`` is change number
        #: ``changed_base + i``. Cleared (``changed_base`` moves on) when it grows long; a
        #: reader whose position is before ``changed_base`` must start over.
        self.changed: list[NodeState] = []
        self.changed_base = 0
        #: Nodes that score plugins may have left a memo on (``frag_memo``, ``strand_memo``)
        #: since the placer last cleared them: clearing those only is cheaper than every node.
        self.memoed: set[NodeState] = set()
        ordered = sorted(nodes, key=lambda n: n.name)
        self.nodes: dict[str, NodeState] = {}
        self.unschedulable: dict[str, str] = {}
        state_ids: dict[tuple[object, ...], int] = {}
        self.scale = ClusterScale(
            max((n.allocatable.cpu_milli for n in ordered), default=0),
            max((len(n.gpus) for n in ordered), default=0) * FULL,
        )
        max_gpus = max((len(n.gpus) for n in ordered), default=0)
        self.flavors: dict[str, FlavorIndex] = {
            f.name: FlavorIndex(f, max_gpus) for f in sorted(flavors, key=lambda f: f.name)
        }
        for order, node in enumerate(ordered):
            state = NodeState(node, order, state_ids, self.scale)
            self.nodes[node.name] = state
            if not node.is_ready:
                self.unschedulable[node.name] = "NotReady"
            elif node.is_quarantined:
                self.unschedulable[node.name] = "Quarantined"
        for index in self.flavors.values():
            for state in self.nodes.values():
                if state.name not in self.unschedulable and index.flavor.matches(state.labels):
                    index.nodes.append(state)
                    state.flavor_indexes.append(index)
                    index.add(state)
            index.seal()

    def _bump(self) -> None:
        old = self.version
        self.version = self._next_version
        self._next_version += 1

        def undo() -> None:
            self.version = old

        self.journal.record(undo)

    def _apply(
        self, node: NodeState, resources: Resources, devices: tuple[DeviceShare, ...], sign: int
    ) -> None:
        indexes = node.flavor_indexes
        for index in indexes:
            index.remove(node)
        node.frag_memo = node.strand_memo = None
        node.state_memo = None
        node.free_cpu -= sign * resources.cpu_milli
        node.free_mem -= sign * resources.memory_bytes
        gpu_free = node.gpu_free
        for share in devices:
            before = gpu_free[share.index]
            after = before - sign * share.milli
            gpu_free[share.index] = after
            node.free_whole += (after == FULL) - (before == FULL)
        for index in indexes:
            index.add(node)
        changed = self.changed
        changed.append(node)
        if len(changed) > _MAX_CHANGE_LOG:
            self.changed_base += len(changed)
            changed.clear()

    def assign(
        self, node: NodeState, resources: Resources, devices: tuple[DeviceShare, ...]
    ) -> None:
        """Take ``resources`` and ``devices`` on ``node`` (journalled)."""
        self._bump()
        self._apply(node, resources, devices, 1)
        self.journal.record(lambda: self._apply(node, resources, devices, -1))

    def release(
        self, node: NodeState, resources: Resources, devices: tuple[DeviceShare, ...]
    ) -> None:
        """Give back what ``assign`` took (journalled)."""
        self._bump()
        self._apply(node, resources, devices, -1)
        self.journal.record(lambda: self._apply(node, resources, devices, 1))

    def load(self, node_name: str, resources: Resources, devices: tuple[DeviceShare, ...]) -> None:
        """Account for capacity already in use when the cycle starts (not journalled).

        Devices a node no longer has are ignored: the capacity they held is gone anyway.
        """
        node = self.nodes.get(node_name)
        if node is None:
            return
        valid = tuple(d for d in devices if 0 <= d.index < node.gpu_count)
        self._apply(node, resources, valid, 1)
