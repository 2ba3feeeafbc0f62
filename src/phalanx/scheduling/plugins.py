"""Placement plugins, kube-scheduler style: filters say why a node cannot take a pod, scores
rank the nodes that can. Policies are named sets of score weights.

Plugins read only the cycle's scratch state (``NodeState``) and the pod; they never change it.
Pure: no clock, I/O or randomness.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from phalanx.model.objects import DeviceShare, Toleration
from phalanx.model.resources import Resources
from phalanx.scheduling.cluster import FULL, NodeState


@dataclass(frozen=True, slots=True)
class PodRequest:
    """One pod to place: its identity within the job and what it needs."""

    pod_set: str
    index: int
    resources: Resources
    tolerations: tuple[Toleration, ...] = ()
    #: The job the pod belongs to; only identity-based scores (``random``) read it.
    job: str = ""


@dataclass(frozen=True, slots=True)
class Shape:
    """A typical pod shape, weighted by how common it is in the workload (for fragmentation)."""

    gpu_milli: int
    cpu_milli: int
    memory_bytes: int
    weight: float


# ---- filters: return None when the node passes, else a short reason for the summary ----

Filter = Callable[[PodRequest, NodeState], "str | None"]


def fits_resources(pod: PodRequest, node: NodeState) -> str | None:
    r = pod.resources
    if r.cpu_milli > node.free_cpu:
        return "insufficient cpu"
    if r.memory_bytes > node.free_mem:
        return "insufficient memory"
    if r.gpu_milli:
        if r.gpu_milli >= FULL:
            if node.free_whole * FULL < r.gpu_milli:
                return "insufficient nvidia.com/gpu"
        elif node.largest_free_device() < r.gpu_milli:
            return "no GPU with enough free share"
    return None


def tolerates_taints(pod: PodRequest, node: NodeState) -> str | None:
    for taint in node.taints:
        if not any(t.tolerates(taint) for t in pod.tolerations):
            return f"untolerated taint {taint.key}"
    return None


FILTERS: tuple[Filter, ...] = (fits_resources, tolerates_taints)


def run_filters(pod: PodRequest, node: NodeState) -> str | None:
    """Return the first filter's reason for rejecting ``node``, or None if it passes all."""
    for check in FILTERS:
        reason = check(pod, node)
        if reason is not None:
            return reason
    return None


# ---- device choice ----


def choose_devices(pod: PodRequest, node: NodeState) -> tuple[DeviceShare, ...]:
    """Return concrete devices on ``node`` for ``pod``: the lowest-indexed free devices for whole
    GPUs (neighbours tend to share a switch), the tightest-fitting device for a fraction."""
    milli = pod.resources.gpu_milli
    if milli == 0:
        return ()
    free = node.gpu_free
    if milli >= FULL:
        wanted = milli // FULL
        picked: list[DeviceShare] = []
        for index, value in enumerate(free):
            if value == FULL:
                picked.append(DeviceShare(index, FULL))
                if len(picked) == wanted:
                    return tuple(picked)
        return ()
    best = -1
    for index, value in enumerate(free):
        if value >= milli and (best < 0 or value < free[best]):
            best = index
    return (DeviceShare(best, milli),) if best >= 0 else ()


# ---- scores: higher is better; each returns a value in about [-1, 1] ----

Score = Callable[[PodRequest, NodeState, tuple[DeviceShare, ...], Sequence[Shape]], float]


def gpu_best_fit(
    pod: PodRequest, node: NodeState, devices: tuple[DeviceShare, ...], shapes: Sequence[Shape]
) -> float:
    """Prefer the node left fullest: GPU utilisation after placement for GPU pods, CPU for
    others (the default policy's tie-breaker)."""
    if pod.resources.gpu_milli and node.gpu_count:
        free_after = node.free_gpu_milli - pod.resources.gpu_milli
        return 1.0 - free_after / (node.gpu_count * FULL)
    if node.cap_cpu:
        return 1.0 - (node.free_cpu - pod.resources.cpu_milli) / node.cap_cpu
    return 0.0


def best_fit(
    pod: PodRequest, node: NodeState, devices: tuple[DeviceShare, ...], shapes: Sequence[Shape]
) -> float:
    """Best fit over CPU and GPU, as the "BestFit" baseline of Weng et al. defines it: minus
    the mean of the CPU and the GPU left free after placement, each in units of the largest
    node's capacity (so the node with the least absolute room left wins, whatever its size)."""
    scale = node.scale
    left = 0.0
    if scale.max_cpu:
        left += (node.free_cpu - pod.resources.cpu_milli) / scale.max_cpu
    if scale.max_gpu_milli:
        left += (node.free_gpu_milli - pod.resources.gpu_milli) / scale.max_gpu_milli
    return -0.5 * left


def expected_fragmentation(
    gpu_free: Sequence[int], free_cpu: int, free_mem: int, shapes: Sequence[Shape]
) -> float:
    """Expected GPU thousandths on a node that a typical pod could not use (the measure of
    "Beware of Fragmentation", Weng et al., ATC'23), weighted by shape popularity."""
    total = 0
    whole = 0
    for value in gpu_free:
        total += value
        whole += value == FULL
    if total == 0:
        return 0.0
    partial = total - whole * FULL
    frag = 0.0
    for shape in shapes:
        if shape.cpu_milli > free_cpu or shape.memory_bytes > free_mem:
            frag += shape.weight * total
        elif shape.gpu_milli >= FULL:
            frag += shape.weight * (total if whole * FULL < shape.gpu_milli else partial)
        else:
            frag += shape.weight * sum(v for v in gpu_free if v < shape.gpu_milli)
    return frag


def expected_stranding(
    gpu_free: Sequence[int], free_cpu: int, free_mem: int, shapes: Sequence[Shape]
) -> float:
    """Expected GPU thousandths on a node that would stay idle if it were filled with pods of
    one typical shape, weighted by shape popularity. Unlike ``expected_fragmentation`` it counts
    how many pods of the shape fit at once, over GPU devices, CPU and memory together, so GPUs
    stranded behind a CPU or memory bottleneck, or in slivers a share cannot use, count too."""
    total = 0
    whole = 0
    for value in gpu_free:
        total += value
        whole += value == FULL
    if total == 0:
        return 0.0
    stranded = 0.0
    for shape in shapes:
        g = shape.gpu_milli
        if g >= FULL:
            copies = whole // (g // FULL)
        else:
            copies = 0
            for value in gpu_free:
                copies += value // g
        if shape.cpu_milli and copies:
            copies = min(copies, free_cpu // shape.cpu_milli)
        if shape.memory_bytes and copies:
            copies = min(copies, free_mem // shape.memory_bytes)
        stranded += shape.weight * (total - copies * g)
    return stranded


def _growth(
    pod: PodRequest,
    node: NodeState,
    devices: tuple[DeviceShare, ...],
    shapes: Sequence[Shape],
    measure: Callable[[Sequence[int], int, int, Sequence[Shape]], float],
    before: float | None,
) -> tuple[float, float]:
    """(before, after) of ``measure`` on the node's free state around placing ``pod`` on
    ``devices``; ``before`` is the memoised value when the caller has one."""
    if before is None:
        before = measure(node.gpu_free, node.free_cpu, node.free_mem, shapes)
    after_free = list(node.gpu_free)
    for share in devices:
        after_free[share.index] -= share.milli
    after = measure(
        after_free,
        node.free_cpu - pod.resources.cpu_milli,
        node.free_mem - pod.resources.memory_bytes,
        shapes,
    )
    return before, after


def stranding(
    pod: PodRequest, node: NodeState, devices: tuple[DeviceShare, ...], shapes: Sequence[Shape]
) -> float:
    """Minus the growth of the node's expected stranded GPU thousandths (see
    ``expected_stranding``), in GPUs."""
    if not node.gpu_count:
        return 0.0
    before, after = _growth(pod, node, devices, shapes, expected_stranding, node.strand_memo)
    node.strand_memo = before
    return (before - after) / FULL


stranding.judges_devices = True  # type: ignore[attr-defined]


def fragmentation(
    pod: PodRequest, node: NodeState, devices: tuple[DeviceShare, ...], shapes: Sequence[Shape]
) -> float:
    """Prefer the placement that strands the fewest GPU thousandths for the pods still to come:
    minus the growth of the node's expected fragmentation, in GPUs."""
    if not node.gpu_count:
        return 0.0
    before, after = _growth(pod, node, devices, shapes, expected_fragmentation, node.frag_memo)
    node.frag_memo = before
    return (before - after) / FULL


def gpu_packing(
    pod: PodRequest, node: NodeState, devices: tuple[DeviceShare, ...], shapes: Sequence[Shape]
) -> float:
    """GPU packing (the "GpuPacking" baseline of Weng et al.): put a fraction on a device that is
    already shared, and whole GPUs on the node with the fewest whole GPUs left free, so that idle
    nodes stay idle for large pods. Ignores CPU and memory."""
    milli = pod.resources.gpu_milli
    if not milli or not node.gpu_count:
        return 0.0
    shared = 0.0
    if milli < FULL and devices and node.gpu_free[devices[0].index] < FULL:
        shared = 1.0
    whole_after = node.free_whole - sum(1 for d in devices if d.milli == FULL)
    return shared + 1.0 - whole_after / node.gpu_count


def dot_product(
    pod: PodRequest, node: NodeState, devices: tuple[DeviceShare, ...], shapes: Sequence[Shape]
) -> float:
    """Tetris-style alignment, the "DotProd" baseline: minus the dot product of the pod's request
    and the node's free capacity, both as fractions of the node's capacity, over CPU, memory and
    GPU. The node whose free vector is least aligned with (closest to exhausted along) the
    request's dimensions wins, which packs."""
    r = pod.resources
    total = 0.0
    if node.cap_cpu:
        total += (r.cpu_milli / node.cap_cpu) * (node.free_cpu / node.cap_cpu)
    if node.cap_mem:
        total += (r.memory_bytes / node.cap_mem) * (node.free_mem / node.cap_mem)
    if node.gpu_count:
        cap = node.gpu_count * FULL
        total += (r.gpu_milli / cap) * (node.free_gpu_milli / cap)
    return -total


_MASK64 = (1 << 64) - 1


def _mix64(value: int) -> int:
    """SplitMix64 finaliser: a fast, well-distributed 64-bit hash of an integer."""
    value = (value + 0x9E3779B97F4A7C15) & _MASK64
    value = ((value ^ (value >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    value = ((value ^ (value >> 27)) * 0x94D049BB133111EB) & _MASK64
    return value ^ (value >> 31)


def _name_code(name: str) -> int:
    """A stable integer for a name (Python's ``hash`` of a str changes between processes)."""
    code = 0
    for byte in name.encode():
        code = _mix64(code ^ byte)
    return code


class _RandomScore:
    """The ``random`` score for one seed: a uniform pseudo-random value per (seed, pod, node), so
    the best-scored feasible node is a uniformly random choice that is still a pure function of
    its inputs (the same seed gives the same placements)."""

    __slots__ = ("_base", "_nodes", "_pods")
    reads_node_identity = True

    def __init__(self, seed: int) -> None:
        self._base = _mix64(seed & _MASK64)
        self._pods: dict[tuple[str, str, int], int] = {}
        self._nodes: dict[str, int] = {}

    def __call__(
        self,
        pod: PodRequest,
        node: NodeState,
        devices: tuple[DeviceShare, ...],
        shapes: Sequence[Shape],
    ) -> float:
        key = (pod.job, pod.pod_set, pod.index)
        pod_code = self._pods.get(key)
        if pod_code is None:
            pod_code = self._pods[key] = _mix64(
                self._base ^ _name_code(f"{pod.job}/{pod.pod_set}/{pod.index}")
            )
        node_code = self._nodes.get(node.name)
        if node_code is None:
            node_code = self._nodes[node.name] = _name_code(node.name)
        return _mix64(pod_code ^ node_code) / _MASK64


def reads_node_identity(score: Score) -> bool:
    """Whether ``score`` depends on which node it is, not only on the node's free and total
    capacity (then nodes in identical states cannot share one evaluation)."""
    return bool(getattr(score, "reads_node_identity", False))


#: Score plugins by name; ``random`` is built per seed (see ``policy_weights``).
fragmentation.judges_devices = True  # type: ignore[attr-defined]

SCORES: Mapping[str, Score] = {
    "best-fit": best_fit,
    "gpu-best-fit": gpu_best_fit,
    "dot-product": dot_product,
    "fragmentation": fragmentation,
    "gpu-packing": gpu_packing,
    "stranding": stranding,
}
_SEEDED_SCORES: Mapping[str, Callable[[int], Score]] = {"random": _RandomScore}

#: Placement policies: score plugin weights, selectable by name. ``fragmentation-aware`` (the
#: default) places where the expected stranded GPU capacity grows least (``stranding``: FGD's
#: fragmentation extended to CPU and memory bottlenecks and to slivers), with best-fit and GPU
#: packing as small tie-breakers; ``fgd`` is FGD itself; the others are the baselines of
#: Weng et al. (ATC '23). See docs/simulation.md.
POLICIES: Mapping[str, Mapping[str, float]] = {
    "fragmentation-aware": {"stranding": 1.0, "best-fit": 0.05, "gpu-packing": 0.05},
    "fgd": {"fragmentation": 1.0, "gpu-best-fit": 0.05},
    "best-fit": {"best-fit": 1.0},
    "dot-product": {"dot-product": 1.0},
    "gpu-packing": {"gpu-packing": 1.0},
    "random": {"random": 1.0},
}


def policy_weights(
    policy: str, overrides: Mapping[str, float], seed: int = 0
) -> tuple[tuple[Score, float], ...]:
    """Return (score function, weight) pairs for a policy name with per-plugin overrides;
    ``seed`` feeds seeded plugins (``random``).

    Raises ValueError naming the valid policies or plugins.
    """
    if policy not in POLICIES:
        raise ValueError(
            f"unknown placement policy {policy!r}; valid: {', '.join(sorted(POLICIES))}"
        )
    weights = dict(POLICIES[policy])
    valid = {*SCORES, *_SEEDED_SCORES}
    for name, weight in overrides.items():
        if name not in valid:
            raise ValueError(f"unknown score plugin {name!r}; valid: {', '.join(sorted(valid))}")
        weights[name] = weight
    out: list[tuple[Score, float]] = []
    for name, weight in sorted(weights.items()):
        if weight:
            fn = SCORES[name] if name in SCORES else _SEEDED_SCORES[name](seed)
            out.append((fn, weight))
    return tuple(out)
